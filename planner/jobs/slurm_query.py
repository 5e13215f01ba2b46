"""Ask Slurm about jobs: the subprocess boundary for sacct, squeue and scontrol.

Argv building and parsing are pure and live in ``planner.jobs.sacct``; this module only
runs the commands, with a timeout, and turns failures into :class:`SchedulerQueryError`.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Collection, Sequence

from planner.spec.device_choice import DeviceChoice, choose_device
from planner.spec.errors import SchedulerError
from planner.spec.hardware import gres_devices
from planner.spec.localconfig import LocalSettings
from planner.spec.spec import ExperimentSpec
from planner.jobs.sacct import (
    DEFAULT_MAX_JOB_ID_CHARS,
    JobRecord,
    chunk_job_ids,
    parse_max_array_size,
    parse_sacct,
    parse_squeue,
    sacct_argv,
    squeue_argv,
)
from planner.jobs.time_request import parse_partition_max_time

__all__ = [
    "SchedulerQueryError",
    "job_ids_by_name",
    "max_array_size",
    "partition_gpu_types",
    "partition_max_time",
    "plan_device",
    "sacct",
    "slurm_available",
    "squeue",
]

# What squeue prints (exit 1) when none of the asked-for ids is known to the
# controller any more: for this module that is an empty answer, not a failure.
_SQUEUE_UNKNOWN_IDS = "Invalid job id specified"


class SchedulerQueryError(SchedulerError):
    """A Slurm query failed, timed out, or its command is missing.

    Attributes:
        argv: The command that failed.
        stderr: What it wrote to stderr (empty on timeout or when missing).
    """

    def __init__(self, message: str, argv: Sequence[str], stderr: str = "") -> None:
        super().__init__(message)
        self.argv: list[str] = list(argv)
        self.stderr: str = stderr


def _env() -> dict[str, str]:
    """The caller's environment with Slurm's output knobs pinned.

    A user's SLURM_TIME_FORMAT would change how times print; SACCT_FORMAT and
    SQUEUE_FORMAT are overridden by our explicit --format anyway, but dropping them
    keeps the commands' behaviour independent of the caller's shell.
    """
    env = dict(os.environ)
    env["SLURM_TIME_FORMAT"] = "standard"  # 2025-01-31T10:00:00
    for name in ("SACCT_FORMAT", "SQUEUE_FORMAT", "SQUEUE_FORMAT2", "SQUEUE_SORT"):
        env.pop(name, None)
    return env


def _run(argv: Sequence[str], timeout_s: float) -> subprocess.CompletedProcess[str]:
    """Run one Slurm command; raise SchedulerQueryError if it cannot run or times out.

    The command runs in its own process group, and a timeout kills the whole group: a site's
    sacct is often a wrapper script, and killing only the wrapper would leave its child
    running and holding our pipes open. Output is decoded as UTF-8 with undecodable bytes
    replaced (a job name or reason in another encoding must not stop status).
    """
    try:
        proc = subprocess.Popen(
            list(argv),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            env=_env(),
            start_new_session=True,
        )
    except FileNotFoundError as exc:
        raise SchedulerQueryError(
            f"{argv[0]} not found on PATH: is Slurm installed on this machine?", argv
        ) from exc
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        raise SchedulerQueryError(
            f"{argv[0]} did not answer within {timeout_s:g}s (is slurmctld/slurmdbd up?): "
            f"{' '.join(argv)}",
            argv,
        ) from None
    return subprocess.CompletedProcess(
        list(argv), proc.returncode, out.decode("utf-8", errors="replace"), err.decode("utf-8", errors="replace")
    )


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """Kill a timed-out command and everything it started, then reap it."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        proc.communicate(timeout=5)
    except subprocess.TimeoutExpired:  # a child that left the group still holds a pipe
        proc.kill()
        proc.wait()


def _failed(argv: Sequence[str], proc: subprocess.CompletedProcess[str]) -> SchedulerQueryError:
    stderr = proc.stderr.strip()
    return SchedulerQueryError(
        f"{argv[0]} failed (exit {proc.returncode}): {stderr or '(no stderr)'}", argv, stderr
    )


def slurm_installed() -> bool:
    """True when any Slurm client is on PATH: this machine belongs to a Slurm cluster."""
    return any(shutil.which(name) for name in ("sbatch", "squeue", "scontrol", "sacct"))


def controller_problem(timeout_s: float = 5.0) -> str | None:
    """Why Slurm cannot take jobs from here (clients missing, controller down); None when it can."""
    missing = [name for name in ("sbatch", "sacct", "scontrol") if shutil.which(name) is None]
    if missing:
        return f"{', '.join(missing)} not on PATH"
    try:
        proc = _run(["scontrol", "ping"], timeout_s)
    except SchedulerQueryError as exc:
        return str(exc).splitlines()[0]
    if proc.returncode == 0 and "is UP" in proc.stdout:
        return None
    said = (proc.stdout.strip() or proc.stderr.strip() or f"exit {proc.returncode}").splitlines()[0]
    return f"scontrol ping: {said}"


def slurm_available(timeout_s: float = 5.0) -> bool:
    """True when Slurm's clients are installed and the controller answers.

    Checks that ``sbatch`` and ``sacct`` are on PATH and that ``scontrol ping`` reports
    the controller UP within ``timeout_s``. It does not check slurmdbd: a failing
    :func:`sacct` says so itself, and :func:`squeue` still works without it.

    Args:
        timeout_s: Longest wait for ``scontrol ping``.
    """
    if shutil.which("sbatch") is None or shutil.which("sacct") is None:
        return False
    try:
        proc = _run(["scontrol", "ping"], timeout_s)
    except SchedulerQueryError:
        return False
    return proc.returncode == 0 and "is UP" in proc.stdout


def sacct(
    job_ids: Sequence[str],
    timeout_s: float = 30.0,
    *,
    starttime: str | None = None,
    max_chars: int = DEFAULT_MAX_JOB_ID_CHARS,
    wanted: Collection[str] | None = None,
) -> list[JobRecord]:
    """Report jobs from Slurm's accounting, one sacct call per chunk of ids.

    A job submitted a moment ago may not be in accounting yet (slurmdbd gets it
    asynchronously), so an id missing from the result is not an error: callers that
    need it can ask :func:`squeue`.

    Args:
        job_ids: Job ids (``"123"``: every task of an array) or task ids (``"123_4"``).
        timeout_s: Longest wait per sacct call.
        starttime: Passed to sacct ``--starttime``; see ``planner.jobs.sacct.sacct_argv``.
        max_chars: Longest comma-joined id list in one call.
        wanted: Task ids the caller asks about: a pending range yields only those.

    Returns:
        One record per job or array task (pending ranges expanded per task).

    Raises:
        SchedulerQueryError: If sacct is missing, times out or exits non-zero (for
            instance when slurmdbd is down); the message carries sacct's stderr.
    """
    outputs: list[str] = []
    for chunk in chunk_job_ids(job_ids, max_chars):
        argv = sacct_argv(chunk, starttime)
        proc = _run(argv, timeout_s)
        if proc.returncode != 0:
            raise _failed(argv, proc)
        outputs.append(proc.stdout)
    # One parse over all chunks: a pending range and its started tasks are reconciled
    # even if they came back in different chunks.
    return parse_sacct("\n".join(outputs), wanted)


def squeue(
    job_ids: Sequence[str],
    timeout_s: float = 30.0,
    *,
    max_chars: int = DEFAULT_MAX_JOB_ID_CHARS,
    wanted: Collection[str] | None = None,
) -> list[JobRecord]:
    """Report jobs the controller still holds (no exit codes); the fallback to sacct.

    Args:
        job_ids: As for :func:`sacct`. Ids the controller has forgotten (ended more
            than ``MinJobAge`` ago) are simply absent from the result.
        timeout_s: Longest wait per squeue call.
        max_chars: Longest comma-joined id list in one call.

    Returns:
        One record per job or array task.

    Raises:
        SchedulerQueryError: If squeue is missing, times out or fails.
    """
    outputs: list[str] = []
    for chunk in chunk_job_ids(job_ids, max_chars):
        argv = squeue_argv(chunk)
        proc = _run(argv, timeout_s)
        if proc.returncode != 0:
            if _SQUEUE_UNKNOWN_IDS in proc.stderr:
                continue
            raise _failed(argv, proc)
        outputs.append(proc.stdout)
    return parse_squeue("\n".join(outputs), wanted)


def max_array_size(timeout_s: float = 10.0) -> int:
    """The cluster's MaxArraySize: array task ids must be below it.

    Args:
        timeout_s: Longest wait for ``scontrol show config``.

    Raises:
        SchedulerQueryError: If scontrol fails or its output has no MaxArraySize.
    """
    argv = ["scontrol", "show", "config"]
    proc = _run(argv, timeout_s)
    if proc.returncode != 0:
        raise _failed(argv, proc)
    try:
        return parse_max_array_size(proc.stdout)
    except ValueError as exc:
        raise SchedulerQueryError(str(exc), argv, proc.stderr.strip()) from exc


def partition_max_time(partition: str | None, timeout_s: float = 10.0) -> int | None:
    """MaxTime of a partition (None: the default one) in seconds; None when unlimited or unknown.

    Never raises: without Slurm, or when scontrol fails, there is simply no cap to apply.

    Args:
        partition: The partition jobs are sent to, or None for the cluster's default.
        timeout_s: Longest wait for ``scontrol show partition``.
    """
    if shutil.which("scontrol") is None:
        return None
    argv = ["scontrol", "show", "partition"]
    try:
        proc = _run(argv, timeout_s)
    except SchedulerQueryError:
        return None
    if proc.returncode != 0:
        return None
    return parse_partition_max_time(proc.stdout, partition)


def partition_gpu_types(timeout_s: float = 5.0) -> dict[str, str]:
    """Partition -> the GPU type its nodes report (``Gres=gpu:a100:4``), from ``scontrol show node``.

    Never raises: without Slurm, or when scontrol fails or is slow, Slurm simply says
    nothing (``{}``), and the device is looked up elsewhere.

    Args:
        timeout_s: Longest wait for ``scontrol show node``.
    """
    if shutil.which("scontrol") is None:
        return {}
    try:
        proc = _run(["scontrol", "show", "node"], timeout_s)
    except SchedulerQueryError:
        return {}
    if proc.returncode != 0:
        return {}
    return gres_devices(proc.stdout)


def plan_device(settings: LocalSettings, spec: ExperimentSpec, timeout_s: float = 5.0) -> DeviceChoice:
    """The device the spec's jobs will run on (:func:`planner.spec.device_choice.choose_device`).

    Asks ``scontrol show node`` only for a GPU job whose partition claude.local.md does not
    name under ``devices:``.

    Args:
        settings: The local settings the plan uses.
        spec: The experiment; its ``resources.partition`` and ``resources.gpus`` decide.
        timeout_s: Longest wait for scontrol.
    """
    partition, gpus = spec.resources.partition, spec.resources.gpus
    choice = choose_device(settings, partition, gpus)
    if not choice.assumed:  # a CPU job, or the settings name the partition's device
        return choice
    return choose_device(settings, partition, gpus, partition_gpu_types(timeout_s))


def job_ids_by_name(name: str, timeout_s: float = 30.0) -> list[str]:
    """Ids (array ids for arrays) of the jobs named ``name``: squeue for live ones, sacct for ended ones.

    How an unconfirmed journal entry finds its jobs again: every submission's job name ends
    in a tag unique to it.

    Raises:
        SchedulerQueryError: when either fails and the other found nothing.
    """
    found: set[str] = set()
    errors: list[SchedulerQueryError] = []
    for argv in (["squeue", "-h", f"--name={name}", "-o", "%F"],
                 ["sacct", "-X", "-n", "-P", f"--name={name}", "--format=JobID", "-S", "now-30days"]):
        try:
            proc = _run(argv, timeout_s)
        except SchedulerQueryError as exc:
            errors.append(exc)
            continue
        if proc.returncode != 0:
            errors.append(_failed(argv, proc))
            continue
        found.update(line.strip().split("_")[0] for line in proc.stdout.splitlines() if line.strip())
    # "No such job" needs both: a job that ended has left squeue, and sacct lags sbatch.
    if errors and not found:
        raise errors[0]
    return sorted(found, key=lambda j: (len(j), j))
