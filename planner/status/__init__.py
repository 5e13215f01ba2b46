"""Status: the status report, the two status tables, and the refresh workflow.

Pure modules (``report``, ``tables``) turn job states into rows; ``refresh`` is the workflow
that asks the scheduler and rewrites the summary's blocks; ``job_refresh`` is what a job
runs as it ends (``python -m planner.status.job_refresh``), built on ``refresh``. Never imports ``planner.plan``
or ``planner.cli``; pure modules never import a subprocess, terminal library or writer.
"""
