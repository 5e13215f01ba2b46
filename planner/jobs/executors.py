"""What every scheduler shares: the dry run, and the jobs' own ``job-state.json`` files.

Edge. :class:`DryRun` wraps a :class:`~planner.jobs.scheduler.Scheduler`: same decisions
and previews, nothing submitted. :func:`job_file_info` turns a unit's ``job-state.json``
into a :class:`~planner.jobs.scheduler.JobInfo` (the local scheduler's only source, and
Slurm's fallback when accounting is down).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from planner.folder.job_state import JOB_STATE, JobStateFile
from planner.jobs.scheduler import JobInfo, JobRequest, QueryResult, Scheduler
from planner.spec.errors import ConfigError


class DryRun:
    """Wraps a scheduler: same decisions and previews, nothing submitted."""

    def __init__(self, inner: Scheduler) -> None:
        self.inner = inner
        self.kind = inner.kind
        self.counter = 0
        self.previews: list[str] = []

    def max_array_size(self) -> int:
        """The real limit where the scheduler answers; Slurm's default otherwise."""
        try:
            return self.inner.max_array_size()
        except Exception:  # noqa: BLE001 - a dry run must work without a reachable cluster
            return 1001

    def max_time_seconds(self, partition: str | None) -> int | None:
        """The same limit a real submit reads, so --dry-run shows the same --time."""
        return self.inner.max_time_seconds(partition)

    def submit(self, scripts: list[Path], request: JobRequest, wait_for: list[Path | None]) -> list[str]:
        """Record the preview; return placeholder ids so dependent submissions can be shown."""
        self.counter += 1
        self.previews.append(self.inner.preview(scripts, request))
        base = f"DRYRUN{self.counter}"
        return [base] if len(scripts) == 1 else [f"{base}_{i}" for i in range(len(scripts))]

    def preview(self, scripts: list[Path], request: JobRequest) -> str:
        """Delegate."""
        return self.inner.preview(scripts, request)

    def query(self, jobs: Mapping[str, Path], timeout_s: float) -> QueryResult:
        """Delegate: a dry run decides from the real states."""
        return self.inner.query(jobs, timeout_s)


def read_job_state(folder: Path) -> JobStateFile | None:
    """A unit's job-state.json, None when its job has not written one.

    Raises:
        ConfigError: the file is damaged (one line naming it and what to do).
    """
    path = folder / JOB_STATE
    try:
        text = path.read_bytes()
    except OSError:
        return None
    return JobStateFile.from_json(text, str(path))


def info_from_job_state(state: JobStateFile, alive: bool | None) -> JobInfo:
    """JobInfo from job-state.json; a RUNNING job whose process is gone is LOST."""
    name = state.state
    if name == "RUNNING" and alive is False:
        name = "LOST"
    start, end = state.started_at, state.ended_at
    elapsed = round((end - start).total_seconds()) if start and end else None
    return JobInfo(state=name, reason=state.reason, exit_code=state.exit_code, start=start, end=end,
                   elapsed_s=elapsed, source="job file")


def job_file_info(folder: Path, job_id: str, alive: bool | None, warnings: list[str],
                  match_id: bool = True) -> JobInfo | None:
    """What a unit's job-state.json says of ``job_id``; a damaged file becomes a warning.

    Args:
        folder: the unit's folder.
        job_id: the job asked about.
        alive: whether its process lives (local jobs), None when unknown.
        warnings: where a damaged file's one-line message goes.
        match_id: only trust a file that names this job id (a retried unit's folder may
            still hold the previous attempt's file).
    """
    try:
        state = read_job_state(folder)
    except ConfigError as exc:
        warnings.append(str(exc))
        return None
    if state is None or (match_id and state.job_id != job_id):
        return None
    return info_from_job_state(state, alive)


def local_pid_alive(job_id: str) -> bool:
    """Whether a local job's controller process still runs (zombies count as ended)."""
    import psutil  # only local jobs need it; a Slurm status never does

    try:
        proc = psutil.Process(int(job_id.removeprefix("local-")))
        return proc.status() != psutil.STATUS_ZOMBIE
    except (ValueError, psutil.Error):
        return False

