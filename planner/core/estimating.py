"""Estimate a whole plan and log every calculation (CALCULATE_TIME, CHECK_DISK, ...).

With no usable prior run, seed 002's fallback ranges by model size apply, marked
preliminary. Prior-run estimation plugs in through ``priors`` (see planner.core.estimate).
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any, Callable

from planner.core.compute import ComputeEstimates, RunEstimate, slurm_time
from planner.core.designlog import DesignLog
from planner.core.render import duration, size
from planner.core.resources import Resources
from planner.core.runs import Plan, Run

# Seed 002: typical minutes per epoch by model size when nothing else is known.
_FALLBACK_MIN_PER_EPOCH = ((2.0e9, 30, 60, "1B"), (5.0e9, 60, 120, "3B"), (math.inf, 180, 300, "7B+"))
_FALLBACK_EVAL_SECONDS = (60.0, 300.0)


def size_class(param_count: int) -> tuple[float, float, str]:
    """Fallback minutes per epoch (low, high) and the size label of seed 002's table."""
    for limit, low, high, label in _FALLBACK_MIN_PER_EPOCH:
        if param_count < limit:
            return float(low), float(high), label
    raise AssertionError("unreachable")


def adapter_bytes(shape: Any, rank: int, bytes_per_param: int = 4) -> float:
    """Size of one saved LoRA adapter: rank x (in + out) per adapted projection per layer.

    Counts q, v and output projections plus the three MLP projections (the recipes'
    default modules), in fp32 as saved on CPU (bf16 halves it).
    """
    h = int(getattr(shape, "hidden_size", 0) or getattr(shape, "embed_dim", 0) or 0)
    inter = int(getattr(shape, "intermediate_size", 0) or getattr(shape, "intermediate_dim", 0) or 4 * h)
    layers = int(getattr(shape, "num_layers", 0) or 0)
    heads = int(getattr(shape, "num_heads", 1) or 1)
    kv = int(getattr(shape, "num_kv_heads", heads) or heads)
    kv_dim = h * kv // heads
    per_layer = rank * ((h + h) + (h + kv_dim) + (h + h) + 2 * (h + inter) + (inter + h))
    return float(per_layer * layers * bytes_per_param)


def estimate_plan(
    plan: Plan,
    resources: Resources,
    log: DesignLog,
    now: Callable[[], datetime],
    gpu_memory_gib: float,
) -> ComputeEstimates:
    """Fallback estimates for every run (prior-run estimation replaces these when it exists)."""
    runs: list[RunEstimate] = []
    for run in plan.finetune_runs:
        runs.append(_fallback_run(run, resources, log, now))
    n_evals = len(plan.evaluations)
    low_e, high_e = _FALLBACK_EVAL_SECONDS
    log.add(now(), "CALCULATE_EVAL_TIME", "Evaluation time estimate",
            input=f"{n_evals} evaluations", calculation=f"{n_evals} x {duration(low_e)}-{duration(high_e)}",
            result=f"{duration(n_evals * low_e)}-{duration(n_evals * high_e)} in total (preliminary)",
            explanation="Seed 002: typically 1-5 minutes per evaluation; inference only")
    disk_each = [r.disk_bytes for r in runs]
    total = sum(disk_each) * 1.2
    free = resources.disk_free_bytes
    log.add(now(), "CHECK_DISK", "Checkpoint space against free space",
            calculation=f"sum over runs of (adapter size x epochs) = {size(sum(disk_each))}; + 20% buffer = {size(total)}",
            result=f"needs ~{size(total)}, {size(free)} available" + ("" if free is None or free > total else " - NOT ENOUGH"),
            explanation="Adapter-only checkpoints: each epoch_N holds the LoRA weights plus the model's small config and tokenizer files")
    if free is not None and free < total:
        resources.warnings.append(
            f"low disk: checkpoints need ~{size(total)} but only {size(free)} is free at `{resources.output_root}`; "
            "clean up or plan into another experiments_dir"
        )
    return ComputeEstimates(
        runs=runs,
        eval_seconds_each=high_e,
        eval_low_seconds_each=low_e,
        eval_count=n_evals,
        eval_basis="seed 002 typical range (1-5 min per evaluation), preliminary",
        disk_free_bytes=free,
        disk_basis="LoRA adapter size computed from each model's shape and rank, x epochs, + copied config/tokenizer files",
        batch_size_note=_fallback_batch_note(resources, gpu_memory_gib),
    )


def _fallback_run(run: Run, resources: Resources, log: DesignLog, now: Callable[[], datetime]) -> RunEstimate:
    model = resources.models[run.model]
    epochs = int(run.settings["epochs"])
    low, high, label = size_class(model.param_count)
    samples = run.settings.get("train_samples") or resources.dataset.splits.get("train", 0)
    samples = min(samples, resources.dataset.splits.get("train", samples))
    per_step = int(run.settings["batch_size"]) * int(run.settings["gradient_accumulation_steps"])
    steps = max(1, samples // per_step) if samples else None
    cap = run.settings.get("max_steps_per_epoch")
    if steps is not None and cap:
        steps = min(steps, int(cap))
    seconds_low, seconds_high = low * 60 * epochs, high * 60 * epochs
    non_weight = max(model.size_bytes - model.weights_bytes, 0)  # config/tokenizer copied per epoch
    disk = (adapter_bytes(model.shape, int(run.settings["lora_rank"])) + non_weight) * epochs
    basis = f"preliminary: seed 002 typical range for {label} models ({low:.0f}-{high:.0f} min/epoch)"
    log.add(now(), "CALCULATE_TIME", f"Training time estimate for {run.name}",
            input=f"{samples} samples, batch_size={run.settings['batch_size']}, grad_accum={run.settings['gradient_accumulation_steps']}, epochs={epochs}, model {model.param_count:,} parameters",
            calculation=f"steps_per_epoch = {samples}/{per_step} = {steps}; no prior speed: {label} range {low:.0f}-{high:.0f} min/epoch x {epochs} epoch(s)",
            result=f"Estimated {duration(seconds_low)}-{duration(seconds_high)} (preliminary - verify with a test run)",
            explanation="No matching prior run; conservative range by model size from seed 002")
    return RunEstimate(
        run=run.name, model=run.model, train_seconds=seconds_high, train_low_seconds=seconds_low, basis=basis,
        confidence="preliminary", slurm_time=slurm_time(seconds_high), disk_bytes=disk, steps_per_epoch=steps,
    )


def _fallback_batch_note(resources: Resources, gpu_memory_gib: float) -> str:
    largest = max((m.param_count for m in resources.models.values()), default=0)
    big = gpu_memory_gib >= 70
    if largest < 2e9:
        rec = "4-8" if big else "2-4"
    else:
        rec = "2-4" if big else "2"
    return (
        f"No prior memory figures: for {gpu_memory_gib:g} GiB GPUs start at batch_size {rec} "
        "(seed 002), monitor the first run's `GPU peak memory`, then scale: max_batch = "
        "(GPU memory / peak) x 0.7 x batch. Packing lowers the usable batch size 2-4x."
    )
