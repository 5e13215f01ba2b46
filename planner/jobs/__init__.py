"""Jobs: what a submission sends, job states, sacct/squeue, the Slurm and local executors,
the in-job runner, and the ``submit`` workflow.

Pure modules (``submission``, ``sacct``, ``scheduler``) build argv, parse text and hold job
states; the edge (``executors``, ``slurm_query``, ``jobrunner``) runs submitit and
subprocesses; ``submitting`` is the workflow. Below estimation, status and planning: never
imports ``planner.estimate``, ``planner.status``, ``planner.plan`` or ``planner.cli``
(the ``submit`` workflow excepted, which composes planning and status).
"""
