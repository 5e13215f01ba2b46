"""Estimates learn from every experiment the user planned, and predictions are kept.

The slow test runs the demo for real (Slurm when its controller answers, else local
processes), calibrates twice, and plans the same spec again elsewhere: the new plan
must rest on the demo's runs and predict their job wall time.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import yaml

from planner.estimate.experiment_index import index_path, registered, registered_report
from submit_support import EXAMPLE, cli, journal, ok, seed_002_setup, status_json
from tests.conftest import run_cli


def test_new_registers_each_planned_folder_and_the_index_drops_deleted_ones(example: Path, tmp_path: Path) -> None:
    spec = example / "experiment.yaml"
    first, second = tmp_path / "a", tmp_path / "elsewhere" / "b"
    for out in (first, second):
        result = run_cli("new", "--spec", str(spec), "--yes", "--out", str(out))
        assert result.exit_code == 0, result.stderr
    name = yaml.safe_load(spec.read_text())["name"]
    assert registered() == [first / name, second / name]
    shutil.rmtree(first / name)
    assert registered() == [second / name]
    assert json.loads(index_path().read_text()) == [str(second / name)]  # rewritten, not just filtered


def test_a_deleted_experiment_is_skipped_dropped_and_named_by_estimate(example: Path, tmp_path: Path) -> None:
    """A planned experiment deleted since: estimate searches what is left and says what it skipped, and why."""
    spec = example / "experiment.yaml"
    name = yaml.safe_load(spec.read_text())["name"]
    gone, kept, moved = tmp_path / "gone" / name, tmp_path / "kept" / name, tmp_path / "moved" / name
    for exp in (gone, kept, moved):
        result = run_cli("new", "--spec", str(spec), "--yes", "--out", str(exp.parent))
        assert result.exit_code == 0, result.stderr
    shutil.rmtree(gone)
    (moved / "experiment.yaml").unlink()  # a folder left without its experiment
    report = registered_report()
    assert report.folders == [kept]
    assert [(str(p), why) for p, why in report.dropped] == [
        (str(gone), "the folder no longer exists"), (str(moved), "it holds no experiment.yaml any more")]
    assert json.loads(index_path().read_text()) == [str(kept)]  # dropped on this write
    assert registered_report().dropped == []  # and said once: the index no longer holds them

    # estimate names what it could not search: an index entry gone while it ran, a --logs typo.
    index_path().write_text(json.dumps([str(kept), str(gone)]))
    missing_logs = tmp_path / "no-such-logs"
    result = run_cli("estimate", str(kept), "--logs", str(missing_logs), "--json")
    assert result.exit_code == 0, result.stderr
    skipped = {s["path"]: s["reason"] for s in json.loads(result.stdout)["skipped_folders"]}
    assert skipped[str(gone)] == "planned experiment: the folder no longer exists (dropped from the index)"
    assert skipped[str(missing_logs)] == "the folder does not exist"
    log = (kept / "design-experiment.log").read_text()
    assert f"SKIP_FOLDER: Not searched: {gone}" in log and f"SKIP_FOLDER: Not searched: {missing_logs}" in log
    index_path().write_text(json.dumps([str(kept), str(gone)]))
    text = run_cli("estimate", str(kept)).stdout
    assert f"skipped {gone}: planned experiment: the folder no longer exists (dropped from the index)" in text
    searched = next(line for line in text.splitlines() if line.startswith("searched "))
    assert str(gone) not in searched


def test_a_damaged_index_is_rebuilt_not_an_error(example: Path, tmp_path: Path) -> None:
    index_path().parent.mkdir(parents=True, exist_ok=True)
    index_path().write_text("{not json")
    assert registered() == []
    result = run_cli("new", "--spec", str(example / "experiment.yaml"), "--yes", "--out", str(tmp_path / "x"))
    assert result.exit_code == 0, result.stderr
    assert len(registered()) == 1


def _calibration(exp: Path) -> tuple[list[dict], str]:
    out = ok(cli("estimate", exp, "--calibrate", "--json", timeout_s=300))
    rows = json.loads(out)["calibration"]
    text = ok(cli("estimate", exp, "--calibrate", timeout_s=300))
    table = text[text.index("Calibration"):] if "Calibration" in text else ""
    return rows, table


def test_demo_then_replan_predicts_the_demo_runs_and_calibration_is_stable(tmp_path: Path, example: Path) -> None:
    out = tmp_path / "demo"
    proc = cli("demo", "--out", out, cwd=tmp_path, timeout_s=900)
    assert proc.returncode == 0, f"demo exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    exp = out / "cap_5L_lora_comparison_demo"
    # Every training job was submitted with its prediction, kept in the journal.
    train_tasks = [t for s in journal(exp)["submissions"] if s["kind"] == "train" for t in s["tasks"]]
    assert train_tasks and all(t["predicted"]["job_seconds"] > 0 for t in train_tasks)
    recorded = {t["unit"]: t["predicted"]["job_seconds"] for t in train_tasks}

    # Memory: each training logged its peak resident memory, and the plan predicted it within 15 %
    # (the memory model of a CPU process: the process itself plus the model's tensors).
    planned = json.loads((exp / "estimates.json").read_text())["runs"]
    for run, figures in planned.items():
        logged = [float(x) for log in (exp / run).glob("slurm-*.out")
                  for x in re.findall(r"plan-experiment: peak memory \(RSS\) ([\d.]+) GiB", log.read_text(errors="replace"))]
        assert logged, f"{run}: no peak memory line in its log"
        assert figures["peak_memory_gib"] == pytest.approx(max(logged), rel=0.15), (run, figures["peak_memory_gib"], logged)

    # Calibrating twice prints the same predictions and errors: the re-estimate in
    # between rewrites estimates.json but not what the jobs were submitted with.
    rows1, table1 = _calibration(exp)
    rows2, table2 = _calibration(exp)
    assert rows1 and rows1 == rows2 and table1 == table2
    assert {r["run"]: r["predicted_s"] for r in rows1} == pytest.approx(recorded, abs=0.1)
    # The re-estimate learned from the finished runs; it says its figures are new.
    text = ok(cli("estimate", exp, timeout_s=300))
    assert "journal.json keeps what each was submitted with" in text
    assert "the figures above are new" in (exp / "experiment_summary.md").read_text()

    # Status's Predicted column compares with the same recorded predictions.
    report = status_json(exp)
    assert {u["unit"]: u["predicted_s"] for u in report["units"] if u["kind"] == "train"} == pytest.approx(recorded, abs=0.1)

    # The same spec planned again into another folder rests on the demo's runs.
    actual = {u["unit"]: u["elapsed_s"] for u in report["units"] if u["kind"] == "train"}
    again = tmp_path / "again"
    ok(cli("new", "--spec", EXAMPLE / "experiment.yaml", "--yes", "--out", again, timeout_s=300))
    estimates = json.loads((again / exp.name / "estimates.json").read_text())["runs"]
    for run, elapsed in actual.items():
        predicted = estimates[run]["job_seconds"]
        # The same job ran in the demo: its wall time is the prediction (sacct's elapsed and
        # the job's own clock differ by Slurm's prolog and epilog, a second or two).
        assert predicted == pytest.approx(elapsed, rel=0.2), (run, predicted, elapsed)
        assert str(exp) in estimates[run]["basis"], estimates[run]["basis"]
        assert re.search(r"the same job ran before: median wall time of \d+ finished run\(s\) \(tiny-llama-cap_rank",
                         estimates[run]["job_basis"]), estimates[run]["job_basis"]

    # Seed 002's worked example planned now, with the demo's runs in the user's index: the prior log of the
    # same model (4.34 it/s at batch 4) still times it, never the demo's CPU runs of another model.
    assert exp.resolve() in {p.resolve() for p in registered()}
    spec = seed_002_setup(example)
    result = run_cli("new", "--spec", str(spec), "--yes")
    assert result.exit_code == 0, result.stderr
    worked = json.loads((example / "experiments" / "cap_5L_lora_comparison_demo" / "estimates.json").read_text())
    est = worked["runs"]["Llama-3.2-1B-Instruct_rank4"]
    assert est["steps_per_epoch"] == 2000
    assert 15 * 60 <= est["train_seconds"] <= 17 * 60, est["basis"]
    assert "slurm-12345.out" in est["basis"] and "4.34 it/s" in est["basis"], est["basis"]
