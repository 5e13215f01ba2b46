"""The experiment folder's machine files: one schema each, and a damaged one is one line.

journal.json, estimates.json and job-state.json are read through their schema only; a
damaged or newer file stops the command with exit 2 and one line naming the file and
what to do, never a traceback, and nothing is written.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import run_cli

from planner.folder.compute import EstimatesFile
from planner.folder.job_state import JobStateFile
from planner.folder.journal import Journal, Submission, TaskEntry
from planner.spec.errors import ConfigError


@pytest.fixture()
def exp(example: Path) -> Path:
    result = run_cli("new", "--spec", str(example / "experiment.yaml"), "--yes")
    assert result.exit_code == 0, result.output
    return example / "experiments" / "cap_5L_lora_comparison_demo"


def _one_line_error(args: list[str], exp: Path) -> str:
    summary = (exp / "experiment_summary.md").read_text()
    result = run_cli(*args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert (exp / "experiment_summary.md").read_text() == summary  # nothing rewritten
    return lines[0]


def test_a_damaged_journal_is_one_line_naming_it_and_the_fix(exp: Path) -> None:
    (exp / "journal.json").write_text('{"version": 1, "experiment": "x", "submissions": [{"number": "one"}]}')
    line = _one_line_error(["status", str(exp)], exp)
    assert str(exp / "journal.json") in line and "journal is damaged" in line and "restore it from a backup" in line


def test_a_journal_from_a_newer_version_is_refused(exp: Path) -> None:
    (exp / "journal.json").write_text(json.dumps({"version": 2, "experiment": "x", "submissions": []}))
    line = _one_line_error(["status", str(exp)], exp)
    assert "journal version 2" in line and "upgrade plan-experiment" in line


def test_damaged_estimates_are_one_line_naming_the_file_and_the_command_that_rewrites_it(exp: Path) -> None:
    (exp / "estimates.json").write_text('{"version": 1, "runs": []}')
    line = _one_line_error(["submit", str(exp), "--executor", "local", "--dry-run"], exp)
    assert str(exp / "estimates.json") in line and "plan-experiment estimate" in line


def test_each_file_reads_back_what_its_writer_wrote(exp: Path) -> None:
    estimates = EstimatesFile.from_json((exp / "estimates.json").read_text(), "estimates.json")
    assert EstimatesFile.from_json(estimates.to_json(), "x") == estimates
    assert estimates.version == 1 and set(estimates.runs) == {"tiny-llama-cap_rank4", "tiny-llama-cap_rank16"}
    journal = Journal(experiment="e", submissions=[Submission(
        number=1, time="2025-01-31T11:00:00", executor="slurm", kind="train", job_id="7", dependency=None,
        parameters={"time": "01:00:00"}, tasks=[TaskEntry(unit="r", job_id="7_0", script="r/train.sh", index=0)])])
    assert Journal.from_json(journal.to_json(), "journal.json") == journal
    # What train.sh's write_state prints (an integer job id, no version: jobs of earlier releases).
    state = JobStateFile.from_json('{"state": "COMPLETED", "job_id": 42, "started": "2025-01-31T10:00:00.000Z", '
                                   '"ended": "2025-01-31T10:01:30.500Z", "exit_code": 0, "host": "n1"}', "job-state.json")
    assert (state.job_id, state.version, state.wall_seconds()) == ("42", 1, 90.5)
    with pytest.raises(ConfigError, match=r"^job-state.json: job state is damaged \(state: Field required\)"):
        JobStateFile.from_json('{"job_id": "42"}', "job-state.json")
