"""Helpers for the analysis tests: hand-made experiment folders and the checks the demo tests share.

A hand-made experiment is an ``experiment.yaml`` (the source of truth ``analyze`` reads)
plus ``results.json`` files written where the plan puts each evaluation, as a person
running evaluations by hand would leave them. No training.
"""

from __future__ import annotations

import csv
import hashlib
import json
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from planner.spec.runs import Plan, expand
from planner.spec.spec import parse_spec

SUMMARY_HEAD = "# Experiment: {name}\n\n## Status\n\n### Evaluations\n<!-- plan-experiment:begin eval-status -->\n| x |\n<!-- plan-experiment:end eval-status -->\n\n## Notes\n- my own note, written by hand\n"


def make_experiment(folder: Path, spec: Mapping[str, Any], summary: bool = True) -> Plan:
    """Write ``experiment.yaml`` (and a small summary with a status block) and return the plan."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "experiment.yaml").write_text(yaml.safe_dump(dict(spec), sort_keys=False), encoding="utf-8")
    if summary:
        (folder / "experiment_summary.md").write_text(SUMMARY_HEAD.format(name=spec["name"]), encoding="utf-8")
    (folder / "design-experiment.log").write_text("", encoding="utf-8")
    return expand(parse_spec(dict(spec), "experiment.yaml"))


def write_result(exp: Path, run: str, eval_name: str, correct: Sequence[bool] | None = None, *,
                 accuracy: float | None = None, n: int = 100, task: str = "qa", split: str = "test",
                 epoch: int | None = None, predictions: bool = True) -> Path:
    """Write a results.json (and predictions.jsonl from ``correct``) into ``exp/run/eval/eval_name``."""
    folder = exp / run / "eval" / eval_name
    folder.mkdir(parents=True, exist_ok=True)
    if correct is not None:
        n = len(correct)
        accuracy = sum(correct) / n
        if predictions:
            lines = [json.dumps({"input": f"q{i}", "target": "a", "prediction": "a" if ok else "b", "correct": ok})
                     for i, ok in enumerate(correct)]
            (folder / "predictions.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert accuracy is not None
    results = {"task": task, "run": run, "epoch": epoch, "model": "m", "checkpoint": "x", "split": split, "n": n,
               "accuracy": accuracy, "metrics": {"exact_match": accuracy}, "started": "2025-01-01T00:00:00+00:00",
               "finished": "2025-01-01T00:00:10+00:00", "duration_s": 10.0,
               "adapter_sha256": hashlib.sha256(run.encode()).hexdigest() if epoch is not None else None}
    path = folder / "results.json"
    path.write_text(json.dumps(results), encoding="utf-8")
    return path


def read_csv(path: Path) -> list[dict[str, str]]:
    """A CSV file as rows of strings."""
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def analyze_cli(exp: Path, *args: str, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``plan-experiment analyze EXP ...`` as a user runs it (a subprocess of this interpreter)."""
    return subprocess.run([sys.executable, "-m", "planner.cli.main", "analyze", str(exp), *args],
                          capture_output=True, text=True, env=dict(env) if env is not None else None, timeout=300)


def tree_bytes(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` by relative path."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def results_block(text: str) -> str:
    """The Results block of a summary, markers included."""
    begin, end = "<!-- plan-experiment:begin results -->", "<!-- plan-experiment:end results -->"
    assert text.count(begin) == 1 and text.count(end) == 1, "the Results block must appear exactly once"
    return text[text.index(begin): text.index(end) + len(end)]


def check_png(path: Path) -> None:
    """``path`` is a PNG that decodes to a non-empty image."""
    from PIL import Image

    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", path
    with Image.open(path) as img:
        img.verify()
    with Image.open(path) as img:
        img.load()
        assert img.size[0] > 50 and img.size[1] > 50, (path, img.size)


def check_demo_analysis(exp: Path, stdout: str | None) -> None:
    """Acceptance 3 and 4 on the demo run for real: what ``analyze`` wrote at its end.

    ``stdout`` is the demo command's output when the demo itself ran ``analyze``.
    """
    analysis = exp / "analysis"
    if stdout is not None:
        assert "5/5 analyze" in stdout and "Report:" in stdout and "retention" in stdout
    # loss.csv: one row per optimizer step of each run; its last loss is the metric log's last step.
    loss = read_csv(analysis / "loss.csv")
    runs = read_csv(analysis / "runs.csv")
    for run in (r for r in runs if r["kind"] == "finetune"):
        rows = [r for r in loss if r["run"] == run["run"]]
        assert run["state"] == "COMPLETED" and run["config_mismatch"] == "False", run
        assert [int(r["step"]) for r in rows] == list(range(1, int(run["configured_steps"]) + 1)), run["run"]
        assert run["actual_steps"] == run["configured_steps"]
        log_lines = [ln for ln in (exp / run["metric_log"]).read_text().splitlines() if ln.startswith("Step ")]
        last = log_lines[-1].split("loss:")[1].split()[0]
        assert float(rows[-1]["loss"]) == float(last) and float(run["final_loss"]) == float(last)
        assert {r["epoch"] for r in rows} == {"0", "1"}
    pngs = sorted((analysis / "plots").glob("*.png"))
    assert {p.name for p in pngs} >= {"accuracy_by_epoch.png", "deltas.png", "sweep_lora_rank.png"}
    assert any(p.name.startswith("loss_") for p in pngs)
    for p in pngs:
        check_png(p)
    # Forgetting: a deltas.csv row per fine-tuned evaluation, each with a flag, retention included.
    evals = [r for r in read_csv(analysis / "evals.csv") if r["metric"] == "accuracy"]
    fine = [r for r in evals if r["epoch"] != ""]
    deltas = read_csv(analysis / "deltas.csv")
    assert sorted((d["run"], d["task"], d["epoch"]) for d in deltas) == sorted((r["run"], r["task"], r["epoch"]) for r in fine)
    assert {d["task"] for d in deltas} == {"capitalization", "retention"}
    assert all(d["flag"] in {"improved", "negligible", "no detectable change", "mild", "severe"} for d in deltas)
    assert all(d["p"] != "" and d["p_adjusted"] != "" and d["test"] == "exact McNemar" for d in deltas)
    summary = (exp / "experiment_summary.md").read_text(encoding="utf-8")
    block = results_block(summary)
    assert "| Condition | Task |" in block and "retention" in block
    # The block opens with the answer to the demo's question: rank 4 against 16, and forgetting.
    answer = block.split("| Condition | Task |")[0]
    assert "**Question:** Does LoRA rank change capitalization accuracy" in answer
    assert "`lora_rank=16` vs `lora_rank=4`" in answer and "fine-tuning against the base model (4)" in answer
    assert "adjusted p " in answer and "95 % CI" in answer
    findings = read_csv(analysis / "findings.csv")
    assert {(f["kind"], f["task"]) for f in findings} >= {("contrast", "capitalization"), ("vs base", "retention")}
    # A second analyze gives byte-identical files; a later status leaves the block alone.
    before = tree_bytes(analysis)
    again = analyze_cli(exp)
    assert again.returncode == 0, again.stderr
    assert tree_bytes(analysis) == before
    assert results_block((exp / "experiment_summary.md").read_text(encoding="utf-8")) == block
    status = subprocess.run([sys.executable, "-m", "planner.cli.main", "status", str(exp)], capture_output=True,
                            text=True, timeout=300)
    assert status.returncode == 0, status.stderr
    assert results_block((exp / "experiment_summary.md").read_text(encoding="utf-8")) == block
