"""Jobs: what a submission sends, the Slurm and local executors, sacct/squeue, the in-job
runner, and the ``submit`` workflow.

Pure modules (``submission``, ``sacct``, ``time_request``) build argv, parse text and
decide each job's ``--time``; the edge (``executors``, ``slurm_query``, ``jobrunner``,
``reconcile``) runs submitit and subprocesses;
``submitting`` is the workflow. Nothing here imports ``planner.cli``.
"""
