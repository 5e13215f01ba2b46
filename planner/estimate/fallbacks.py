"""Fallback estimates from seed 002's typical ranges, when no prior run is usable.

Pure: a size class and a count in, an :class:`~planner.estimate.quantities.Estimate`
with confidence ``preliminary`` out.
"""

from __future__ import annotations

from planner.estimate.quantities import (
    EVAL_FALLBACK_S,
    Estimate,
    log_number,
    size_class,
)
from planner.spec.units import format_duration


# --------------------------------------------------------------------------- fallbacks


def fallback_training_time(param_count_or_size_label: int | float | str | None, epochs: int) -> Estimate:
    """Seed 002's typical training time by model size, for when no prior run helps.

    Args:
        param_count_or_size_label: parameter count, size label (``"1B"``) or model name.
        epochs: epochs to train.

    Returns:
        A preliminary estimate; the figure is the high end of the range.
    """
    label, lo, hi, _, _ = size_class(param_count_or_size_label)
    low, high = lo * 60.0 * epochs, hi * 60.0 * epochs
    return Estimate(
        figure=high,
        unit="s",
        basis=f"no usable prior run; typical range (rule of thumb) for {label} models ({lo}-{hi} min/epoch). "
        "Preliminary - verify with a test run.",
        confidence="preliminary",
        calculation=f"{epochs} epoch(s) x {lo}-{hi} min/epoch = {format_duration(low)}-{format_duration(high)}",
        low=low,
        high=high,
        details={"size_class": label, "seconds_per_epoch": hi * 60.0},
    )


def fallback_checkpoint_gib(
    param_count_or_size_label: int | float | str | None,
    epochs: int = 1,
    *,
    adapter_only: bool = True,
    adapter_gib: float | None = None,
) -> Estimate:
    """Seed 002's typical checkpoint size per epoch (1B 2-3, 3B 6-7, 7B 14-20 GiB).

    Args:
        param_count_or_size_label: parameter count, size label or model name.
        epochs: epochs saved.
        adapter_only: the recipes save adapter-only checkpoints by default.
        adapter_gib: computed adapter size per epoch, when known; used instead of the
            table for adapter-only runs.

    Returns:
        A preliminary estimate of GiB for ``epochs`` epochs of one run.
    """
    label, _, _, clo, chi = size_class(param_count_or_size_label)
    if adapter_only and adapter_gib is not None:
        return Estimate(
            figure=adapter_gib * epochs,
            unit="GiB",
            basis="adapter-only checkpoints; size computed from LoRA rank and model shape",
            confidence="scaled",
            calculation=f"{epochs} epoch(s) x {adapter_gib:.3f} GiB = {adapter_gib * epochs:.3f} GiB",
            details={"gib_per_epoch": adapter_gib},
        )
    note = (
        " Our checkpoints are adapter-only by default (megabytes per epoch), so this"
        " full-model figure is a conservative upper bound."
        if adapter_only
        else ""
    )
    return Estimate(
        figure=chi * epochs,
        unit="GiB",
        basis=f"no prior checkpoint sizes; typical full checkpoint for {label} models "
        f"({log_number(clo)}-{log_number(chi)} GiB/epoch).{note}",
        confidence="preliminary",
        calculation=f"{epochs} epoch(s) x {log_number(clo)}-{log_number(chi)} GiB = {log_number(clo * epochs)}-{log_number(chi * epochs)} GiB",
        low=clo * epochs,
        high=chi * epochs,
        details={"gib_per_epoch": chi, "size_class": label},
    )


def fallback_eval_time(num_evaluations: int = 1) -> Estimate:
    """Seed 002's typical evaluation time: 1-5 minutes each.

    Args:
        num_evaluations: evaluations planned.

    Returns:
        A preliminary estimate; the figure is the high end.
    """
    lo, hi = EVAL_FALLBACK_S
    return Estimate(
        figure=hi * num_evaluations,
        unit="s",
        basis="no prior evaluation timings; typical 1-5 min per evaluation. Preliminary.",
        confidence="preliminary",
        calculation=f"{num_evaluations} evaluation(s) x 1-5 min = "
        f"{format_duration(lo * num_evaluations)}-{format_duration(hi * num_evaluations)}",
        low=lo * num_evaluations,
        high=hi * num_evaluations,
        details={"seconds_per_evaluation": hi},
    )


def fallback_batch_size(
    gpu_memory_gib: float,
    param_count_or_size_label: int | float | str | None,
    packed: bool = True,
) -> Estimate:
    """Seed 002's starting batch size when no prior run measured memory.

    80 GB GPU: 4-8 (1B), 2-4 (3B); 40 GB GPU: 2-4 (1B), 2 (3B). With packing (the
    default) start at 4 (1B) / 2 (3B). 7B+ is not in the table: 2 on 80 GB, 1 below.
    The figure is the low end of the range: start small, watch the first run.

    Args:
        gpu_memory_gib: memory of one GPU.
        param_count_or_size_label: parameter count, size label or model name.
        packed: dataset packing.

    Returns:
        A preliminary estimate in unit ``batch``.
    """
    label = size_class(param_count_or_size_label)[0]
    big = gpu_memory_gib >= 70
    table = {
        ("1B", True): (4, 8), ("3B", True): (2, 4), ("7B+", True): (1, 2),
        ("1B", False): (2, 4), ("3B", False): (2, 2), ("7B+", False): (1, 1),
    }
    lo, hi = table[(label, big)]
    note = ""
    if gpu_memory_gib < 35:
        lo, hi = max(1, lo // 2), max(1, hi // 2)
        note = " GPU smaller than 40 GB: the 40 GB row halved."
    if packed:
        start = {"1B": 4, "3B": 2, "7B+": 1}[label]
        lo = min(lo, start)
        note += f" Packing on: the rule of thumb is to start at {start} for {label}."
    return Estimate(
        figure=float(lo),
        unit="batch",
        basis=f"no prior memory figures; rule-of-thumb table for {label} on a "
        f"{'80' if big else '40'} GB-class GPU: {lo}-{hi}.{note} Preliminary.",
        confidence="preliminary",
        calculation=f"table lookup ({label}, {gpu_memory_gib:g} GiB GPU) -> {lo}-{hi}",
        low=float(lo),
        high=float(hi),
    )


