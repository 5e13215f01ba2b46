"""Planning (``new``): rendering, the job files of a plan, verification, the wizard's prompting
loop, provenance, and the ``new`` workflow.

Pure modules (``render``, ``job_files``) map a plan to text; the edge (``fs``, ``verify``,
``prompts``, ``provenance``) reads the filesystem, the terminal and git; ``pipeline`` is
the workflow that writes the experiment folder. Never imports ``planner.cli``; pure modules
never import a subprocess, terminal library or writer.
"""
