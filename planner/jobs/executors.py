"""Executors: Slurm (submitit's SlurmExecutor) and the local machine (submitit's LocalExecutor).

Both take the same request (scripts + resources + dependency) and return job ids, so
``submit`` has one code path; ``--dry-run`` swaps in :class:`DryRun`, which renders the
same sbatch text and submits nothing.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import psutil
import submitit
from submitit.slurm.slurm import _make_sbatch_string

from planner.jobs import slurm_query
from planner.jobs.jobrunner import run_job
from planner.folder.compute import slurm_time_seconds
from planner.status.report import JobInfo, parse_job_time


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
    signal_s: int = 90  # SIGUSR2 this long before the time limit (the job stops and requeues itself)
    requeue: bool = False  # the job may be requeued (Slurm --requeue): by itself, a user or a node failure


class Executor(Protocol):
    """What submit needs from a scheduler."""

    kind: str

    def max_array_size(self) -> int:
        """Largest array (tasks indexed 0..n-1) one submission may hold."""

    def submit(self, scripts: list[Path], request: JobRequest, wait_for: list[Path | None]) -> list[str]:
        """Submit one job per script (an array when several); return job ids in order."""

    def preview(self, scripts: list[Path], request: JobRequest) -> str:
        """The submission text (sbatch script) a submit would send."""


_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def job_name(text: str) -> str:
    """A scheduler job name made only of safe characters (names show in squeue, not in paths)."""
    return _SAFE_NAME.sub("_", text)[:60] or "plan-experiment"


class SlurmSubmitter:
    """Submits through submitit's SlurmExecutor; job logs go under ``folder``."""

    kind = "slurm"

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def _executor(self, request: JobRequest) -> submitit.SlurmExecutor:
        ex = submitit.SlurmExecutor(folder=self.folder / "%j", max_num_timeout=0)
        params: dict[str, object] = {
            "job_name": job_name(request.name),
            "time": max(1, slurm_time_seconds(request.time) // 60),
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

    def submit(self, scripts: list[Path], request: JobRequest, wait_for: list[Path | None]) -> list[str]:
        """sbatch one job or one array; Slurm holds the dependency."""
        ex = self._executor(request)
        jobs = ex.map_array(run_job, [str(s) for s in scripts])
        return [str(j.job_id) for j in jobs]

    def preview(self, scripts: list[Path], request: JobRequest) -> str:
        """The sbatch script submitit would write."""
        ex = self._executor(request)
        params = dict(ex.parameters)
        if len(scripts) > 1:
            params["map_count"] = len(scripts)
        return _make_sbatch_string(command=ex._submitit_command_str, folder=ex.folder, **params)  # noqa: SLF001


class LocalSubmitter:
    """Runs jobs as local processes through submitit's LocalExecutor."""

    kind = "local"

    def __init__(self, folder: Path, slots: int | None = None) -> None:
        self.folder = folder
        self.slots = slots or max(1, (os.cpu_count() or 2) // 2)

    def max_array_size(self) -> int:
        """No arrays locally: any number of jobs."""
        return 10**9

    def submit(self, scripts: list[Path], request: JobRequest, wait_for: list[Path | None]) -> list[str]:
        """Start one process per script; evaluations wait for their run's job-state.json."""
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
        lines += [f"bash {s}" for s in scripts]
        return "\n".join(lines)


class DryRun:
    """Wraps an executor: same decisions and previews, nothing submitted."""

    def __init__(self, inner: Executor) -> None:
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

    def submit(self, scripts: list[Path], request: JobRequest, wait_for: list[Path | None]) -> list[str]:
        """Record the preview; return placeholder ids so dependent submissions can be shown."""
        self.counter += 1
        self.previews.append(self.inner.preview(scripts, request))
        base = f"DRYRUN{self.counter}"
        return [base] if len(scripts) == 1 else [f"{base}_{i}" for i in range(len(scripts))]

    def preview(self, scripts: list[Path], request: JobRequest) -> str:
        """Delegate."""
        return self.inner.preview(scripts, request)


def read_job_file(job_dir: Path) -> dict | None:
    """A job's own job-state.json, if it wrote one."""
    try:
        return json.loads((job_dir / "job-state.json").read_text())
    except (OSError, ValueError):
        return None


def info_from_job_file(data: dict, alive: bool | None) -> JobInfo:
    """JobInfo from job-state.json; a RUNNING job whose process is gone is LOST."""
    state = str(data.get("state", "UNKNOWN"))
    start, end = parse_job_time(data.get("started")), parse_job_time(data.get("ended"))
    if state == "RUNNING" and alive is False:
        state = "LOST"
    elapsed = round((end - start).total_seconds()) if start and end else None
    return JobInfo(state=state, reason=data.get("reason"), exit_code=data.get("exit_code"), start=start, end=end,
                   elapsed_s=elapsed, source="job file")


def local_pid_alive(job_id: str) -> bool:
    """Whether a local job's controller process still runs (zombies count as ended)."""
    try:
        proc = psutil.Process(int(job_id.removeprefix("local-")))
        return proc.status() != psutil.STATUS_ZOMBIE
    except (ValueError, psutil.Error):
        return False
