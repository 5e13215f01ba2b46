"""On a real Slurm cluster, jobs refresh the summary's status tables as they end.

Nobody runs ``status`` in these tests until the tables have been checked: what they show
was written by the jobs themselves. The jobs run a second of ``sleep`` instead of
torchtune (the training itself is tested elsewhere), and each test submits once. The
demo with real training and evaluation, followed the same way, is in
test_slurm_submit.py (``test_jobs_fill_the_summary_without_anyone_running_status``).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from slurm_support import require_slurm, scancel, wait_for_records
from submit_support import (
    block,
    cli,
    copy_example,
    journal,
    ok,
    plan,
    plan_units,
    replace_job_command,
    slurm_job_ids,
    status_tables,
    table,
)
from test_job_refresh import add_hand_lines, assert_hand_lines, read_only, refresh_line

pytestmark = pytest.mark.slurm

RUNS = 50


@pytest.fixture(autouse=True)
def _cluster() -> None:
    require_slurm()


def sleep_experiment(tmp_path: Path, name: str, runs: int) -> Path:
    """A planned experiment of ``runs`` fine-tunes without evaluations, each a second of sleep."""
    spec = copy_example(tmp_path / "src", {"name": name, "base_model_controls": False, "factors": {"lora_rank": [4]},
                                           "replicates": {"seeds": list(range(1, runs + 1))},
                                           "evaluation": {"tasks": []}})
    exp = plan(spec, tmp_path / "out")
    for run in plan_units(exp)[0]:
        replace_job_command(exp / run / "train.sh", "sleep 1")
    return exp


def wait_for_jobs(exp: Path, timeout_s: float = 900) -> dict[str, str]:
    """Wait on sacct (not on ``status``) until every journalled job ended; unit -> job id."""
    ids = {t["unit"]: t["job_id"] for s in journal(exp)["submissions"] for t in s["tasks"]}
    wait_for_records(slurm_job_ids(exp), ids.values(), timeout_s=timeout_s, poll_s=2)
    return ids


def test_fifty_jobs_ending_together_leave_every_row_final_and_a_failed_run_shows_its_exit_code(tmp_path: Path) -> None:
    exp = sleep_experiment(tmp_path, "cap_array_refresh", RUNS)
    runs = plan_units(exp)[0]
    failing = runs[RUNS // 2]
    replace_job_command(exp / failing / "train.sh", "sleep 1; (exit 3)")
    add_hand_lines(exp / "experiment_summary.md")
    try:
        out = ok(cli("submit", exp))
        assert f"({RUNS} task(s))" in out
        ids = wait_for_jobs(exp)
        text = (exp / "experiment_summary.md").read_text(encoding="utf-8")
        assert_hand_lines(text)
        for name in ("status-refresh", "finetune-status", "eval-status"):
            assert text.count(f"<!-- plan-experiment:begin {name} -->") == 1
            assert text.count(f"<!-- plan-experiment:end {name} -->") == 1
        finetune = table(block(text, "finetune-status"))
        assert [(r["Run Name"], r["Job ID"]) for r in finetune] == [(run, ids[run]) for run in runs]
        assert {r["Run Name"]: r["Status"] for r in finetune} == {
            run: "failed" if run == failing else "completed" for run in runs}
        assert all(r["Started"] != "-" and r["Completed"] != "-" and "elapsed " in r["Notes"] for r in finetune)
        bad = next(r for r in finetune if r["Run Name"] == failing)
        assert bad["Notes"].startswith("exit code 3;"), bad
        line = refresh_line(exp)
        assert re.fullmatch(r"Tables refreshed \d{4}-\d\d-\d\d \d\d:\d\d:\d\d by job \d+_\d+\.", line), line
        assert not list((exp / ".plan-experiment" / "refresh-requests").iterdir())
        logs = [(exp / run / f"slurm-{ids[run]}.out").read_text(encoding="utf-8") for run in runs]
        assert all("plan-experiment: status tables " in log for log in logs)
        # The job's own exit code stays what Slurm records: the refresh changes nothing.
        assert json.loads((exp / failing / "job-state.json").read_text())["exit_code"] == 3
        # status afterwards agrees with what the jobs wrote.
        report = json.loads(cli("status", exp, "--json").stdout)
        assert report["all_final"] and report["counts"] == {"COMPLETED": RUNS - 1, "FAILED": 1}
        after = status_tables(exp)[0]
        assert [(r["Run Name"], r["Status"]) for r in after] == [(r["Run Name"], r["Status"]) for r in finetune]
    finally:
        scancel(*slurm_job_ids(exp))


def test_a_job_whose_experiment_folder_is_read_only_ends_with_its_own_exit_code_and_says_why(tmp_path: Path) -> None:
    exp = sleep_experiment(tmp_path, "cap_read_only", 1)
    run = plan_units(exp)[0][0]
    replace_job_command(exp / run / "train.sh", "sleep 3")
    before = (exp / "experiment_summary.md").read_text(encoding="utf-8")
    try:
        ok(cli("submit", exp))
        with read_only(exp):
            job = journal(exp)["submissions"][0]["tasks"][0]["job_id"]
            records = wait_for_records([job], [job], timeout_s=600, poll_s=2)
            assert (records[job].state, records[job].exit_code) == ("COMPLETED", 0)
            assert (exp / "experiment_summary.md").read_text(encoding="utf-8") == before
        state = json.loads((exp / run / "job-state.json").read_text())
        assert (state["state"], state["exit_code"]) == ("COMPLETED", 0)
        log = (exp / run / f"slurm-{job}.out").read_text(encoding="utf-8")
        assert f"plan-experiment: status tables not refreshed: cannot write {exp}/" in log, log
        assert "the experiment folder is read-only here" in log
        # Writable again: status catches up.
        ok(cli("status", exp))
        assert status_tables(exp)[0][0]["Status"] == "completed"
    finally:
        scancel(*slurm_job_ids(exp))
