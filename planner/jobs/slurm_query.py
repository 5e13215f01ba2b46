"""Ask Slurm about jobs: the subprocess boundary for sacct, squeue and scontrol.

Argv building and parsing are pure and live in ``planner.jobs.sacct``; this module only
runs the commands, with a timeout, and turns failures into :class:`SchedulerQueryError`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence

from planner.spec.errors import SchedulerError
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

__all__ = [
    "SchedulerQueryError",
    "max_array_size",
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
    """Run one Slurm command; raise SchedulerQueryError if it cannot run or times out."""
    try:
        return subprocess.run(
            list(argv),
            capture_output=True,
            text=True,
            timeout=timeout_s,
            env=_env(),
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except FileNotFoundError as exc:
        raise SchedulerQueryError(
            f"{argv[0]} not found on PATH: is Slurm installed on this machine?", argv
        ) from exc
    except subprocess.TimeoutExpired as exc:
        stderr = (
            exc.stderr.decode(errors="replace")
            if isinstance(exc.stderr, bytes)
            else exc.stderr or ""
        )
        raise SchedulerQueryError(
            f"{argv[0]} did not answer within {timeout_s:g}s (is slurmctld/slurmdbd up?): "
            f"{' '.join(argv)}",
            argv,
            stderr.strip(),
        ) from exc


def _failed(argv: Sequence[str], proc: subprocess.CompletedProcess[str]) -> SchedulerQueryError:
    stderr = proc.stderr.strip()
    return SchedulerQueryError(
        f"{argv[0]} failed (exit {proc.returncode}): {stderr or '(no stderr)'}", argv, stderr
    )


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
    return parse_sacct("\n".join(outputs))


def squeue(
    job_ids: Sequence[str],
    timeout_s: float = 30.0,
    *,
    max_chars: int = DEFAULT_MAX_JOB_ID_CHARS,
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
    return parse_squeue("\n".join(outputs))


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
