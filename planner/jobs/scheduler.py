"""What a scheduler says about a job: the record every source of job states fills in.

Pure. Slurm (sacct, squeue), the jobs' own ``job-state.json`` files and the local
executor all answer with a :class:`JobInfo`, so the status report reads one shape.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass
class JobInfo:
    """What is known of one job (or array task), from whichever source answered."""

    state: str
    reason: str | None = None
    exit_code: int | None = None
    start: datetime | None = None
    end: datetime | None = None
    elapsed_s: int | None = None
    source: str = "sacct"  # sacct | squeue | job file | journal
    raw_state: str | None = None  # as the scheduler wrote it: "CANCELLED by 1000" is a user's cancel
