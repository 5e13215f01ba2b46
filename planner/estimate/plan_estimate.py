"""Estimate a whole plan and log every step (SEARCH_PRIOR_RUNS, EXTRACT_SPEED, CALCULATE_TIME, ...).

The per-quantity estimators live in planner.estimate.estimators; this module walks a plan
through them and assembles ComputeEstimates. With no usable prior run each figure is
seed 002's fallback range, marked preliminary.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Callable, Sequence

from planner.estimate import estimators as est
from planner.estimate import costmodel
from planner.estimate.costmodel import TokenStats
from planner.spec.device_choice import DeviceChoice
from planner.folder.compute import ComputeEstimates, RunEstimate
from planner.folder.designlog import DesignLog
from planner.spec.units import size, slurm_time
from planner.spec.resources import Resources
from planner.spec.runs import Plan, Run

GIB = 1024**3


def adapter_bytes(shape: Any, rank: int, bytes_per_param: int = 4) -> float:
    """Size of one saved LoRA adapter: rank x (in + out) per adapted projection per layer.

    Counts q, v and output projections plus the three MLP projections (the recipes'
    default modules), in fp32 (bf16 halves it).
    """
    h, inter, layers = shape.hidden_size, shape.intermediate_size, shape.num_layers
    kv_dim = shape.num_kv_heads * shape.head_dim
    per_layer = rank * ((h + h) + (h + kv_dim) + (h + h) + 2 * (h + inter) + (inter + h))
    return float(per_layer * layers * bytes_per_param)


def run_queries(plan: Plan, resources: Resources, device: DeviceChoice | None = None,
                cores: int = 1) -> list[tuple[Run, est.RunQuery]]:
    """What the estimator asks for each fine-tune run of a plan.

    With the plan's ``device`` known, each query carries what the cost model needs: the
    model's shape, tokens per training example (estimated from the dataset's characters)
    and the device, so priors from another kind of device are never scaled to it.
    """
    # Every process of the job counts: GPUs (or CPU processes) per node x nodes.
    gpus = max(plan.spec.resources.gpus, 1) * plan.spec.resources.nodes
    train_split = resources.dataset.splits.get("train")
    cpu = plan.spec.resources.gpus == 0
    tokens = TokenStats.from_chars(resources.dataset.train_chars) if resources.dataset.train_chars else None
    out = []
    for run in plan.finetune_runs:
        model = resources.models[run.model]
        query = est.RunQuery.from_settings(
            model.name.rstrip("/").split("/")[-1], model.param_count, {**run.settings, "gpus": gpus}, train_split
        )
        query.cpu = cpu
        if device is not None:
            query.device = device.device
            query.cores = cores
            query.tokens = tokens
            query.dtype = str(run.settings.get("dtype") or ("fp32" if cpu else "bf16"))
            query.activation_checkpointing = bool(run.settings.get("enable_activation_checkpointing", False))
            query.shape = model.shape
        out.append((run, query))
    return out


def chosen_priors(plan: Plan, resources: Resources, priors: Sequence[est.PriorRun] | est.PriorPool,
                  device: DeviceChoice | None = None) -> list[est.PriorRun]:
    """The prior runs the training-time estimates of a plan would rest on, each once.

    Lets the caller learn more about just these (their wall time from the scheduler)
    before estimating, instead of about every prior found.
    """
    pool = priors if isinstance(priors, est.PriorPool) else est.PriorPool(priors)
    chosen: dict[str, est.PriorRun] = {}
    for _, query in run_queries(plan, resources, device):
        best = pool.best(query)
        if best is not None:
            chosen.setdefault(best[2].name, best[2])
    return list(chosen.values())


def estimate_plan(
    plan: Plan,
    resources: Resources,
    log: DesignLog,
    now: Callable[[], datetime],
    device: DeviceChoice,
    priors: Sequence[est.PriorRun] = (),
    *,
    cores: int = 1,
) -> ComputeEstimates:
    """Estimate training, evaluation, disk and batch size for every run of a plan.

    ``device`` is what the jobs will run on: priors measured on another kind of device are
    not scaled to it, and runs without a prior of its kind are timed by the cost model.
    """
    runs: list[RunEstimate] = []
    logged_speed: set[str] = set()
    measured_disk: list[str] = []  # runs whose checkpoint size a prior measured
    pool = est.PriorPool(priors)  # grouped once, ranked per run
    log.add(now(), "DECIDE_DEVICE", "Device the estimates assume",
            decision=f"{device.device.label} ({device.device.key})" + (f", {device.memory_gib:g} GiB" if device.memory_gib else ""),
            reasoning=device.source,
            explanation="Peak FLOPs and memory of this device drive the cost model; priors from another kind of device are not scaled to it")
    for run, query in run_queries(plan, resources, device, cores):
        model = resources.models[run.model]
        figure = est.training_time(query, pool)
        prior = figure.details.get("prior")
        p = pool.named(prior) if prior else None
        if p is not None and p.name not in logged_speed:
            logged_speed.add(p.name)
            speed = f"{p.tokens_per_s:.4g} tokens/s per GPU" if p.tokens_per_s else f"{p.it_per_s:.3g} it/s"
            log.add(now(), "EXTRACT_SPEED", "Analyzing prior run for training speed", command=f"parse {prior}",
                    result=f"Steady speed after warm-up: {speed}; batch_size={p.batch_size}, max_seq_len={p.max_seq_len}",
                    explanation="Extracting iteration speed from the closest prior run (same model first, then nearest configuration)")
        rank = int(run.settings["lora_rank"])
        sized = pool.checkpoint_size(query, rank)
        if sized is not None and sized.checkpoint_gib_per_epoch:
            # What a prior of the same model and rank wrote per epoch (its epoch_0 folder,
            # or its checkpoint lines): the adapter and every file saved beside it.
            per_epoch = sized.checkpoint_gib_per_epoch * 1024**3
            measured_disk.append(f"{run.name}: {size(per_epoch)}/epoch from {sized.name}")
        else:
            copies = max(model.size_bytes - model.weights_bytes, 0)  # config/tokenizer files copied into each epoch_N
            per_epoch = adapter_bytes(model.shape, rank) + copies
        low = figure.low if figure.low is not None else figure.figure
        high = figure.high if figure.high is not None else figure.figure
        job = est.job_time(query, figure, pool, checkpoint_gib=per_epoch / 1024**3)
        job_high = job.high if job.high is not None else job.figure
        runs.append(RunEstimate(
            run=run.name, model=run.model, train_seconds=high, train_low_seconds=low, basis=figure.basis,
            confidence=job.confidence, slurm_time=slurm_time(job_high), disk_bytes=per_epoch * query.epochs,
            steps_per_epoch=figure.details.get("steps_per_epoch"), calculation=figure.calculation,
            job_seconds=job_high, startup_seconds=job.details["startup_s"], saves_seconds=job.details["saves_s"],
            job_basis=f"{job.details['startup_basis']}; {job.details['saves_basis']}", job_calculation=job.calculation,
        ))
        log.add(now(), "CALCULATE_TIME", f"Training time estimate for {run.name}",
                input=f"{query.train_samples} samples, batch_size={query.batch_size}, grad_accum={query.gradient_accumulation_steps}, "
                      f"epochs={query.epochs}, max_seq_len={query.max_seq_len}, packed={query.packed}, {model.param_count:,} parameters",
                calculation=f"{figure.calculation}; {job.calculation}",
                result=f"Training loop {figure.human()}, job wall time {job.human()} ({job.confidence}); "
                       f"Slurm time {runs[-1].slurm_time}",
                explanation=f"{figure.basis}; {runs[-1].job_basis}")

    eval_priors = [s for p in priors for s in p.eval_seconds]
    ev = est.eval_time(len(plan.evaluations), eval_priors or None)
    per_eval_high = (ev.high or ev.figure) / max(len(plan.evaluations), 1)
    per_eval_low = (ev.low if ev.low is not None else ev.figure) / max(len(plan.evaluations), 1)
    log.add(now(), "CALCULATE_EVAL_TIME", "Evaluation time estimate", input=f"{len(plan.evaluations)} evaluations",
            calculation=ev.calculation, result=f"{ev.human()} in total ({ev.confidence})", explanation=ev.basis)

    free = resources.disk_free_bytes
    total = sum(r.disk_bytes for r in runs) * 1.2
    computed = "LoRA adapter size from each model's shape and rank (fp32), plus the config/tokenizer files copied into each epoch folder"
    if not measured_disk:
        disk_basis = f"{computed}, x epochs"
    elif len(measured_disk) == len(runs):
        disk_basis = "size per epoch measured by prior runs of the same model and LoRA rank, x epochs"
    else:
        disk_basis = (f"size per epoch measured by prior runs of the same model and LoRA rank for {len(measured_disk)} of "
                      f"{len(runs)} runs, else {computed}; x epochs")
    log.add(now(), "CHECK_DISK", "Checkpoint space against free space",
            input="; ".join(measured_disk[:5]) + (" ..." if len(measured_disk) > 5 else "") if measured_disk else None,
            calculation=f"sum over runs of size per epoch x epochs = {size(total / 1.2)}; + 20% buffer = {size(total)}",
            result=f"needs ~{size(total)}, {size(free)} available" + ("" if free is None or free > total else " - NOT ENOUGH"),
            explanation="Adapter-only checkpoints: each epoch_N holds the LoRA weights plus the model's small config and tokenizer files")
    if free is not None and free < total:
        resources.warnings.append(
            f"low disk: checkpoints need ~{size(total)} but only {size(free)} is free at `{resources.output_root}`; "
            "clean up or plan into another experiments_dir"
        )
    note, peaks = _memory(plan, resources, device, priors, log, now)
    for r in runs:
        r.peak_memory_gib = peaks.get(r.run)
    return ComputeEstimates(
        runs=runs,
        eval_seconds_each=per_eval_high,
        eval_low_seconds_each=per_eval_low,
        eval_count=len(plan.evaluations),
        eval_basis=ev.basis,
        disk_free_bytes=free,
        disk_basis=disk_basis,
        batch_size_note=note,
    )


def _memory(plan: Plan, resources: Resources, device: DeviceChoice, priors: Sequence[est.PriorRun],
            log: DesignLog, now: Callable[[], datetime]) -> tuple[str, dict[str, float]]:
    """Peak memory per model from the memory model, and batch-size advice on a GPU.

    On a GPU: the chosen batch's predicted peak, the largest batch that fits the device
    (``MEMORY_HEADROOM`` of its memory), calibrated by a logged peak of the same model and
    sequence length; a chosen batch predicted not to fit is also a plan warning, shown
    before submit. On a CPU: the process's resident memory, calibrated by the supervisor's
    logged peak of earlier CPU runs of the model.

    Returns:
        The note for the summary and each fine-tune run's predicted peak, GiB per process.
    """
    chosen = sorted({int(r.settings["batch_size"]) for r in plan.finetune_runs if r.settings.get("batch_size")})
    chosen_text = ", ".join(str(b) for b in chosen) or "-"
    cpu = plan.spec.resources.gpus == 0 or device.device.cpu
    tokens = TokenStats.from_chars(resources.dataset.train_chars) if resources.dataset.train_chars else None
    capacity = costmodel.MEMORY_HEADROOM * device.memory_gib
    notes: list[str] = []
    peaks: dict[str, float] = {}
    pool = est.PriorPool(priors)
    by_model: dict[str, list[Run]] = {}
    for run in plan.finetune_runs:
        by_model.setdefault(run.model, []).append(run)
    for name, runs in by_model.items():
        model = resources.models[name]
        if model.shape is None:
            continue
        shape = model.shape
        first = runs[0].settings
        max_seq_len = first.get("max_seq_len")
        packed = bool(first.get("packed"))
        rank = max(int(r.settings.get("lora_rank") or 8) for r in runs)
        dtype = str(first.get("dtype") or ("fp32" if cpu else "bf16"))
        ckpt = bool(first.get("enable_activation_checkpointing", False))
        # The peak comes with the batch that holds the longest example: all padded to it.
        if packed and max_seq_len:
            sequence = float(max_seq_len)
        elif tokens is not None:
            sequence = float(min(tokens.quantile(1.0), max_seq_len or tokens.quantile(1.0)))
        else:
            sequence = float(max_seq_len or 2048)

        def predict(batch: int) -> costmodel.MemoryEstimate:
            return costmodel.peak_memory(shape, batch_size=batch, sequence=sequence, lora_rank=rank, dtype=dtype,
                                         activation_checkpointing=ckpt, cpu=cpu)
        query = est.RunQuery(model=model.name.rstrip("/").split("/")[-1], param_count=model.param_count,
                             batch_size=chosen[0] if chosen else 1, device=device.device)
        same = [p for tier, _, p in pool.ranked(query)
                if tier == 0 and p.batch_size and est.same_device_kind(query, p)
                and p.max_seq_len == max_seq_len and bool(p.packed) == packed]
        logged = [p for p in same if (p.peak_rss_gib if cpu else p.peak_memory_gib)]
        if logged:
            p = logged[0]
            seen = float((p.peak_rss_gib if cpu else p.peak_memory_gib) or 0.0)
            base = predict(int(p.batch_size or 1))
            if cpu:
                # What the model does not see on a CPU is the process itself: the logged peak
                # corrects the fixed part, the tensors scale with the batch as modelled.
                def peak_at(batch: int) -> float:
                    return predict(batch).total + seen - base.total
            else:
                def peak_at(batch: int) -> float:
                    return costmodel.calibrated_peak(base, int(p.batch_size or 1), seen, int(p.batch_size or 1), batch)
            how = f"calibrated by {_short_name(p.name)}'s logged peak {seen:.3g} GiB at batch {p.batch_size}"
        else:
            def peak_at(batch: int) -> float:
                return predict(batch).total
            how = "memory model, no logged peak of this model yet"
        for run in runs:
            peaks[run.name] = peak_at(int(run.settings.get("batch_size") or 1))
        at_chosen = {b: peak_at(b) for b in chosen}
        chosen_words = ", ".join(f"{b}: {peak:.3g} GiB" for b, peak in at_chosen.items())
        here = chosen[0] if chosen else 1
        if cpu:
            notes.append(f"{name}: predicted peak memory per process at batch_size {chosen_words} ({how})")
            log.add(now(), "CALCULATE_MEMORY", f"Peak memory of a CPU training process for {name}",
                    input=f"{shape.param_count:,} parameters, LoRA rank {rank}, {dtype}, sequence {sequence:.0f} tokens",
                    calculation=f"at batch_size {here}: {predict(here).text(cpu=True)}", result=chosen_words,
                    explanation=how)
            continue
        best = costmodel.largest_batch(((b, peak_at(b)) for b in costmodel.BATCH_CANDIDATES), capacity)
        over = [b for b, peak in at_chosen.items() if peak > capacity]
        largest = costmodel.BATCH_CANDIDATES[-1]
        advice = (f"up to batch_size {best[0]}{' (the largest considered)' if best[0] == largest else ''} fits "
                  f"({best[1]:.1f} GiB)" if best is not None
                  else "not even batch_size 1 fits: enable activation checkpointing, shorten max_seq_len or use a larger GPU")
        notes.append(f"{name}: predicted peak at batch_size {chosen_words}; {advice} ({how})")
        log.add(now(), "CALCULATE_BATCH_SIZE", f"Peak memory and batch size for {name}",
                input=f"{shape.param_count:,} parameters, LoRA rank {rank}, {dtype}, sequence {sequence:.0f} tokens "
                      f"(the longest example{' packed' if packed else ''}), activation checkpointing {ckpt}",
                calculation=f"at batch_size {here}: {predict(here).text()}; "
                            f"capacity = {costmodel.MEMORY_HEADROOM} x {device.memory_gib:g} GiB = {capacity:.1f} GiB",
                result=f"{chosen_words}; {advice}", explanation=how)
        if over:
            resources.warnings.append(
                f"batch_size {', '.join(map(str, over))} of {name} is predicted not to fit {device.device.key}'s "
                f"{device.memory_gib:g} GiB ({chosen_words}, {capacity:.1f} GiB usable); "
                + (f"use batch_size {best[0]} with gradient_accumulation_steps to keep the effective batch"
                   if best is not None else advice))
    if cpu:
        head = (f"CPU jobs: batch_size {chosen_text} as chosen; a CPU job's memory is its Slurm --mem, so there is no "
                "GPU memory to size the batch against")
        return (head + ("; " + "; ".join(notes) if notes else "")), peaks
    if not notes:
        return f"Chosen batch_size {chosen_text}; no model shape to size it against", peaks
    return (f"Chosen batch_size {chosen_text} on {device.device.key} ({device.memory_gib:g} GiB, "
            f"{costmodel.MEMORY_HEADROOM:.0%} usable): " + "; ".join(notes)), peaks


def _short_name(name: str) -> str:
    parts = name.replace("\\", "/").rstrip("/").split("/")
    return "/".join(parts[-2:])
