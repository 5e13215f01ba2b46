"""Helpers for tests that need a real Slurm cluster (``@pytest.mark.slurm``).

Import from test modules (``from slurm_support import require_slurm``); pytest puts
this folder on ``sys.path`` for them. Start a local cluster with
``bash scripts/slurm-cluster.sh start`` (see docs/slurm-cluster.md).
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import pytest

from planner.jobs.slurm_query import sacct, slurm_available
from planner.jobs.sacct import JobRecord

SKIP_MESSAGE = "no Slurm cluster reachable: start one with `bash scripts/slurm-cluster.sh start`"


def _under_ci() -> bool:
    """CI=true (GitHub Actions, GitLab and most others set it): Slurm tests are required."""
    return os.environ.get("CI", "").strip().lower() in {"true", "1"}


def require_slurm() -> None:
    """Skip the calling test when no Slurm cluster answers; fail instead under CI.

    Under CI a missing cluster is a broken setup step, and a silent skip would let
    every scheduler test pass without running.
    """
    if slurm_available():
        return
    if _under_ci():
        pytest.fail(f"{SKIP_MESSAGE} (CI=true: Slurm tests are required)", pytrace=False)
    pytest.skip(SKIP_MESSAGE)


def sbatch(*args: str, cwd: Path) -> str:
    """Submit with ``sbatch --parsable`` and return the job id (without a cluster suffix)."""
    proc = subprocess.run(
        ["sbatch", "--parsable", f"--chdir={cwd}", f"--output={cwd}/slurm-%j.out", *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 0, f"sbatch {' '.join(args)} failed: {proc.stderr.strip()}"
    # --parsable prints "<id>" or "<id>;<cluster>".
    return proc.stdout.strip().split(";", 1)[0]


def scancel(*job_ids: str) -> None:
    """Cancel jobs, ignoring ones that already ended (cleanup must not fail a test)."""
    if job_ids:
        subprocess.run(["scancel", *job_ids], capture_output=True, timeout=30, check=False)


def wait_for_records(
    job_ids: Sequence[str],
    expected: Iterable[str],
    *,
    final: bool = True,
    timeout_s: float = 180.0,
    poll_s: float = 0.5,
) -> dict[str, JobRecord]:
    """Poll sacct until every id in ``expected`` has a record (a final one if ``final``).

    Polling, not a single query: slurmdbd receives job records asynchronously, so
    sacct may not know a job for a moment after submission or after it ended. The
    generous default timeout allows for other jobs occupying a small shared cluster.

    Args:
        job_ids: Ids to pass to sacct (array ids report all their tasks).
        expected: User-facing ids (``"12"``, ``"13_2"``) that must come back.
        final: Also wait until each expected record is in a final state.
        timeout_s: Give up (and fail the test) after this long.
        poll_s: Pause between queries.

    Returns:
        The last records, by job id.
    """
    wanted = set(expected)
    deadline = time.monotonic() + timeout_s
    records: dict[str, JobRecord] = {}
    while True:
        records = {r.job_id: r for r in sacct(list(job_ids))}
        ready = wanted <= records.keys() and (not final or all(records[j].is_final for j in wanted))
        if ready:
            return records
        if time.monotonic() > deadline:
            seen = {j: records[j].state for j in sorted(records)}
            pytest.fail(
                f"jobs not done after {timeout_s:g}s: want {sorted(wanted)}, sacct has {seen}"
            )
        time.sleep(poll_s)
