"""Wall time of prior runs from Slurm accounting: which answers are taken (stand-in sacct).

The same path against a real cluster is in test_slurm_cluster.py.
"""

from __future__ import annotations

import os
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from planner.estimate.priors import scheduler_wall_times
from planner.estimate.prior_scan import scan
from planner.jobs.slurm_query import SchedulerQueryError
from planner.folder.designlog import DesignLog
from planner.jobs.sacct import JobRecord

REAL = Path(__file__).parent / "fixtures" / "logs" / "real" / "slurm-90001.out"  # epochs of 4 s and 2 s
NOW = lambda: datetime(2026, 1, 1, tzinfo=timezone.utc)  # noqa: E731


def record(job_id: str, end: datetime, elapsed: int, state: str = "COMPLETED") -> JobRecord:
    return JobRecord(job_id=job_id, raw_id=job_id, array_job_id=None, array_task_id=None, state=state,  # type: ignore[arg-type]
                     raw_state=state, reason=None, exit_code=0, signal=0, submit=end - timedelta(seconds=elapsed + 5),
                     start=end - timedelta(seconds=elapsed), end=end, elapsed_s=elapsed, node_list="n1", name="job")


@pytest.fixture
def priors(tmp_path: Path):
    """Three bare logs (no job-state.json), last written an hour ago, and one with a job-state.json."""
    written = time.time() - 3600
    for name in ("slurm-501.out", "slurm-502.out", "slurm-503_2.out", "run/slurm-504.out"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(REAL.read_bytes())
        os.utime(tmp_path / name, (written, written))
    (tmp_path / "run" / "job-state.json").write_text(
        '{"state": "COMPLETED", "started": "2025-10-22T14:00:00Z", "ended": "2025-10-22T14:01:00Z"}')
    (tmp_path / "run" / "finetune.yaml").write_text("checkpointer:\n  checkpoint_dir: /nowhere\n")
    found = {Path(p.name).name: p for p in scan([tmp_path]).priors()}
    assert found["slurm-504.out"].wall_seconds == 60.0
    return found, datetime.fromtimestamp(written)


def test_takes_only_answers_that_are_the_logs_own_jobs(priors) -> None:
    found, written = priors
    asked: list[list[str]] = []

    def sacct(ids: list[str], timeout_s: float) -> list[JobRecord]:
        asked.append(ids)
        return [
            record("501", written + timedelta(seconds=20), 42),  # ended as the log stopped: its job
            record("502", written - timedelta(days=3), 42),  # the same id, another job, days before
            record("503_2", written, 3),  # shorter than the log's own 6 s of epochs: not its job
        ]

    log = DesignLog()
    assert scheduler_wall_times(list(found.values()), log, NOW, query=sacct) == 1
    assert asked == [["501", "502", "503_2"]]  # one call; the run with job-state.json is not asked about
    assert found["slurm-501.out"].wall_seconds == 42.0
    assert found["slurm-502.out"].wall_seconds is None and found["slurm-503_2.out"].wall_seconds is None
    text = log.render()
    assert "QUERY_SACCT: Wall time of prior runs from Slurm accounting" in text
    assert "Command: sacct --jobs=501,502,503_2 --format=" in text
    assert "Result: 1 of 3 prior run(s) the estimates use got their wall time" in text


def test_a_failing_sacct_is_noted_not_raised(priors) -> None:
    found, _ = priors

    def sacct(ids: list[str], timeout_s: float) -> list[JobRecord]:
        raise SchedulerQueryError("sacct failed (exit 1): sacct: error: Connection refused\n"
                                  "sacct: error: Problem talking to the database", ["sacct"])

    log = DesignLog()
    assert scheduler_wall_times(list(found.values()), log, NOW, query=sacct) == 0
    assert "Result: not available: sacct failed (exit 1): sacct: error: Connection refused\n" in log.render()
    assert all(p.wall_seconds is None for name, p in found.items() if name != "slurm-504.out")
