"""The one scheduler interface: submit, preview (dry run) and query job states.

Pure. :class:`Scheduler` is what ``submit`` and ``status`` need from any scheduler:
Slurm (:mod:`planner.jobs.slurm`), the local machine (:mod:`planner.jobs.local`), a dry
run wrapped around either (:class:`planner.jobs.executors.DryRun`), or a fake in tests.
Every answer about a job is a :class:`JobInfo`, whichever source gave it (sacct, squeue,
the job's own ``job-state.json``), so the status report reads one shape.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Protocol


@dataclass
class JobInfo:
    """What is known of one job (or array task), from whichever source answered."""

    state: str
    reason: str | None = None
    exit_code: int | None = None
    start: datetime | None = None
    end: datetime | None = None
    elapsed_s: int | None = None
    source: str = "sacct"  # sacct | squeue | job file | journal | last refresh
    raw_state: str | None = None  # as the scheduler wrote it: "CANCELLED by 1000" is a user's cancel


@dataclass
class JobRequest:
    """Resources and dependency of one submission (one job or one array)."""

    name: str
    time: str
    gpus: int
    nodes: int
    cpus_per_task: int | None
    mem: str | None
    account: str | None
    partition: str | None
    constraint: str | None
    qos: str | None
    array_parallelism: int
    dependency: str | None = None  # e.g. afterok:123_4
    # SIGUSR2 this long before the time limit (a training job stops and requeues itself); submit
    # sets it from the limit (planner.jobs.time_request.signal_offset), never over a quarter of it.
    signal_s: int = 90
    requeue: bool = False  # the job may be requeued (Slurm --requeue): by itself, a user or a node failure


@dataclass
class QueryResult:
    """What one query learned: job id -> state, how many scheduler calls it took, and
    whether the answer may be stale (the scheduler's accounting did not answer)."""

    jobs: dict[str, JobInfo] = field(default_factory=dict)
    calls: int = 0
    stale: bool = False
    stale_reason: str | None = None
    warnings: list[str] = field(default_factory=list)
    # Jobs answered by their own final job-state.json while the scheduler's record lags: not cached.
    provisional: set[str] = field(default_factory=set)


class Scheduler(Protocol):
    """What ``submit`` and ``status`` need from a scheduler."""

    kind: str

    def max_array_size(self) -> int:
        """Largest array (tasks indexed 0..n-1) one submission may hold."""

    def max_time_seconds(self, partition: str | None) -> int | None:
        """The longest ``--time`` a job may ask for on ``partition`` (None: no limit known)."""

    def submit(self, scripts: list[Path], request: JobRequest, wait_for: list[Path | None]) -> list[str]:
        """Submit one job per script (an array when several); return job ids in order."""

    def preview(self, scripts: list[Path], request: JobRequest) -> str:
        """The submission text (sbatch script) a submit would send."""

    def query(self, jobs: Mapping[str, Path], timeout_s: float) -> QueryResult:
        """The state of each job id; ``jobs`` maps each id to the folder its job writes
        ``job-state.json`` in. Never raises for an unreachable scheduler: the result says
        it is stale instead, and ids nobody could answer for are left out."""


_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def job_name(text: str) -> str:
    """A scheduler job name made only of safe characters (names show in squeue, not in paths)."""
    return _SAFE_NAME.sub("_", text)[:60] or "plan-experiment"
