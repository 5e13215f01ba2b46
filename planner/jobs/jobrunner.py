"""What runs inside every job: the job's script, after its dependency where the executor has none.

Slurm enforces ``afterok`` itself. The local executor has no dependencies, so a local
evaluation job first waits for its run's ``job-state.json`` to say COMPLETED, and is
recorded CANCELLED (like Slurm's kill_invalid_depend) when the training failed. Local jobs
also take one of a few CPU slots, so an experiment does not start every run at once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

from filelock import FileLock, Timeout

from planner.folder.job_state import JOB_STATE, JobStateFile
from planner.spec.errors import ConfigError
from planner.jobs.recovery import REQUEUED_EXIT

#: How long a job that requeued itself waits for Slurm to end this attempt.
REQUEUE_WAIT_S = 300.0


class JobScriptFailed(RuntimeError):
    """The job script exited non-zero; raising makes the scheduler record the job FAILED."""


def _read_state(path: Path) -> JobStateFile | None:
    try:
        return JobStateFile.from_json(path.read_bytes(), str(path))
    except (OSError, ConfigError):
        return None  # not there yet, or caught mid-write on a filesystem without atomic rename


def _write_state(job_dir: Path, state: str, job_id: str, exit_code: int | None) -> None:
    now = datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    tmp = job_dir / f".{JOB_STATE}.{os.getpid()}"
    record = JobStateFile(state=state, job_id=job_id, started=now, ended=now, exit_code=exit_code,
                          reason="DependencyNeverSatisfied")
    tmp.write_text(record.to_json())
    os.replace(tmp, job_dir / JOB_STATE)


def _local_job_id() -> str:
    return os.environ.get("SUBMITIT_LOCAL_JOB_ID") or os.environ.get("SLURM_JOB_ID") or str(os.getpid())


def wait_for_dependency(state_file: Path, job_dir: Path, poll_s: float, timeout_s: float) -> bool:
    """Wait until the training this job depends on has ended; True when it completed."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        state = _read_state(state_file)
        if state and state.state == "COMPLETED":
            return True
        if state and state.state != "RUNNING":
            return False
        time.sleep(poll_s)
    return False


def refresh_summary(experiment: Path, job_id: str, limit_s: float = 20.0) -> None:
    """Refresh the experiment's status tables for a job that ended without running its script.

    The same fixed command the job scripts run, in its own process so that a hard time
    limit holds; what it says goes to this job's output, and nothing it does fails the job.
    """
    try:
        proc = subprocess.run([sys.executable, "-m", "planner.status.job_refresh", str(experiment), job_id],
                              cwd="/", capture_output=True, text=True, timeout=limit_s, check=False)
        print((proc.stdout + proc.stderr).strip(), flush=True)
    except (OSError, subprocess.TimeoutExpired) as exc:
        print(f"plan-experiment: status tables not refreshed: {exc}; `plan-experiment status` catches up", flush=True)


def run_job(script: str, wait_for: str | None = None, slots_dir: str | None = None, slots: int = 1,
            poll_s: float = 1.0, timeout_s: float = 24 * 3600) -> int:
    """Run one job script with bash (no shell parsing of any path or name).

    Args:
        script: train.sh or eval.sh.
        wait_for: a ``job-state.json`` to wait for (local executor only).
        slots_dir: folder of slot lock files (local executor only).
        slots: how many local jobs may run at once.
        poll_s: how often to look at the dependency.
        timeout_s: longest wait for the dependency.

    Raises:
        JobScriptFailed: when the script fails, or its dependency did.
    """
    path = Path(script)
    _leave_stop_warning_to_the_script()
    job_id = _local_job_id()
    if wait_for is not None and not wait_for_dependency(Path(wait_for), path.parent, poll_s, timeout_s):
        _write_state(path.parent, "CANCELLED", job_id, None)
        refresh_summary(Path(wait_for).parent.parent, job_id)  # wait_for is <experiment>/<run>/job-state.json
        raise JobScriptFailed(f"{script}: not run, its training did not complete ({wait_for})")
    env = {**os.environ, "PLAN_EXPERIMENT_JOB_ID": job_id}
    if slots_dir is None:
        return _run(path, env)
    Path(slots_dir).mkdir(parents=True, exist_ok=True)
    while True:
        for n in range(max(slots, 1)):
            lock = FileLock(str(Path(slots_dir) / f"slot-{n}.lock"))
            try:
                lock.acquire(timeout=0)
            except Timeout:
                continue
            try:
                return _run(path, env)
            finally:
                lock.release()
        time.sleep(poll_s)


def _leave_stop_warning_to_the_script() -> None:
    """Let SIGUSR2 (Slurm's --signal ahead of the time limit) pass this process by.

    Slurm sends it to every process of the job step; the training supervisor inside the
    job script acts on it (stops, requeues, resumes). submitit's own handler would
    instead requeue the job or end it as failed, whatever the script is doing.
    """
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGUSR2, lambda signum, frame: None)


def _run(path: Path, env: dict[str, str]) -> int:
    proc = subprocess.run(["bash", str(path)], cwd=str(path.parent), env=env, check=False)
    if proc.returncode == REQUEUED_EXIT and os.environ.get("SLURM_JOB_ID"):
        # The script requeued its own job: Slurm ends this attempt and starts the next.
        time.sleep(REQUEUE_WAIT_S)
    if proc.returncode != 0:
        raise JobScriptFailed(f"{path} exited with {proc.returncode}; see the slurm-*.out beside it")
    return 0
