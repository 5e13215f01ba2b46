"""submit and status through the one scheduler interface, driven by an in-memory fake.

The fake takes on demand what a real cluster cannot: accounting that goes away, a
scheduler that hangs, every terminal state, job ids that come round again. The same
commands run against the real cluster in test_slurm_submit.py and test_slurm_cluster.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import run_cli
from fake_scheduler import FakeScheduler

from planner.folder.experiment import load_experiment
from planner.jobs import kinds, slurm_query
from planner.jobs.local import LocalScheduler
from planner.jobs.scheduler import JobRequest
from planner.jobs.slurm import SlurmScheduler
from planner.spec.states import FINAL_STATES, RETRYABLE_STATES

R4, R16 = "tiny-llama-cap_rank4", "tiny-llama-cap_rank16"
E4 = f"{R4}/eval/capitalization_epoch0"


@pytest.fixture()
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeScheduler:
    """Every command that asks for the Slurm scheduler gets this fake."""
    scheduler = FakeScheduler()
    monkeypatch.setattr(slurm_query, "slurm_available", lambda: True)
    monkeypatch.setattr(kinds, "schedulers", lambda folder: {"slurm": scheduler, "local": LocalScheduler(folder)})
    return scheduler


@pytest.fixture()
def exp(example: Path) -> Path:
    result = run_cli("new", "--spec", str(example / "experiment.yaml"), "--yes")
    assert result.exit_code == 0, result.output
    return example / "experiments" / "cap_5L_lora_comparison_demo"


def submit(exp: Path, *extra: str) -> tuple[int, str]:
    result = run_cli("submit", str(exp), "--executor", "slurm", *extra)
    return result.exit_code, result.output


def status(exp: Path) -> tuple[int, dict]:
    result = run_cli("status", str(exp), "--json")
    return result.exit_code, json.loads(result.stdout)


def states(report: dict) -> dict[str, str]:
    return {u["unit"]: u["state"] for u in report["units"]}


def test_dry_run_shows_every_submission_and_sends_and_writes_nothing(exp: Path, fake: FakeScheduler) -> None:
    def files() -> list[str]:  # the lock file under .plan-experiment/ is the planner's own
        return sorted(p.relative_to(exp).as_posix() for p in exp.rglob("*") if ".plan-experiment" not in p.parts)

    before = files()
    code, out = submit(exp, "--dry-run")
    assert code == 0, out
    assert fake.submissions == []
    assert files() == before  # no journal, no state: nothing
    assert "#FAKE cap_5L_lora_comparison_demo-train" in out and "tasks=2" in out
    # Evaluations wait for their own run's training task, shown with placeholder ids.
    assert "--dependency=afterok:DRYRUN1_0" in out and "--dependency=afterok:DRYRUN1_1" in out
    assert "would submit train job DRYRUN1 on slurm (2 task(s))" in out


def test_every_terminal_state_reaches_the_status_table(exp: Path, fake: FakeScheduler) -> None:
    assert submit(exp)[0] == 0
    for state in sorted(FINAL_STATES):
        fake.finish(R4, state)
        # A final state is cached and never asked again: forget it to try the next one.
        (exp / ".plan-experiment" / "status-cache.json").unlink(missing_ok=True)
        code, report = status(exp)
        assert states(report)[R4] == state
        assert code == (6 if state in RETRYABLE_STATES else 0)
        summary = (exp / "experiment_summary.md").read_text().splitlines()
        assert any(line.startswith(f"| {R4} ") and f"| {state.lower()} |" in line for line in summary), state


def test_status_when_accounting_is_lost_uses_job_files_and_says_it_may_be_stale(exp: Path, fake: FakeScheduler) -> None:
    assert submit(exp)[0] == 0
    fake.finish(R16, "COMPLETED")
    code, report = status(exp)
    assert not report["stale"] and states(report)[R16] == "COMPLETED"
    good = report["last_good_refresh"]
    # R4's job wrote its own record, then accounting went away.
    r4_job = fake.jobs[next(j for j, job in fake.jobs.items() if job.script.parent.name == R4)].job_id
    (exp / R4 / "job-state.json").write_text(json.dumps(
        {"state": "RUNNING", "job_id": r4_job, "started": "2025-01-31T10:00:00.000Z", "ended": "", "exit_code": None}))
    fake.accounting_lost = True
    code, report = status(exp)
    assert report["stale"] and "accounting storage is unavailable" in report["stale_reason"]
    assert report["last_good_refresh"] == good
    by_unit = {u["unit"]: u for u in report["units"]}
    assert (by_unit[R4]["state"], by_unit[R4]["source"]) == ("RUNNING", "job file")
    assert by_unit[R16]["state"] == "COMPLETED"  # known final before: from the cache
    text = run_cli("status", str(exp)).output
    assert "status may be stale: sacct: Slurm accounting storage is unavailable" in text


def test_status_when_the_scheduler_hangs_returns_stale(exp: Path, fake: FakeScheduler) -> None:
    assert submit(exp)[0] == 0
    fake.hang_s = 0.2
    code, report = status(exp)
    assert report["stale"] and "did not answer" in report["stale_reason"]
    assert set(states(report).values()) == {"SUBMITTED"}  # nobody knows more; nothing invented


def test_a_damaged_job_file_is_one_warning_naming_it(exp: Path, fake: FakeScheduler) -> None:
    assert submit(exp)[0] == 0
    (exp / R4 / "job-state.json").write_text("{not json")
    fake.accounting_lost = True
    result = run_cli("status", str(exp))
    assert f"{exp / R4 / 'job-state.json'}: job state is damaged" in result.output
    assert "Traceback" not in result.output


def test_retry_failed_resubmits_only_the_failed_run_and_its_evaluations(exp: Path, fake: FakeScheduler) -> None:
    assert submit(exp)[0] == 0
    fake.finish(R4, "OUT_OF_MEMORY")
    fake.finish(R16, "COMPLETED")
    fake.finish(E4, "CANCELLED")  # its dependency failed
    code, out = submit(exp)
    assert code == 0 and "nothing to submit" in out
    assert f"skipped {R4}" in out
    code, out = submit(exp, "--retry-failed")
    assert code == 0, out
    assert f"submitted train job" in out and R4 in out and R16 + "," not in out
    journal = json.loads((exp / "journal.json").read_text())
    retried = [s for s in journal["submissions"] if s["retry"]]
    assert {t["unit"] for s in retried for t in s["tasks"]} == {R4, f"{R4}/capitalization_epoch0"}
    assert states(status(exp)[1])[R4] == "PENDING"


def test_a_recycled_job_id_is_not_answered_from_the_old_jobs_state(exp: Path, fake: FakeScheduler) -> None:
    assert submit(exp)[0] == 0
    fake.finish_all("FAILED")
    assert states(status(exp)[1])[R4] == "FAILED"  # now cached as final
    old_ids = {s[0] for s in fake.submissions}
    fake.restart_ids()  # the cluster's counter restarted: the retry gets the same ids
    assert submit(exp, "--retry-failed")[0] == 0
    assert {s[0] for s in fake.submissions[len(old_ids):]} & old_ids
    assert states(status(exp)[1])[R4] == "PENDING"


def test_slurm_preview_is_the_sbatch_script_submitit_writes(tmp_path: Path) -> None:
    """The dry run calls submitit's private _make_sbatch_string (pinned in pyproject.toml)."""
    request = JobRequest(name="exp train", time="01:30:00", gpus=2, nodes=1, cpus_per_task=8, mem="32G",
                         account="proj", partition="gpu", constraint=None, qos=None, array_parallelism=3,
                         dependency="afterok:41_0")
    text = SlurmScheduler(tmp_path).preview([tmp_path / "a/train.sh", tmp_path / "b/train.sh"], request)
    lines = text.splitlines()
    assert lines[0] == "#!/bin/bash"
    for expected in ("#SBATCH --job-name=exp_train", "#SBATCH --time=90", "#SBATCH --gpus-per-node=2",
                     "#SBATCH --cpus-per-task=8", "#SBATCH --mem=32G", "#SBATCH --account=proj",
                     "#SBATCH --partition=gpu",
                     "#SBATCH --array=0-1%2",  # submitit caps the parallelism at the array's size "#SBATCH --dependency=afterok:41_0",
                     "#SBATCH --ntasks-per-node=1"):
        assert expected in lines, (expected, text)
    assert any("submitit.core._submit" in line for line in lines)


def test_the_local_scheduler_reports_a_vanished_process_as_lost(tmp_path: Path) -> None:
    got = LocalScheduler(tmp_path).query({"local-999999999": tmp_path}, 1.0)
    assert got.jobs["local-999999999"].state == "LOST" and not got.stale
