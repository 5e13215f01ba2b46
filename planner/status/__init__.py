"""Status: the status report, the two status tables, and the refresh workflow.

Pure modules (``report``, ``tables``) turn job states into rows; ``refresh`` is the workflow
that asks the scheduler and rewrites the summary's blocks. Nothing here imports
``planner.cli``; pure modules import no subprocess, terminal library or writer.
"""
