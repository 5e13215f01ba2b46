"""A job refreshes its experiment's status tables as it ends: no command to run, no watcher.

The job scripts (``train.sh``, ``eval.sh``) run, after writing their own ``job-state.json``::

    python -m planner.status.job_refresh EXPERIMENT_DIR JOB_ID [--lock-wait SECONDS]

The command is fixed text; the folder and the job id are separate, quoted arguments.

A refresh from a job must never fail the job nor hold it up for long, and many jobs end
at once (a whole array). So each job first leaves a *request* (an empty file named after
it under ``.plan-experiment/refresh-requests/``), then waits a few seconds at most for
the experiment's lock. Whoever holds the lock refreshes in passes: it lists the requests,
refreshes (reading every job's record after the listing), removes the requests it listed,
and goes again while new ones arrived. A job that gives up waiting has therefore left its
request to the holder, which sees it before letting go: the last refresh sees every job
that ended before it, without any job waiting its turn behind all the others.

Whatever goes wrong (the lock held too long, a read-only folder, a summary whose markers
were edited away) is one line on stdout, which the job script appends to the job's log;
the process exits 0 and the job keeps its own exit code. ``plan-experiment status``, or
the next job's refresh, catches up.
"""

from __future__ import annotations

import argparse
import errno
import os
import re
import sys
import time
from datetime import datetime
from pathlib import Path

from planner.folder.experiment import Experiment, LockBusy, load_experiment
from planner.status.refresh import refresh_locked
from planner.spec.errors import PlannerError

REQUESTS = "refresh-requests"
#: Longest a job waits for the experiment's lock before leaving its refresh to the holder.
LOCK_WAIT_S = 5.0
#: A holder starts no new pass after this long: it is a job too, and must end.
PASS_BUDGET_S = 5.0
CATCH_UP = "`plan-experiment status` or the next job's refresh catches up"

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def request_path(exp: Experiment, job_id: str) -> Path:
    """The request file of one job."""
    return exp.internal / REQUESTS / (_UNSAFE.sub("_", job_id) or "job")


def _pending(folder: Path) -> set[str]:
    try:
        return set(os.listdir(folder))
    except FileNotFoundError:
        return set()


def refresh_from_job(exp: Experiment, job_id: str, lock_wait_s: float = LOCK_WAIT_S,
                     budget_s: float = PASS_BUDGET_S) -> str:
    """Refresh the status tables for a job that has just written its own record.

    Args:
        exp: The job's experiment.
        job_id: The job's id (``123``, ``123_4``), named in the summary's refresh line.
        lock_wait_s: Longest wait for the experiment's lock.
        budget_s: No new pass starts after this long holding the lock. A pass takes far
            less than ``lock_wait_s``, so whatever is left then belongs to jobs still
            waiting for the lock, and the next of them serves it.

    Returns:
        The one line for the job's log.

    Raises:
        OSError: a file could not be written (the caller turns it into the log line).
        PlannerError: the journal or the summary's markers are unreadable.
    """
    folder = exp.internal / REQUESTS
    left_request = True
    try:
        folder.mkdir(parents=True, exist_ok=True)
        request_path(exp, job_id).touch()
    except OSError:
        left_request = False  # the lock below still works where the folder is only partly writable
    try:
        with exp.lock(lock_wait_s):
            started = time.monotonic()
            passes = 0
            while True:
                listed = _pending(folder)
                report, _ = refresh_locked(exp, datetime.now(), by=f"job {job_id}")
                passes += 1
                for name in listed:
                    (folder / name).unlink(missing_ok=True)
                if not _pending(folder):
                    break
                if time.monotonic() - started > budget_s:
                    return (f"plan-experiment: status tables refreshed by job {job_id}; {len(_pending(folder))} later "
                            f"request(s) left to the next refresh after {passes} passes")
    except LockBusy:
        if left_request:
            return (f"plan-experiment: status tables not refreshed by job {job_id}: another refresh held the experiment's "
                    f"lock for {lock_wait_s:g} s; it refreshes again for this job before it lets go")
        return (f"plan-experiment: status tables not refreshed by job {job_id}: another refresh held the experiment's "
                f"lock for {lock_wait_s:g} s and no request could be left in {folder}; {CATCH_UP}")
    if report.warnings:  # the summary's markers were edited away: the tables could not be placed
        return f"plan-experiment: status tables not refreshed: {report.warnings[0]}"
    counts = ", ".join(f"{n} {s.lower()}" for s, n in sorted(report.counts().items()))
    return f"plan-experiment: status tables refreshed by job {job_id} ({len(report.units)} units: {counts})"


def describe_failure(exc: BaseException) -> str:
    """Why a job's refresh failed, in one line that says what to do."""
    if isinstance(exc, OSError) and exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        where = exc.filename or "the experiment folder"
        return (f"plan-experiment: status tables not refreshed: cannot write {where} ({exc.strerror}); the experiment "
                f"folder is read-only here; {CATCH_UP} once it is writable")
    if isinstance(exc, OSError):
        where = f"{exc.filename}: " if exc.filename else ""
        return f"plan-experiment: status tables not refreshed: {where}{exc.strerror or exc}; {CATCH_UP}"
    if isinstance(exc, PlannerError):
        return f"plan-experiment: status tables not refreshed: {str(exc).splitlines()[0]}"
    return f"plan-experiment: status tables not refreshed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}; {CATCH_UP}"


def main(argv: list[str] | None = None) -> int:
    """Entry point of the job scripts; always exits 0 once its arguments parse."""
    parser = argparse.ArgumentParser(prog="python -m planner.status.job_refresh",
                                     description="Refresh an experiment's status tables as a job ends.")
    parser.add_argument("experiment", type=Path)
    parser.add_argument("job_id")
    parser.add_argument("--lock-wait", type=float, default=LOCK_WAIT_S)
    args = parser.parse_args(argv)
    try:
        exp = load_experiment(args.experiment)
        line = refresh_from_job(exp, args.job_id, lock_wait_s=args.lock_wait)
    except Exception as exc:  # noqa: BLE001 - a refresh never fails the job: every failure is a log line
        line = describe_failure(exc)
    print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
