"""A failed training, as status tells it: the script's exit code, why its evaluations were
cancelled, and the file that holds the error, on the real cluster.

The environment setup lines of claude.local.md make the job fail on purpose: once with
exit 3 from the training command (after the log started), once with exit 4 before the job's
script could start its log.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path

import pytest
from slurm_support import require_slurm, scancel
from submit_support import cli, copy_example, journal, ok, plan, wait_final

from planner.folder.journal import Journal, Submission, TaskEntry
from planner.jobs.scheduler import JobInfo
from planner.spec.runs import expand
from planner.spec.spec import parse_spec
from planner.status.report import build_report

RUN = "tiny-llama-cap_rank4"
EVAL = f"{RUN}/capitalization_epoch0"


def _plan_failing(tmp_path: Path, name: str, setup: list[str]) -> Path:
    spec = copy_example(tmp_path / "src", {"name": name, "factors": {"lora_rank": [4]}, "base_model_controls": False})
    local = spec.parent / "claude.local.md"
    local.write_text(local.read_text().replace("  setup: []", "  setup:\n" + "".join(f"    - {json.dumps(s)}\n" for s in setup)))
    return plan(spec, tmp_path / "out")


@pytest.mark.slurm
@pytest.mark.parametrize(
    ("case", "setup", "code", "log_name"),
    [
        # An executable, not a shell function: the recovery supervisor runs the command itself.
        ("exit3", ["export PATH=\"$PWD/.stub-bin:$PATH\"", "mkdir -p .stub-bin",
                   "printf '#!/bin/sh\\necho training broke >&2\\nexit 3\\n' > .stub-bin/tune",
                   "chmod +x .stub-bin/tune"], 3, r"slurm-\d+(_0)?\.out"),
        ("early4", ["echo 'module load failed' >&2", "exit 4"], 4, r"\d+(_0)?_0_log\.out"),
    ],
)
def test_failed_training_says_why_and_where(tmp_path: Path, case: str, setup: list[str], code: int, log_name: str) -> None:
    require_slurm()
    exp = _plan_failing(tmp_path, f"failing_{case}", setup)
    try:
        ok(cli("submit", exp, "--executor", "slurm"))
        report = wait_final(exp)
        units = {u["unit"]: u for u in report["units"]}
        train, ev = units[RUN], units[EVAL]
        assert train["state"] == "FAILED" and train["exit_code"] == code, train
        assert ev["state"] == "CANCELLED" and ev["reason"] == "training failed", ev
        assert train["log"] and re.search(log_name, train["log"]) and Path(train["log"]).is_file(), train["log"]
        text = Path(train["log"]).read_text(errors="replace")
        assert ("training broke" if code == 3 else "module load failed") in text
        proc = cli("status", exp)
        assert proc.returncode == 6 and f"read {train['log']}" in proc.stderr, proc.stderr
        summary = (exp / "experiment_summary.md").read_text()
        assert f"exit code {code}" in summary and "training failed" in summary
    finally:
        scancel(*[s["job_id"] for s in journal(exp)["submissions"]] if (exp / "journal.json").exists() else [])


def _report(train: JobInfo, ev: JobInfo):  # type: ignore[no-untyped-def]
    spec = parse_spec(json.loads(json.dumps({
        "name": "x", "models": ["m"], "dataset": {"path": "d.json"}, "base_model_controls": False,
        "evaluation": {"tasks": [{"name": "capitalization", "script": "eval.py"}]},
    })), "spec")
    plan_ = expand(spec)
    run = plan_.finetune_runs[0].name
    key = plan_.evaluations[0].key
    journal_ = Journal(experiment="x", submissions=[
        Submission(number=1, time="t", executor="slurm", kind="train", job_id="1", dependency=None, parameters={},
                   tasks=[TaskEntry(unit=run, job_id="1_0", script="s")]),
        Submission(number=2, time="t", executor="slurm", kind="eval", job_id="2", dependency="afterok:1_0", parameters={},
                   tasks=[TaskEntry(unit=key, job_id="2_0", script="s")]),
    ])
    report = build_report(plan_, journal_, {"1_0": train, "2_0": ev}, datetime(2025, 1, 1))
    return {u.kind: u for u in report.units}


def test_cancelled_evaluation_of_a_failed_training_says_training_failed() -> None:
    units = _report(JobInfo(state="FAILED", exit_code=1), JobInfo(state="CANCELLED", reason="None"))
    assert units["eval"].reason == "training failed"


def test_a_user_cancel_is_not_called_a_training_failure() -> None:
    units = _report(JobInfo(state="RUNNING"), JobInfo(state="CANCELLED", reason="None", raw_state="CANCELLED by 0"))
    assert units["eval"].reason == "None"


def test_a_completed_evaluation_keeps_no_pending_reason() -> None:
    units = _report(JobInfo(state="COMPLETED", exit_code=0, reason="None"),
                    JobInfo(state="COMPLETED", exit_code=0, reason="Dependency"))
    assert units["eval"].reason is None and units["train"].reason is None
