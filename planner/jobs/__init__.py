"""Jobs: what a submission sends, the Slurm and local executors, sacct/squeue, the in-job
runner, and the ``submit`` workflow.

Pure modules (``submission``, ``sacct``) build argv and parse text; the edge
(``executors``, ``slurm_query``, ``jobrunner``) runs submitit and subprocesses;
``submitting`` is the workflow. Nothing here imports ``planner.cli``.
"""
