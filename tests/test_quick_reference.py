"""Following the Quick Reference of the demo experiment by hand trains and evaluates one run."""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import run_cli


@pytest.mark.train
def test_quick_reference_commands_train_and_evaluate_one_run(example: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("torchtune")
    assert run_cli("new", "--spec", str(example / "experiment.yaml"), "--yes").exit_code == 0
    exp = example / "experiments" / "cap_5L_lora_comparison_demo"
    quick = (exp / "experiment_summary.md").read_text().split("## Quick Reference")[1]
    train = re.search(r"- Train one run by hand: `(.+)`", quick).group(1)  # type: ignore[union-attr]
    evaluate = re.search(r"- Evaluate by hand: `(.+)`", quick).group(1)  # type: ignore[union-attr]
    started = time.perf_counter()
    subprocess.run(["bash", "-c", train], check=True, capture_output=True, cwd=example)
    subprocess.run(["bash", "-c", evaluate], check=True, capture_output=True, cwd=example)
    wall = time.perf_counter() - started
    run = exp / "tiny-llama-cap_rank4"
    assert (run / "epoch_0" / "adapter_model.safetensors").is_file() or (run / "epoch_0" / "adapter_model.pt").is_file()
    state = json.loads((run / "job-state.json").read_text())
    assert state["state"] == "COMPLETED" and state["exit_code"] == 0
    assert list(run.glob("slurm-manual-*.out")), "the training log lands in the run folder"
    results = json.loads((run / "eval" / "capitalization_epoch0" / "results.json").read_text())
    assert results["n"] == 50 and 0.0 <= results["exact_match"] <= 1.0
    with capsys.disabled():
        print(f"\nquick reference by hand: train + evaluate one run in {wall:.0f} s wall")
