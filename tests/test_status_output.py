"""What status prints when its output goes to a file or a program.

Run as a user would pipe it (``status > log``, ``status | grep``, ``status --json | jq``):
the summary line on its own line, table rows never wrapped mid-cell, and JSON that names
the experiment and carries each evaluation's numbers.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from submit_support import cli, copy_example, plan

RUN = "tiny-llama-cap_rank4"
EVAL = f"{RUN}/capitalization_epoch0"


def _finished(tmp_path: Path) -> Path:
    """An experiment whose training and evaluation ran locally and ended (their own job files say so)."""
    exp = plan(copy_example(tmp_path / "src", {"factors": {"lora_rank": [4]}, "base_model_controls": False}), tmp_path / "out")
    subs = []
    for number, (kind, unit) in enumerate((("train", RUN), ("eval", EVAL)), 1):
        job = f"local-99999999{number}"
        subs.append({"number": number, "time": "2025-01-01T00:00:00", "executor": "local", "kind": kind, "job_id": job,
                     "dependency": None, "parameters": {}, "tasks": [{"unit": unit, "job_id": job, "script": "x"}]})
        folder = exp / unit.replace("/", "/eval/")
        (folder / "job-state.json").write_text(json.dumps({"state": "COMPLETED", "job_id": job, "exit_code": 0,
                                                          "started": "2025-01-01T00:00:00.000Z",
                                                          "ended": "2025-01-01T00:01:00.000Z", "reason": "Dependency"}))
    (exp / "journal.json").write_text(json.dumps({"experiment": exp.name, "submissions": subs}))
    (exp / RUN / "eval" / "capitalization_epoch0" / "results.json").write_text(
        json.dumps({"exact_match": 0.4, "n": 50, "model": "tiny", "bad": float("nan")}).replace("NaN", "NaN"))
    return exp


def test_watch_into_a_file_keeps_the_summary_line_on_its_own_line(tmp_path: Path) -> None:
    exp = _finished(tmp_path)
    proc = cli("status", exp, "--watch", "--interval", "0.1")
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"^2 units: 2 completed$", proc.stdout, re.MULTILINE), proc.stdout


def test_piped_table_rows_are_not_wrapped(tmp_path: Path) -> None:
    exp = _finished(tmp_path)
    proc = cli("status", exp)
    assert proc.returncode == 0, proc.stderr
    rows = [line for line in proc.stdout.splitlines() if EVAL in line]
    assert rows and "exact_match=0.400 (n=50)" in rows[0], proc.stdout


def test_json_names_the_experiment_and_carries_numbers(tmp_path: Path) -> None:
    exp = _finished(tmp_path)
    proc = cli("status", exp, "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["experiment"] == exp.name and report["path"] == str(exp)
    units = {u["unit"]: u for u in report["units"]}
    assert units[EVAL]["metrics"] == {"exact_match": 0.4, "n": 50}
    assert units[EVAL]["reason"] is None, "a completed evaluation keeps no pending reason"
