"""Several training processes per job: plans, job requests, the log's world size, estimates.

Fast tests here; the real runs are in tests/test_distributed_slurm.py (two CPU processes
through Slurm) and tests/test_two_nodes.py (one process on each of two Slurm nodes).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from submit_support import cli, copy_example, ok, plan

from planner.estimate import estimators as est
from planner.estimate.logparse import parse_log
from planner.torchtune import gloo_recipe

BAR = "1|{s}|Loss: 0.5: {p}%|##| {s}/20 [00:0{s}<00:01, 2.00it/s]\r"


def _plan(tmp_path: Path, resources: dict, cpu_only: bool = True) -> Path:
    spec = copy_example(tmp_path / "src", {"resources": resources, "factors": {"lora_rank": [4]}})
    local = spec.parent / "claude.local.md"
    text = local.read_text(encoding="utf-8")
    if not cpu_only:
        text = text.replace("cpu_only: true", "cpu_only: false")
    local.write_text(text, encoding="utf-8")
    return plan(spec, tmp_path / "out")


def _sbatch_lines(exp: Path) -> list[str]:
    """The #SBATCH lines of the training job a submit would send (rendered with or without Slurm here)."""
    preview = ok(cli("submit", exp, "--dry-run", "--executor", "slurm"))
    first = preview.split("#!/bin/bash")[1]
    return re.findall(r"^#SBATCH (.*)$", first, re.MULTILINE)


def test_cpu_cluster_gpus_2_runs_two_gloo_processes_without_gres(tmp_path: Path) -> None:
    exp = _plan(tmp_path, {"gpus": 2, "time": "auto"})
    run = exp / "tiny-llama-cap_rank4"
    train = (run / "train.sh").read_text(encoding="utf-8")
    assert f"tune run --nproc_per_node 2 planner/torchtune/gloo_recipe.py --config {run}/finetune.yaml" in train
    assert "printf 'plan-experiment: world size %s (%s node(s) x %s process(es))\\n' 2 1 2" in train
    cfg = yaml.safe_load((run / "finetune.yaml").read_text(encoding="utf-8"))
    assert (cfg["device"], cfg["dtype"]) == ("cpu", "fp32")
    lines = _sbatch_lines(exp)
    # Two processes of cpus_per_task (1) each, one task: torchrun starts the processes.
    assert "--cpus-per-task=2" in lines and "--ntasks-per-node=1" in lines and "--nodes=1" in lines
    assert not any(line.startswith(("--gpu", "--gres")) for line in lines), lines


def test_gpu_cluster_keeps_torchtunes_recipe_and_asks_for_gpus(tmp_path: Path) -> None:
    exp = _plan(tmp_path, {"gpus": 2, "time": "auto"}, cpu_only=False)
    run = exp / "tiny-llama-cap_rank4"
    train = (run / "train.sh").read_text(encoding="utf-8")
    assert "tune run --nproc_per_node 2 lora_finetune_distributed --config" in train
    assert yaml.safe_load((run / "finetune.yaml").read_text(encoding="utf-8"))["device"] == "cuda"
    lines = _sbatch_lines(exp)
    assert "--gpus-per-node=2" in lines and "--cpus-per-task=1" in lines


def test_two_nodes_meet_at_the_first_nodes_address(tmp_path: Path) -> None:
    exp = _plan(tmp_path, {"gpus": 1, "nodes": 2, "time": "auto"})
    train = (exp / "tiny-llama-cap_rank4" / "train.sh").read_text(encoding="utf-8")
    assert ('tune run --nnodes 2 --nproc_per_node 1 --rdzv_backend c10d --rdzv_endpoint "$MASTER_ADDR:$MASTER_PORT" '
            '--rdzv_id "$SLURM_JOB_ID" planner/torchtune/gloo_recipe.py') in train
    assert 'scontrol show node "$MASTER_NODE" -o' in train
    assert 'export MASTER_PORT="${MASTER_PORT:-$((20000 + ${SLURM_JOB_ID:-0} % 20000))}"' in train
    assert "' 2 2 1 |" in train  # world size 2 = 2 nodes x 1 process
    lines = _sbatch_lines(exp)
    assert "--nodes=2" in lines and "--ntasks-per-node=1" in lines and "--cpus-per-task=1" in lines


def test_single_process_plan_is_unchanged(tmp_path: Path) -> None:
    exp = _plan(tmp_path, {"gpus": 0, "time": "auto"})
    train = (exp / "tiny-llama-cap_rank4" / "train.sh").read_text(encoding="utf-8")
    assert "tune run lora_finetune_single_device --config" in train and "world size" not in train


def test_rank_line_names_rank_world_and_host() -> None:
    env = {"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"}
    assert gloo_recipe.rank_line(env, "node2") == "plan-experiment: rank 3 of 4 (local rank 1) on node2"


def _log(*extra: str) -> str:
    bars = "".join(BAR.format(s=s, p=s * 5) for s in range(1, 21))
    return "\n".join([*extra, "Running LoRAFinetuneRecipeDistributed with resolved config:", "batch_size: 8",
                      "epochs: 1", "", bars, ""])


@pytest.mark.parametrize(
    ("lines", "world"),
    [
        (["plan-experiment: world size 4 (2 node(s) x 2 process(es))"], 4),
        (["plan-experiment: rank 1 of 2 (local rank 1) on b", "plan-experiment: rank 0 of 2 (local rank 0) on a"], 2),
        (["[rank1]: Traceback (most recent call last):", "[rank0]: RuntimeError: x"], 2),
        ([], None),
    ],
)
def test_log_world_size(lines: list[str], world: int | None) -> None:
    rec = parse_log(_log(*lines))
    assert rec.world_size == world
    assert rec.steady_it_per_s == pytest.approx(2.0) and rec.steps_per_epoch == 20


def test_steps_per_epoch_are_global_steps() -> None:
    one = est.RunQuery(model="m", param_count=None, batch_size=8, train_samples=801, gpus=1)
    two = est.RunQuery(model="m", param_count=None, batch_size=8, train_samples=801, gpus=2)
    # 801 samples: 100 steps on one process; 401 per process (the sampler pads) on two.
    assert (one.steps_per_epoch(), two.steps_per_epoch()) == (100, 50)


def test_two_process_prior_estimates_one_and_two_process_runs() -> None:
    rec = parse_log(_log("plan-experiment: world size 2 (1 node(s) x 2 process(es))"))
    prior = est.PriorRun.from_record(rec)
    assert prior.gpus == 2
    run2 = est.RunQuery(model="m", param_count=None, batch_size=8, train_samples=800, gpus=2)
    same = est.training_time(run2, [prior])
    assert same.details["steps_per_epoch"] == 50
    assert same.details["seconds_per_epoch"] == pytest.approx(25.0)  # 50 global steps at 2 it/s
    assert "samples per step" not in same.basis
    # One process: twice the steps, each of half the samples (16 -> 8 per step).
    run1 = est.RunQuery(model="m", param_count=None, batch_size=8, train_samples=800, gpus=1)
    one = est.training_time(run1, [prior])
    assert one.details["steps_per_epoch"] == 100
    assert one.confidence == "scaled" and "samples per step" in one.basis


def test_prior_with_the_runs_world_size_ranks_first() -> None:
    single = est.PriorRun.from_record(parse_log(_log()))
    single.name = "single"
    double = est.PriorRun.from_record(parse_log(_log("plan-experiment: world size 2 (1 node(s) x 2 process(es))")))
    double.name = "double"
    run2 = est.RunQuery(model="m", param_count=None, batch_size=8, train_samples=800, gpus=2)
    assert est.training_time(run2, [single, double]).details["prior"] == "double"
    run1 = est.RunQuery(model="m", param_count=None, batch_size=8, train_samples=800, gpus=1)
    assert est.training_time(run1, [double, single]).details["prior"] == "single"


def test_local_executor_refuses_several_nodes_and_starts_nothing(tmp_path: Path) -> None:
    exp = _plan(tmp_path, {"gpus": 1, "nodes": 2, "time": "auto"})
    proc = cli("submit", exp, "--executor", "local")
    assert proc.returncode == 5, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "nodes: 2" in lines[0] and "resources.nodes: 1" in lines[0], lines
    assert "Traceback" not in proc.stderr
    assert not (exp / "journal.json").exists() or '"submissions": []' in (exp / "journal.json").read_text()
    assert not (exp / "tiny-llama-cap_rank4" / "job-state.json").exists()
