"""Against a real Slurm cluster: submissions come back right through slurm_query.

Skipped when no cluster answers (``bash scripts/slurm-cluster.sh start`` makes one);
required under ``CI=true``.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest
from slurm_support import require_slurm, sbatch, scancel, wait_for_records

from planner.jobs import slurm_query
from planner.jobs.slurm_query import SchedulerQueryError

pytestmark = pytest.mark.slurm

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _cluster() -> None:
    require_slurm()


def test_exit_codes_arrays_and_dependencies(tmp_path: Path) -> None:
    failing = sbatch("--job-name=pe-fail", "--wrap", "exit 3", cwd=tmp_path)
    ok = sbatch("--job-name=pe-ok", "--wrap", "echo hello from slurm", cwd=tmp_path)
    array = sbatch(
        "--job-name=pe-array",
        "--array=0-2",
        "--wrap",
        "echo task $SLURM_ARRAY_TASK_ID",
        cwd=tmp_path,
    )
    # kill_invalid_depend: once `failing` fails, this can never run and is cancelled
    # instead of pending for ever.
    dependent = sbatch(
        "--job-name=pe-dep",
        f"--dependency=afterok:{failing}",
        "--wrap",
        f"touch {tmp_path}/dependent-ran",
        cwd=tmp_path,
    )
    tasks = [f"{array}_{i}" for i in range(3)]
    try:
        records = wait_for_records(
            [failing, ok, array, dependent], [failing, ok, dependent, *tasks]
        )
    finally:
        scancel(failing, ok, array, dependent)

    assert records[failing].state == "FAILED"
    assert records[failing].exit_code == 3 and records[failing].signal == 0
    assert records[failing].start is not None and records[failing].end is not None

    assert records[ok].state == "COMPLETED" and records[ok].exit_code == 0
    assert records[ok].elapsed_s is not None and records[ok].elapsed_s >= 0
    assert (tmp_path / f"slurm-{ok}.out").read_text().strip() == "hello from slurm"

    for task_index, task in enumerate(tasks):
        rec = records[task]
        assert rec.state == "COMPLETED", rec
        assert rec.array_job_id == array and rec.array_task_id == task_index
        assert rec.raw_id is not None
    # No record for the array as a whole: only its tasks.
    assert array not in records

    dep = records[dependent]
    assert dep.state == "CANCELLED", dep
    assert dep.start is None and dep.node_list is None  # never ran
    assert not (tmp_path / "dependent-ran").exists()


def test_pending_array_is_reported_per_task(tmp_path: Path) -> None:
    # Held, so the tasks stay pending while we look; sacct then prints one range line.
    array = sbatch("--job-name=pe-held", "--hold", "--array=0-2%1", "--wrap", "true", cwd=tmp_path)
    tasks = [f"{array}_{i}" for i in range(3)]
    try:
        records = wait_for_records([array], tasks, final=False, timeout_s=60)
        for i, task in enumerate(tasks):
            assert records[task].state == "PENDING", records[task]
            assert records[task].array_task_id == i and records[task].raw_id is None

        queued = {r.job_id: r for r in slurm_query.squeue([array])}
        assert sorted(queued) == sorted(tasks)
        assert all(r.state == "PENDING" for r in queued.values())
    finally:
        scancel(array)
    records = wait_for_records([array], tasks, timeout_s=60)
    assert {records[t].state for t in tasks} == {"CANCELLED"}


def test_unknown_ids(tmp_path: Path) -> None:
    # A job id nobody submitted: nothing comes back, and that is not an error.
    unused = str(int(sbatch("--hold", "--wrap", "true", cwd=tmp_path)) + 100_000)
    scancel(str(int(unused) - 100_000))
    assert slurm_query.sacct([unused]) == []
    assert slurm_query.squeue([unused]) == []
    # Malformed ids are an error, with sacct's own message.
    with pytest.raises(SchedulerQueryError, match="Bad job/step"):
        slurm_query.sacct(["not-a-job"])


def test_sacct_in_chunks(tmp_path: Path) -> None:
    ids = [sbatch("--wrap", "true", cwd=tmp_path) for _ in range(3)]
    records = wait_for_records(ids, ids)
    assert {r.state for r in records.values()} == {"COMPLETED"}
    # Forcing one id per sacct call gives the same answer.
    chunked = {r.job_id: r.state for r in slurm_query.sacct(ids, max_chars=1)}
    assert chunked == {j: "COMPLETED" for j in ids}


def test_max_array_size() -> None:
    size = slurm_query.max_array_size()
    assert size > 0
    conf = Path(os.environ.get("SLURM_CONF", "/etc/slurm/slurm.conf"))
    if conf.exists() and "slurm-cluster.sh" in conf.read_text(errors="replace").splitlines()[0]:
        # Our local cluster pins the value; keep this test in step with the script.
        pinned = re.search(
            r"^MAX_ARRAY_SIZE=(\d+)$",
            (REPO / "scripts" / "slurm-cluster.sh").read_text(),
            re.MULTILINE,
        )
        assert pinned is not None
        assert size == int(pinned.group(1)) == 1001


def test_slurm_available_is_quick() -> None:
    started = time.monotonic()
    assert slurm_query.slurm_available()
    assert time.monotonic() - started < 5


def test_prior_log_gets_its_wall_time_from_accounting(tmp_path: Path) -> None:
    """A torchtune log written by a Slurm job elsewhere (no job-state.json): sacct says how long it ran."""
    from datetime import datetime, timezone

    from planner.estimate.priors import scheduler_wall_times
    from planner.estimate.prior_scan import scan
    from planner.folder.designlog import DesignLog

    fixture = REPO / "tests" / "fixtures" / "logs" / "real" / "slurm-90001.out"  # 6 s of epochs
    job = sbatch("--job-name=pe-prior", "--wrap", f"cat '{fixture}'; sleep 7", cwd=tmp_path)
    rec = wait_for_records([job], [job])[job]
    assert rec.state == "COMPLETED" and rec.elapsed_s and rec.elapsed_s >= 7
    [prior] = scan([tmp_path]).priors()
    assert prior.name.endswith(f"slurm-{job}.out") and prior.wall_seconds is None
    log = DesignLog()
    assert scheduler_wall_times([prior], log, lambda: datetime.now(timezone.utc)) == 1
    assert prior.wall_seconds == rec.elapsed_s
    assert f"sacct --jobs={job} --format=" in log.render()
