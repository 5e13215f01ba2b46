"""The schedulers by kind, as the journal names them (``slurm``, ``local``).

Edge: a submission records its scheduler's kind, and ``status`` asks each job's own kind.
"""

from __future__ import annotations

from pathlib import Path

from planner.jobs.local import LocalScheduler
from planner.jobs.scheduler import Scheduler
from planner.jobs.slurm import SlurmScheduler


def schedulers(folder: Path) -> dict[str, Scheduler]:
    """One scheduler of each kind, keeping their files (submitit's) under ``folder``."""
    return {"slurm": SlurmScheduler(folder), "local": LocalScheduler(folder)}
