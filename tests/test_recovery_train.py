"""Out-of-memory recovery with real torchtune on CPU, through the local executor.

The documented fault injection makes the real recipe raise torch.OutOfMemoryError for
batches above 2; the job must halve its batch twice and finish with the plan's effective
batch, and say so where people look.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from recovery_support import OOM_ENV, events, job_state, plan_one_run, resolved_config, run_folder, submit, train_unit
from submit_support import wait_final
from train_support import require_torchtune

pytestmark = pytest.mark.train


def test_out_of_memory_halves_the_batch_and_completes(tmp_path: Path) -> None:
    require_torchtune()
    exp = plan_one_run(tmp_path, "rec_oom_local", epochs=1, resources={"oom_retries": 2})
    submit(exp, "local", {OOM_ENV: "2"})
    report = wait_final(exp, timeout_s=600)
    unit = train_unit(report)
    assert unit["state"] == "COMPLETED", unit
    assert unit["recovery"] == "batch 8 -> 2 x4 after out-of-memory (2 retries)"
    run = run_folder(exp)
    cfg = resolved_config(run)
    assert cfg["batch_size"] * cfg["gradient_accumulation_steps"] == 8 and cfg["batch_size"] == 2
    state = job_state(run)
    assert [(d["batch_to"], d["accumulation_to"]) for d in state["recovery"]["deviations"]] == [(4, 2), (2, 4)]
    assert [e["text"].split(" (")[0] for e in events(exp)] == [
        "batch 8 -> 4 x2 after out-of-memory", "batch 4 x2 -> 2 x4 after out-of-memory"]
    assert "batch 4 x2 -> 2 x4 after out-of-memory" in (exp / "design-experiment.log").read_text(encoding="utf-8")
    assert all(u["state"] == "COMPLETED" for u in report["units"])


def test_out_of_memory_at_the_retry_limit_fails_and_says_so(tmp_path: Path) -> None:
    require_torchtune()
    exp = plan_one_run(tmp_path, "rec_oom_limit", epochs=1, resources={"oom_retries": 1})
    submit(exp, "local", {OOM_ENV: "2"})
    report = wait_final(exp, timeout_s=600)
    unit = train_unit(report)
    assert unit["state"] == "FAILED", unit
    assert unit["recovery"] == "batch 8 -> 4 x2 after out-of-memory"
    run = run_folder(exp)
    assert job_state(run)["recovery"]["attempts"][0]["outcome"] == "OUT_OF_MEMORY"
    assert "not retrying: resources.oom_retries (1) used up" in events(exp)[-1]["text"]
