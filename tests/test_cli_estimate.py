"""`plan-experiment new` and `estimate` estimate from prior slurm-*.out logs, and log the arithmetic."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from submit_support import SEED_002_PRIOR as PRIOR
from submit_support import seed_002_setup
from tests.conftest import ROOT, run_cli, write_spec

def test_seed_002_worked_example(example: Path) -> None:
    spec = seed_002_setup(example)
    result = run_cli("new", "--spec", str(spec), "--yes")
    assert result.exit_code == 0, result.stderr
    exp = example / "experiments" / "cap_5L_lora_comparison_demo"
    log = (exp / "design-experiment.log").read_text()
    assert "SEARCH_PRIOR_RUNS: Looking for prior runs with training logs" in log
    assert "Result: Steady speed after warm-up: 4.34 it/s; batch_size=4" in log
    calc = next(line for line in log.splitlines() if line.startswith("Calculation: steps_per_epoch"))
    assert "steps_per_epoch = 8000/4 = 2000, time_per_epoch = 2000/4.34 ≈ 461s" in calc
    est = json.loads((exp / "estimates.json").read_text())["runs"]["Llama-3.2-1B-Instruct_rank4"]
    assert est["steps_per_epoch"] == 2000
    assert 15 * 60 <= est["train_seconds"] <= 17 * 60  # ~16 minutes: the loop, 2 x 461 s
    # The job adds start-up (default: the log has no wall time) and the two logged saves.
    assert est["job_seconds"] == pytest.approx(est["train_seconds"] + est["startup_seconds"] + est["saves_seconds"], abs=0.2)
    assert est["saves_seconds"] == pytest.approx(2 * 12.34, abs=0.1)
    assert "default 90s + weight loading" in est["job_basis"]  # a GPU job: device set-up, 1.24B parameters to load
    assert est["confidence"] == "measured"
    summary = (exp / "experiment_summary.md").read_text()
    assert "- **Llama-3.2-1B-Instruct:** ~15 min training loop per run" in summary
    assert "- **Llama-3.2-1B-Instruct job wall time:** ~17 min per run (start-up ~2 min + loop" in summary
    assert "Preliminary - verify with a test run" not in summary


def test_estimate_reports_skipped_logs_and_rewrites_only_its_block(example: Path) -> None:
    spec = seed_002_setup(example)
    assert run_cli("new", "--spec", str(spec), "--yes").exit_code == 0
    exp = example / "experiments" / "cap_5L_lora_comparison_demo"
    summary = exp / "experiment_summary.md"
    text = summary.read_text().replace("## Notes\n", "## Notes\nmy hand-written note\n")
    summary.write_text(text)
    result = run_cli("estimate", str(exp), "--json")
    assert result.exit_code == 0, result.stderr
    payload = json.loads(result.output)
    reasons = {Path(s["path"]).name: s["reason"] for s in payload["skipped_logs"]}
    assert {"slurm-1.out", "slurm-2.out"} <= set(reasons)
    assert payload["priors_used"] >= 1
    after = summary.read_text()
    assert "my hand-written note" in after
    # Outside the Compute Estimates block nothing changed.
    start, end = "<!-- plan-experiment:begin compute-estimates -->", "<!-- plan-experiment:end compute-estimates -->"
    assert after.split(start)[0] == text.split(start)[0]
    assert after.split(end)[1] == text.split(end)[1]


def test_disk_comes_from_an_adapter_only_prior_of_the_same_model_and_rank(example: Path) -> None:
    seed_002_setup(example)  # its prior (rank 8) also saved the merged model: 2.38 GiB an epoch
    text = PRIOR.read_text()
    adapter_only = "\n".join(line for line in text.splitlines() if "Model checkpoint of size" not in line)
    other = example / "scratch" / "ck-out-later-adapter-only"  # walked after the merged-model prior
    other.mkdir()
    (other / "slurm-12346.out").write_text(adapter_only + "\n")  # 2 x 0.04 GiB of adapter an epoch, rank 8
    spec = write_spec(example, models=["Llama-3.2-1B-Instruct"], dataset={"path": "words_8L_80P_10000.json"},
                      factors={"lora_rank": [4, 8]}, controls={"epochs": 2, "batch_size": 4, "max_seq_len": 512})
    result = run_cli("new", "--spec", str(spec), "--yes")
    assert result.exit_code == 0, result.stderr
    exp = example / "experiments" / "cap_5L_lora_comparison_demo"
    runs = json.loads((exp / "estimates.json").read_text())["runs"]
    measured = runs["Llama-3.2-1B-Instruct_rank8"]["disk_bytes"]
    assert measured == pytest.approx(2 * 0.08 * 1024**3, rel=1e-6)  # 2 epochs, not the merged model's 2.38 GiB
    assert runs["Llama-3.2-1B-Instruct_rank4"]["disk_bytes"] < 0.01 * 1024**3  # rank 4: computed from the shape
    summary = (exp / "experiment_summary.md").read_text()
    assert "measured by prior runs of the same model and LoRA rank for 1 of 2 runs" in summary
    log = (exp / "design-experiment.log").read_text()
    assert f"Input: Llama-3.2-1B-Instruct_rank8: 81.9 MiB/epoch from {other / 'slurm-12346.out'}\n" in log
