"""``gpus: 2`` on a CPU cluster, for real: two gloo training processes in one Slurm job.

The shipped example's local settings say ``cpu_only: true`` (the development cluster has
no GPUs), so ``gpus: 2`` plans two CPU processes of torchtune's distributed LoRA recipe,
launched by torchrun from ``train.sh``. The job asks Slurm for two CPUs and no GPUs;
the adapter it saves is evaluated by the evaluation job that waits for it.

Skipped when no cluster answers; required under ``CI=true``. Takes both CPUs of a
two-core machine for about half a minute.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import time
from pathlib import Path

import pytest
from conftest import DISTRIBUTED_TIMINGS
from slurm_support import require_slurm, scancel
from submit_support import cli, copy_example, journal, ok, plan, plan_units, slurm_job_ids, status_json, unit_states, wait_final

from planner.estimate.logparse import parse_log

pytestmark = [pytest.mark.slurm, pytest.mark.train]


def test_gpus_2_trains_with_two_processes_and_its_adapter_evaluates(tmp_path: Path) -> None:
    require_slurm()
    spec = copy_example(tmp_path / "src", {
        "name": "cap_two_processes", "factors": {"lora_rank": [4]}, "base_model_controls": False,
        "resources": {"gpus": 2, "time": "auto"},
    })
    exp = plan(spec, tmp_path / "out")
    runs, evals = plan_units(exp)
    assert runs == ["tiny-llama-cap_rank4"] and evals == ["tiny-llama-cap_rank4/capitalization_epoch0"]
    started = time.monotonic()
    try:
        ok(cli("submit", exp))
        report = wait_final(exp)
    finally:
        scancel(*slurm_job_ids(exp))
        DISTRIBUTED_TIMINGS.append(("gpus: 2 run through Slurm (train + eval)", time.monotonic() - started))
    assert unit_states(report) == {runs[0]: "COMPLETED", evals[0]: "COMPLETED"}
    # One status row per run, however many processes its job had.
    assert [u["unit"] for u in status_json(exp)["units"]] == runs + evals

    train = journal(exp)["submissions"][0]
    assert train["parameters"]["cpus_per_task"] == 2 and train["parameters"]["gpus"] == 0
    job_id = train["tasks"][0]["job_id"]
    alloc = subprocess.run(["sacct", "-n", "-X", "-P", "-j", job_id, "-o", "NCPUS,AllocTRES"],
                           capture_output=True, text=True, check=True, timeout=30).stdout
    assert alloc.split("|")[0] == "2" and "gres/gpu" not in alloc, alloc

    run_dir = exp / runs[0]
    log = (run_dir / f"slurm-{job_id}.out").read_text(encoding="utf-8", errors="replace")
    assert "plan-experiment: world size 2 (1 node(s) x 2 process(es))" in log
    for rank in (0, 1):
        assert f"plan-experiment: rank {rank} of 2 (local rank {rank}) on " in log, log[-3000:]
    assert "Running LoRAFinetuneRecipeDistributed with resolved config:" in log
    assert (run_dir / "epoch_0" / "adapter_model.safetensors").is_file()
    # The estimator reads the world size: its bar counts global steps (400 samples / 2 / batch 8).
    rec = parse_log(log)
    assert (rec.world_size, rec.steps_per_epoch, rec.state) == (2, 25, "completed")

    # The evaluation read exactly the adapter the two processes saved.
    results = json.loads((run_dir / "eval" / "capitalization_epoch0" / "results.json").read_text(encoding="utf-8"))
    adapter = run_dir / "epoch_0" / "adapter_model.pt"
    assert results["run"] == runs[0] and results["epoch"] == 0 and results["n"] == 50
    assert results["checkpoint"] == str(adapter)
    assert results["adapter_sha256"] == hashlib.sha256(adapter.read_bytes()).hexdigest()
