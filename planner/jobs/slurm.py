"""Slurm: submit through submitit's SlurmExecutor, query with sacct and squeue.

Edge. A query asks sacct once for every job (array tasks by their array's id); ids
accounting does not know yet (it lags sbatch by a second or more) are asked of squeue.
When sacct fails, squeue and then the jobs' own ``job-state.json`` files stand in, and
the answer says it may be stale. When it answers, a job whose own file says it ended
while accounting does not yet is answered from that file (provisionally).

The dry-run preview calls submitit's private ``_make_sbatch_string``: submitit is pinned
to a tested range in pyproject.toml, and ``tests/test_scheduler.py`` checks its output.
The preview is rendered without any Slurm command: it works where Slurm is not installed.

submitit is imported where a job is submitted or previewed, not with this module:
``status`` only queries, and submitit (with asyncio under it) is a fifth of its start-up.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from planner.jobs import slurm_query
from planner.jobs.executors import job_file_info
from planner.jobs.jobrunner import run_job
from planner.jobs.sacct import JobRecord
from planner.jobs.scheduler import JobInfo, JobRequest, QueryResult, job_name
from planner.spec.errors import ConfigError
from planner.spec.slurm_values import path_problem, sbatch_value_problem
from planner.spec.states import FINAL_STATES
from planner.jobs.time_request import slurm_limit_minutes

if TYPE_CHECKING:
    import submitit


def _info(rec: JobRecord, source: str) -> JobInfo:
    return JobInfo(state=rec.state, reason=rec.reason, exit_code=rec.exit_code, start=rec.start, end=rec.end,
                   elapsed_s=rec.elapsed_s, source=source, raw_state=rec.raw_state)


def check_request(request: JobRequest, folder: Path) -> None:
    """Refuse any value an #SBATCH line cannot hold (the last guard; settings and spec check at load).

    Raises:
        ConfigError: naming the value, what Slurm accepts and where to fix it.
    """
    problems = [f"{key}={getattr(request, key)!r}: {p}" for key in ("account", "partition", "constraint", "qos", "mem", "time", "dependency")
                if isinstance(getattr(request, key), str) and (p := sbatch_value_problem(key, getattr(request, key)))]
    if (p := path_problem(str(folder))) is not None:
        problems.append(f"experiment folder: {p}; move the experiment to a plain path")
    if problems:
        raise ConfigError(f"cannot write the batch script: {problems[0]}; fix it in claude.local.md or the spec's resources",
                          problems[1:])


def _own_records(jobs: Mapping[str, Path], out: QueryResult) -> None:
    """Let a job's own job-state.json speak where accounting's record is not final yet.

    A job refreshes the status tables as it ends, before it exits, so accounting still
    says RUNNING (or nothing) about it then. Such answers are marked provisional. A failed
    job also gets its script's exit code: accounting only saw the wrapper that ran it.
    """
    for job_id, folder in jobs.items():
        info = out.jobs.get(job_id)
        if info is not None and info.state in FINAL_STATES and info.state != "FAILED":
            continue
        own = job_file_info(folder, job_id, None, out.warnings)
        if own is None or own.state not in FINAL_STATES:
            continue
        if info is None or info.state not in FINAL_STATES:
            out.jobs[job_id] = own
            out.provisional.add(job_id)
        elif own.state == "FAILED" and own.exit_code not in (None, 0):
            info.exit_code = own.exit_code


@functools.cache
def _preview_executor_class() -> type[submitit.SlurmExecutor]:
    """submitit's SlurmExecutor that does not look for ``srun`` on PATH.

    submitit refuses to build its executor where ``srun`` is missing, although the script
    it renders needs srun only when the job runs on a node. A preview (``--dry-run``) is
    text for the user to read: it must render on a laptop with no Slurm at all.
    """
    import submitit

    class PreviewExecutor(submitit.SlurmExecutor):
        @classmethod
        def affinity(cls) -> int:
            return 2  # what submitit's own check answers where srun exists

    return PreviewExecutor


class SlurmScheduler:
    """Submits through submitit's SlurmExecutor; job logs go under ``folder``."""

    kind = "slurm"

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def _executor(self, request: JobRequest, preview: bool = False) -> submitit.SlurmExecutor:
        check_request(request, self.folder)
        import submitit

        executor_class = _preview_executor_class() if preview else submitit.SlurmExecutor
        ex = executor_class(folder=self.folder / "%j", max_num_timeout=0)
        params: dict[str, object] = {
            "job_name": job_name(request.name),
            "time": slurm_limit_minutes(request.time),
            "nodes": request.nodes,
            "ntasks_per_node": 1,  # one launcher per node; torchrun starts the GPU workers
            "array_parallelism": request.array_parallelism,
            "stderr_to_stdout": True,
            "signal_delay_s": request.signal_s,
        }
        for key in ("cpus_per_task", "mem", "account", "partition", "constraint", "qos"):
            value = getattr(request, key)
            if value:
                params[key] = value
        if request.gpus:
            params["gpus_per_node"] = request.gpus
        additional: dict[str, object] = {}
        if request.dependency:
            additional["dependency"] = request.dependency
        if request.requeue:
            additional["requeue"] = True
        if additional:
            params["additional_parameters"] = additional
        ex.update_parameters(**params)
        return ex

    def max_array_size(self) -> int:
        """MaxArraySize of the cluster (array indices must stay below it)."""
        return slurm_query.max_array_size()

    def max_time_seconds(self, partition: str | None) -> int | None:
        """The partition's MaxTime from ``scontrol show partition``."""
        return slurm_query.partition_max_time(partition)

    def submit(self, scripts: list[Path], request: JobRequest, wait_for: list[Path | None]) -> list[str]:
        """sbatch one job or one array; Slurm holds the dependency."""
        ex = self._executor(request)
        jobs = ex.map_array(run_job, [str(s) for s in scripts])
        return [str(j.job_id) for j in jobs]

    def preview(self, scripts: list[Path], request: JobRequest) -> str:
        """The sbatch script submitit would write, rendered without asking Slurm anything."""
        from submitit.slurm.slurm import _make_sbatch_string

        ex = self._executor(request, preview=True)
        params = dict(ex.parameters)
        if len(scripts) > 1:
            params["map_count"] = len(scripts)
        return _make_sbatch_string(command=ex._submitit_command_str, folder=ex.folder, **params)  # noqa: SLF001

    def query(self, jobs: Mapping[str, Path], timeout_s: float) -> QueryResult:
        """sacct once; squeue for what it lacks; job files when sacct is down."""
        out = QueryResult()
        if not jobs:
            return out
        ids = sorted({jid.split("_")[0] for jid in jobs})  # an array is asked for by its id
        try:
            out.calls += 1
            for rec in slurm_query.sacct(ids, timeout_s, wanted=jobs):
                if rec.job_id in jobs:
                    out.jobs[rec.job_id] = _info(rec, "sacct")
        except slurm_query.SchedulerQueryError as exc:
            out.stale, out.stale_reason = True, str(exc).splitlines()[0]
        if not out.stale:
            _requeued_by_slurm(out, jobs, timeout_s)
        missing = ids if out.stale else sorted({jid.split("_")[0] for jid in jobs if jid not in out.jobs})
        if missing:
            try:
                out.calls += 1
                for rec in slurm_query.squeue(missing, timeout_s, wanted=jobs):
                    if rec.job_id in jobs and rec.job_id not in out.jobs:
                        out.jobs[rec.job_id] = _info(rec, "squeue")
            except slurm_query.SchedulerQueryError:
                pass
        if out.stale:
            for job_id, folder in jobs.items():
                if job_id not in out.jobs:
                    info = job_file_info(folder, job_id, None, out.warnings)
                    if info is not None:
                        out.jobs[job_id] = info
        else:
            _own_records(jobs, out)
        return out


#: Ends after which Slurm may requeue a job (--requeue) under the same id.
_REQUEUE_STATES = frozenset({"NODE_FAIL", "PREEMPTED", "BOOT_FAIL"})


def _requeued_by_slurm(out: QueryResult, jobs: Mapping[str, Path], timeout_s: float) -> None:
    """Replace a node failure or preemption that Slurm has requeued by the job's new state.

    Accounting reports the attempt that ended until the requeued one starts; the controller
    holds the job again (PENDING), and the run must not be shown, or cached, as ended.
    """
    ended = {jid: info for jid, info in out.jobs.items() if jid in jobs and info.state in _REQUEUE_STATES}
    if not ended:
        return
    try:
        out.calls += 1
        records = slurm_query.squeue(sorted({jid.split("_")[0] for jid in ended}), timeout_s)
    except slurm_query.SchedulerQueryError:
        return
    for rec in records:
        if rec.job_id in ended and rec.state not in FINAL_STATES:
            info = _info(rec, "squeue")
            info.reason = f"requeued after {ended[rec.job_id].state}" + (f" ({rec.reason})" if rec.reason else "")
            out.jobs[rec.job_id] = info
