"""The local machine: jobs run as processes through submitit's LocalExecutor.

Edge. There is no accounting: a query reads each job's ``job-state.json`` and whether
its process still lives; a job whose process ended without a final state is LOST.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from planner.jobs.executors import job_file_info, local_pid_alive
from planner.jobs.jobrunner import run_job
from planner.jobs.scheduler import JobInfo, JobRequest, QueryResult
from planner.spec.commands import command_line
from planner.spec.errors import SchedulerError
from planner.spec.units import slurm_time_seconds


class LocalScheduler:
    """Runs jobs as local processes through submitit's LocalExecutor."""

    kind = "local"

    def __init__(self, folder: Path, slots: int | None = None) -> None:
        self.folder = folder
        self.slots = slots or max(1, (os.cpu_count() or 2) // 2)

    def max_array_size(self) -> int:
        """No arrays locally: any number of jobs."""
        return 10**9

    def max_time_seconds(self, partition: str | None) -> int | None:
        """No partition locally: no limit."""
        return None

    def submit(self, scripts: list[Path], request: JobRequest, wait_for: list[Path | None]) -> list[str]:
        """Start one process per script; evaluations wait for their run's job-state.json."""
        if request.nodes > 1:
            # One machine cannot be two nodes: torchrun would wait for a second one forever.
            raise SchedulerError(
                f"nodes: {request.nodes} needs Slurm, the local executor runs on this machine only; "
                "submit to a cluster, or set resources.nodes: 1 (several processes on one node work locally)"
            )
        # Imported here: ``status`` builds this scheduler to query, and never needs submitit.
        import submitit

        ex = submitit.LocalExecutor(folder=self.folder / "local")
        ex.update_parameters(timeout_min=max(1, slurm_time_seconds(request.time) // 60))
        ids = []
        slots_dir = str(self.folder / "slots")
        for script, dep in zip(scripts, wait_for):
            job = ex.submit(run_job, str(script), str(dep) if dep else None, slots_dir, self.slots)
            ids.append(f"local-{job.job_id}")
        return ids

    def preview(self, scripts: list[Path], request: JobRequest) -> str:
        """What would run locally."""
        lines = [f"# local executor: {len(scripts)} process(es), at most {self.slots} at once"]
        lines += [command_line("bash", s) for s in scripts]
        return "\n".join(lines)

    def query(self, jobs: Mapping[str, Path], timeout_s: float) -> QueryResult:
        """Each job's job-state.json and whether its process lives."""
        out = QueryResult()
        for job_id, folder in jobs.items():
            alive = local_pid_alive(job_id)
            info = job_file_info(folder, job_id, alive, out.warnings, match_id=False)
            if info is None:
                info = (JobInfo(state="PENDING", reason="waiting for a local slot or its training", source="job file")
                        if alive else
                        JobInfo(state="LOST", reason="process ended without a job-state.json", source="job file"))
            out.jobs[job_id] = info
        return out
