"""An in-memory, stateful scheduler for tests: what a real one cannot do on demand.

It keeps jobs with ids and states, answers ``query`` like the Slurm scheduler does, and can
lose its accounting, hang, end a job in any state, and reuse job ids (a cluster whose job
counter restarted). It implements :class:`planner.jobs.scheduler.Scheduler`; the real Slurm
and local schedulers have their own tests against a real cluster and real processes.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from planner.jobs.executors import job_file_info
from planner.jobs.scheduler import JobInfo, JobRequest, QueryResult


@dataclass
class FakeJob:
    """One job (or array task) the fake holds."""

    job_id: str
    script: Path
    request: JobRequest
    state: str = "PENDING"


@dataclass
class FakeScheduler:
    """Scheduler of kind ``slurm`` held in memory; tests drive its jobs' states."""

    kind: str = "slurm"
    first_id: int = 100
    accounting_lost: bool = False
    hang_s: float = 0.0
    jobs: dict[str, FakeJob] = field(default_factory=dict)
    submissions: list[list[str]] = field(default_factory=list)
    queries: int = 0

    def __post_init__(self) -> None:
        self._next = self.first_id

    # --- what tests do to it -------------------------------------------------------

    def finish(self, folder: str, state: str) -> FakeJob:
        """End in ``state`` the newest job whose script lies in ``folder`` (``run`` or ``run/eval/name``)."""
        job = [j for j in self.jobs.values() if j.script.parent.as_posix().endswith("/" + folder)][-1]
        job.state = state
        return job

    def finish_all(self, state: str = "COMPLETED") -> None:
        """End every job that has not ended."""
        for job in self.jobs.values():
            if job.state in ("PENDING", "RUNNING"):
                job.state = state

    def restart_ids(self) -> None:
        """The cluster's job counter starts over: new jobs get ids old ones had."""
        self._next = self.first_id

    # --- the Scheduler interface ----------------------------------------------------

    def max_array_size(self) -> int:
        return 1001

    def submit(self, scripts: list[Path], request: JobRequest, wait_for: list[Path | None]) -> list[str]:
        array = str(self._next)
        self._next += 1
        ids = [array] if len(scripts) == 1 else [f"{array}_{i}" for i in range(len(scripts))]
        for job_id, script in zip(ids, scripts):
            self.jobs[job_id] = FakeJob(job_id, script, request)  # a reused id replaces the old job
        self.submissions.append(ids)
        return ids

    def preview(self, scripts: list[Path], request: JobRequest) -> str:
        dependency = f" --dependency={request.dependency}" if request.dependency else ""
        return f"#FAKE {request.name} time={request.time} tasks={len(scripts)}{dependency}\n" + "\n".join(
            f"bash {s}" for s in scripts
        )

    def query(self, jobs: Mapping[str, Path], timeout_s: float) -> QueryResult:
        self.queries += 1
        out = QueryResult(calls=1)
        if self.hang_s:
            time.sleep(min(self.hang_s, timeout_s))
            out.stale, out.stale_reason = True, f"sacct did not answer within {timeout_s:g} s"
        elif self.accounting_lost:
            out.stale, out.stale_reason = True, "sacct: Slurm accounting storage is unavailable"
        else:
            for job_id in jobs:
                if job_id in self.jobs:
                    out.jobs[job_id] = JobInfo(state=self.jobs[job_id].state, source="sacct")
            return out
        # As the Slurm scheduler does when accounting is down: the jobs' own files.
        for job_id, folder in jobs.items():
            info = job_file_info(folder, job_id, None, out.warnings)
            if info is not None:
                out.jobs[job_id] = info
        return out
