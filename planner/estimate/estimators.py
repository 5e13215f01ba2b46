"""Compute estimates (time, GPU hours, disk, batch size) from prior runs; the front of the estimators.

Pure: data in, :class:`Estimate` out. Every estimate carries its figure, unit, the
basis it stands on (which prior runs, which formula), a confidence level and the
calculation as text, ready for the design log (seed 002's CALCULATE_TIME entries).

Confidence levels:

* ``measured``: a prior run of the same model and configuration; only arithmetic.
* ``scaled``: a prior run scaled to a different batch, sequence length or model size.
* ``low``: a prior run of the other recipe kind (a full fine-tune for a LoRA run, or the
  reverse), or scaled by more than :data:`EXTREME_PARAM_SCALING` in parameters: the
  figure says which way to look, not how long to ask for.
* ``preliminary``: no usable prior run; seed 002's typical ranges. Verify with a test run.

A job's wall time is more than its training loop: :func:`job_time` adds start-up
(imports, weight loading) and the checkpoint saves, learned from the user's own runs,
with the defaults below where nothing is known.

The value types live in :mod:`~planner.estimate.quantities` and the fallback ranges in
:mod:`~planner.estimate.fallbacks`; this module re-exports what other modules use.
"""

from __future__ import annotations

import math
import statistics
from operator import attrgetter
from typing import Iterable, Sequence

from planner.estimate.fallbacks import (
    fallback_training_time,
    fallback_checkpoint_gib,
    fallback_eval_time,
    fallback_batch_size,
)
from planner.estimate import costmodel
from planner.estimate.costmodel import TokenStats
from planner.estimate.logparse import LogRecord
from planner.estimate.quantities import (
    CONFIDENCE,
    BATCH_HEADROOM_FACTOR,
    PACKING_BATCH_DIVISOR,
    DISK_BUFFER,
    SIZE_CLASSES,
    EVAL_FALLBACK_S,
    Estimate,
    RunQuery,
    PriorRun,
    as_prior,
    model_key,
    params_of,
    size_class,
    log_number,
    compact_duration,
)
from planner.spec.hardware import Device, find_device

#: Scaling a prior's speed by more than this factor in parameters makes an estimate
#: ``low`` confidence: speed is far from proportional to size across orders of magnitude.
EXTREME_PARAM_SCALING = 10.0

# Defaults for the parts of a job outside its training loop, used only until the user's
# own runs measured them (then the runs' figures replace them). Sources: a torchtune job
# imports torch and torchtune, initialises the device, builds the tokenizer and dataset
# and the model before its first step: ~5-8 s on a CPU node with a tiny model (measured
# here), typically 1-2 minutes on a GPU node; weights are read at ~150 MB/s from a shared
# filesystem, bf16 is 2 bytes per parameter (so ~13 s per billion parameters, rounded up
# to 15); checkpoints are written at ~100 MB/s. Conservative on purpose: the Slurm
# request is built on these when nothing better is known.
#: Start-up of a job apart from weight loading (imports, device, tokenizer, dataset), seconds.
DEFAULT_STARTUP_S = 90.0
#: The same for a CPU job (no device to set up): 5-8 s measured for the tiny model, doubled.
DEFAULT_STARTUP_CPU_S = 15.0
#: Weight loading, seconds per billion parameters.
DEFAULT_LOAD_S_PER_BPARAM = 15.0
#: A checkpoint save: fixed seconds plus seconds per GiB written.
DEFAULT_SAVE_S = 2.0
DEFAULT_SAVE_S_PER_GIB = 10.0

__all__ = [
    "BATCH_HEADROOM_FACTOR",
    "CONFIDENCE",
    "DISK_BUFFER",
    "EVAL_FALLBACK_S",
    "Estimate",
    "PACKING_BATCH_DIVISOR",
    "PriorPool",
    "PriorRun",
    "RunQuery",
    "SIZE_CLASSES",
    "as_prior",
    "batch_size",
    "compact_duration",
    "disk",
    "eval_time",
    "fallback_batch_size",
    "fallback_checkpoint_gib",
    "fallback_eval_time",
    "fallback_training_time",
    "gpu_hours",
    "job_time",
    "log_number",
    "model_key",
    "params_of",
    "rank_priors",
    "size_class",
    "training_time",
]


# --------------------------------------------------------------------------- from priors


def _config_distance(run: RunQuery, p: PriorRun) -> float:
    """How far a prior's configuration is from the run (0: identical)."""
    d = 0.0
    eff_run = run.batch_size * run.gradient_accumulation_steps * max(run.gpus, 1)
    if p.batch_size:
        eff_p = p.batch_size * (p.gradient_accumulation_steps or 1) * (p.gpus or 1)
        d += abs(math.log2(eff_run / eff_p))
        d += 0.25 * abs(math.log2(run.batch_size / p.batch_size))
    else:
        d += 3
    if run.max_seq_len and p.max_seq_len:
        d += abs(math.log2(run.max_seq_len / p.max_seq_len))
    elif run.max_seq_len != p.max_seq_len:
        d += 0.5
    if p.packed is not None and bool(p.packed) != run.packed:
        d += 1.5
    if (p.gpus or 1) != max(run.gpus, 1):
        d += 1 + abs(math.log2(max(run.gpus, 1) / (p.gpus or 1)))  # communication does not scale linearly
    if run.lora_rank and p.lora_rank and run.lora_rank != p.lora_rank:
        d += 0.1 * abs(math.log2(run.lora_rank / p.lora_rank))  # matters little, mostly at small batches
    if p.state != "completed":
        d += 0.5  # a cut or failed run still measured speed, but trust it a bit less
    return d


#: Tiers 0-3 rank priors of the run's recipe kind by model; the other kind's follow.
CROSS_KIND_TIER = 4

#: What makes two priors interchangeable for ranking: everything tier and distance read.
_CONFIG_KEY = attrgetter("model", "param_count", "batch_size", "gradient_accumulation_steps",
                         "max_seq_len", "packed", "state", "kind", "gpus", "lora_rank", "device")


def device_kind(device: str | Device | None) -> str | None:
    """``cpu``, ``gpu`` or another torch device type of a prior's or a run's device (None: unknown).

    torchtune's ``device: cuda`` covers every NVIDIA and AMD GPU (ROCm builds answer to
    ``cuda`` too); a table key names one.
    """
    if device is None:
        return None
    if isinstance(device, Device):
        return "cpu" if device.cpu else "gpu"
    text = device.strip().lower().split(":")[0]
    if text in ("cuda", "gpu", "rocm", "hip"):
        return "gpu"
    if text == "cpu":
        return "cpu"
    found = find_device(text)
    if found is not None:
        return "cpu" if found.cpu else "gpu"
    return text or None


def same_device_kind(run: RunQuery, p: PriorRun) -> bool:
    """Whether a prior's speed can anchor the run: measured on the same device.

    A CPU run's it/s says nothing of a GPU's (and the reverse), nor an A100's of an H100's:
    such a prior is used only through the cost model (:func:`calibration`), never scaled.
    Unknown on either side counts as the same (logs without a config dump or device line,
    queries without a device).
    """
    if run.device is None or p.device is None:
        return True
    if device_kind(run.device) != device_kind(p.device):
        return False
    # Two GPUs the table names must be the same one: an A100's it/s is not an H100's. A log
    # that says only ``cuda`` is taken to have run where this plan will (the user's own cluster).
    theirs = find_device(p.device) if isinstance(p.device, str) and p.device.lower() not in ("cuda", "gpu") else None
    return theirs is None or run.device.cpu or theirs.key == run.device.key


class PriorPool:
    """Prior runs grouped by configuration, ranked per configuration instead of per log.

    Thousands of prior logs share a few dozen configurations. Grouping them once
    makes estimating every run of a 100-run plan against 10,000 priors cost a few
    milliseconds instead of seconds. Ties between equally good configurations go to
    the prior that came first, as a stable sort of all priors would have it.

    Attributes:
        priors: the priors, in the order given.
        with_speed: how many of them measured a speed (it/s or tokens/s).
    """

    def __init__(self, priors: Iterable[LogRecord | PriorRun]) -> None:
        self.priors: list[PriorRun] = [p if type(p) is PriorRun else as_prior(p) for p in priors]
        index: dict[tuple, list[int]] = {}
        for i, key in enumerate(map(_CONFIG_KEY, self.priors)):
            members = index.get(key)
            if members is None:
                index[key] = [i]
            else:
                members.append(i)
        self._groups = list(index.values())
        fast = {i for i, p in enumerate(self.priors) if p.it_per_s or p.tokens_per_s}
        self.with_speed = len(fast)
        # Per group: index of its first prior with a measured speed (-1: none).
        self._first_fast = [next((i for i in members if i in fast), -1) for members in self._groups]
        self._by_name: dict[str, PriorRun] | None = None
        # Per group: LoRA rank -> index of its first adapter-only prior with a checkpoint size.
        self._first_sized: list[dict[int, int]] | None = None

    def __len__(self) -> int:
        return len(self.priors)

    def checkpoint_size(self, run: RunQuery, lora_rank: int | None) -> PriorRun | None:
        """The first adapter-only prior of the same model and LoRA rank that measured its checkpoint size.

        Same model: model tier 0, as for training time. Adapter-only, as the planner's
        recipes save: a prior that also saved merged weights wrote the whole model each
        epoch. None when no prior qualifies (the caller computes the size from the
        model's shape).
        """
        if lora_rank is None:
            return None
        if self._first_sized is None:
            self._first_sized = []
            for members in self._groups:
                sized: dict[int, int] = {}
                for i in members:
                    p = self.priors[i]
                    if p.checkpoint_gib_per_epoch is not None and p.lora_rank is not None and p.adapter_only:
                        sized.setdefault(p.lora_rank, i)
                self._first_sized.append(sized)
        best: int | None = None
        for (tier, _), by_rank in zip(self._group_rank(run), self._first_sized):
            first = by_rank.get(lora_rank)
            if tier == 0 and first is not None and (best is None or first < best):
                best = first
        return None if best is None else self.priors[best]

    def named(self, name: str) -> PriorRun | None:
        """The prior called ``name`` (a log path or run name)."""
        if self._by_name is None:
            self._by_name = {p.name: p for p in self.priors}
        return self._by_name.get(name)

    def _group_rank(self, run: RunQuery) -> list[tuple[int, float]]:
        fam, size = model_key(run.model)
        run_params = params_of(run.model, run.param_count)
        ranks = []
        for members in self._groups:
            p = self.priors[members[0]]
            pfam, psize = model_key(p.model)
            p_params = params_of(p.model, p.param_count)
            if run.param_count and p.param_count and run.param_count == p.param_count and (fam == pfam or not pfam):
                tier = 0
            elif size is not None and psize is not None and math.isclose(size, psize):
                tier = 0 if fam and fam == pfam else 1
            elif run_params and p_params:
                tier = 2
            else:
                tier = 3
            if p.kind is not None and p.kind != run.kind:
                tier += CROSS_KIND_TIER  # a LoRA run is timed by a LoRA prior of any size first
            ranks.append((tier, _config_distance(run, p)))
        return ranks

    def ranked(self, run: RunQuery) -> list[tuple[int, float, PriorRun]]:
        """Every prior as ``(model_tier, config_distance, prior)``, best first."""
        out = [
            (tier, dist, i)
            for (tier, dist), members in zip(self._group_rank(run), self._groups)
            for i in members
        ]
        out.sort()
        return [(tier, dist, self.priors[i]) for tier, dist, i in out]

    def best(self, run: RunQuery) -> tuple[int, float, PriorRun] | None:
        """The best-ranked prior that measured a speed, or None when none did."""
        best: tuple[int, float, int] | None = None
        for (tier, dist), first in zip(self._group_rank(run), self._first_fast):
            if first >= 0 and (best is None or (tier, dist, first) < best) and same_device_kind(run, self.priors[first]):
                best = (tier, dist, first)
        return None if best is None else (best[0], best[1], self.priors[best[2]])

    def other_device(self, run: RunQuery) -> list[PriorRun]:
        """Priors with a measured speed from another kind of device than the run's, best-ranked first."""
        return [p for _, _, p in self.ranked(run) if (p.it_per_s or p.tokens_per_s) and not same_device_kind(run, p)]


def rank_priors(run: RunQuery, priors: Iterable[LogRecord | PriorRun] | PriorPool) -> list[tuple[int, float, PriorRun]]:
    """Order priors by match: same model, then same size, then any; nearest config first.

    Args:
        run: the run to estimate.
        priors: candidate prior runs (logs, summaries, or a pool of them).

    Returns:
        ``(model_tier, config_distance, prior)``, best first. Tier 0: same family and
        size; 1: same size; 2: other sizes (need parameter scaling); 3: size unknown;
        4-7: the same for priors of the other recipe kind (full vs LoRA).
    """
    pool = priors if isinstance(priors, PriorPool) else PriorPool(priors)
    return pool.ranked(run)


def training_time(run: RunQuery, priors: Sequence[LogRecord | PriorRun] | PriorPool) -> Estimate:
    """Training-loop time of one run, from the best-matching prior run.

    Formula (seed 002): ``time = steps_per_epoch / speed x epochs`` with
    ``steps_per_epoch = samples // (batch_size x gpus) // gradient_accumulation_steps``.
    The prior's speed is adjusted when the configuration differs:

    * tokens per second, when the prior logged it and the run's tokens per sample is
      known: ``time_per_epoch = samples x tokens_per_sample / tokens_per_s`` (robust
      to sequence-length and packing changes);
    * otherwise it/s scaled by samples per step (``batch x grad_accum x gpus``), by
      ``max_seq_len`` when both are packed (packed steps carry max_seq_len tokens per
      sample), and by parameter count across model sizes.

    The figure is the loop alone (what the progress bars time); :func:`job_time` adds
    start-up and checkpoint saves. A prior of the other recipe kind (full vs LoRA), or
    one scaled by more than :data:`EXTREME_PARAM_SCALING` in parameters, gives a
    ``low`` confidence and the basis says so.

    Args:
        run: the run to estimate.
        priors: prior runs (parsed logs or summaries), or a :class:`PriorPool` of them
            (build one pool to estimate many runs).

    Returns:
        The estimate in seconds; details hold steps_per_epoch, seconds_per_epoch, the
        prior used and its model tier. Falls back to seed 002's table without priors.
    """
    pool = priors if isinstance(priors, PriorPool) else PriorPool(priors)
    best = pool.best(run)
    steps = run.steps_per_epoch()
    if best is None:
        if run.shape is not None and run.device is not None and run.tokens is not None and run.tokens.lengths:
            return modelled_training_time(run, pool)
        est = fallback_training_time(run.param_count or run.model, run.epochs)
        est.details["steps_per_epoch"] = steps
        return est
    tier, _, p = best
    if _through_the_model(run, tier, p):
        fitted = fitted_training_time(run, pool)
        if fitted is not None:
            return fitted
    notes: list[str] = []
    low = False
    if steps == 0:
        notes.append(
            f"0 optimizer steps: {run.train_samples} samples < batch {run.batch_size} x "
            f"grad_accum {run.gradient_accumulation_steps} (torchtune drops the partial batch)"
        )
    scaled = tier > 0
    if p.kind is not None and p.kind != run.kind:
        low = scaled = True
        notes.append(
            f"{_KIND_WORDS[p.kind]}, scaled: the prior trained {'every weight' if p.kind == 'full' else 'adapters only'}, "
            f"this run {'adapters only' if run.kind == 'lora' else 'every weight'}, so its speed is only a rough guide"
        )
    run_params = params_of(run.model, run.param_count)
    p_params = params_of(p.model, p.param_count)
    param_factor = 1.0
    if tier % CROSS_KIND_TIER >= 1 and run_params and p_params and not math.isclose(run_params, p_params, rel_tol=0.05):
        param_factor = run_params / p_params
        extreme = max(param_factor, 1 / param_factor) > EXTREME_PARAM_SCALING
        low = low or extreme
        notes.append(
            f"scaled by parameter count {run_params / 1e9:.3g}B / {p_params / 1e9:.3g}B = x{param_factor:.3g} time"
            + (f" (more than {EXTREME_PARAM_SCALING:g}x: low confidence)" if extreme else "")
        )
    lines: list[str] = []
    run_gpus, p_gpus = max(run.gpus, 1), p.gpus or 1
    tokens_path = bool(p.tokens_per_s and run.tokens_per_sample)
    if p.tokens_per_s and run.tokens_per_sample:
        tps = p.tokens_per_s / param_factor
        tokens = run.train_samples * run.tokens_per_sample
        per_epoch = tokens / tps / run_gpus
        lines.append(
            f"tokens_per_epoch = {run.train_samples} x {log_number(run.tokens_per_sample)} = {log_number(tokens)}, "
            f"time_per_epoch = {log_number(tokens)}/{log_number(tps)} tok/s"
            + (f"/{run_gpus} GPUs" if run_gpus > 1 else "")
            + f" ≈ {per_epoch:.0f}s ≈ {compact_duration(per_epoch)}"
        )
        formula = "tokens_per_epoch / tokens_per_second"
        scaled = scaled or param_factor != 1.0
    else:
        speed = float(p.it_per_s or 0.0)
        whole = epoch_average_it_per_s(p)
        if whole is not None:
            # Whole epochs timed by the bar: warm-up and load swings included, as the new
            # run will have them; tqdm's rate is a moving average that swings with load.
            speed = whole
            lines.append(f"measured speed = {p.steps_per_epoch} steps / {statistics.fmean(p.epoch_seconds):.0f}s per epoch "
                         f"= {whole:.3g} it/s (whole epochs, warm-up included)")
        factors: list[str] = []
        eff_run = run.batch_size * run.gradient_accumulation_steps * run_gpus
        eff_p = (p.batch_size or run.batch_size) * (p.gradient_accumulation_steps or 1) * p_gpus
        if p.batch_size is None:
            notes.append("prior batch size unknown; assumed equal")
        if eff_run != eff_p:
            speed *= eff_p / eff_run
            factors.append(f"x {eff_p}/{eff_run} (samples per step)")
        if run_gpus != p_gpus:
            notes.append(f"scaled from {p_gpus} to {run_gpus} GPU(s) assuming linear scaling")
        if run.packed and p.packed and run.max_seq_len and p.max_seq_len and run.max_seq_len != p.max_seq_len:
            speed *= p.max_seq_len / run.max_seq_len
            factors.append(f"x {p.max_seq_len}/{run.max_seq_len} (packed sequence length)")
        elif run.packed != bool(p.packed) and p.packed is not None:
            notes.append(
                "packing differs from the prior; tokens per step differ and it/s does not capture that - "
                "treat as rough"
            )
            scaled = True
        elif run.max_seq_len != p.max_seq_len and run.max_seq_len and p.max_seq_len:
            notes.append(
                f"max_seq_len {run.max_seq_len} vs prior {p.max_seq_len}; unpacked samples shorter than "
                "both are unaffected, longer ones are not"
            )
            scaled = True
        if param_factor != 1.0:
            speed /= param_factor
            factors.append(f"/ {param_factor:.3g} (parameters)")
        if factors:
            scaled = True
            lines.append(f"speed = {log_number(whole or p.it_per_s or 0)} it/s {' '.join(factors)} = {speed:.3g} it/s")
            scalings = [f for f in factors if "(parameters)" not in f]  # parameters are named above
            if scalings:
                notes.append("speed scaled " + ", ".join(scalings))
        per_epoch = steps / speed if speed > 0 else float("inf")
        div = f"{run.train_samples}/{run.batch_size}"
        if run_gpus > 1:
            div += f"/{run_gpus} GPUs"
        if run.gradient_accumulation_steps > 1:
            div += f"/{run.gradient_accumulation_steps}"
        lines.append(
            f"steps_per_epoch = {div} = {steps}, time_per_epoch = {steps}/{log_number(speed)} "
            f"≈ {per_epoch:.0f}s ≈ {compact_duration(per_epoch)}"
        )
        formula = "steps_per_epoch / it_per_s"
    total = per_epoch * run.epochs
    lines.append(f"loop = {run.epochs} x {per_epoch:.0f}s = {total:.0f}s ≈ {compact_duration(total)}")
    if p.state != "completed":
        notes.append(f"prior run ended {p.state}")
    confidence = "low" if low else "scaled" if scaled else "measured"
    kind = f"{_KIND_WORDS[p.kind]}, " if p.kind else ""
    basis = (
        f"prior run {p.name} ({kind}{p.model or 'model unknown'}, batch {p.batch_size}, "
        f"grad_accum {p.gradient_accumulation_steps or 1}, max_seq_len {p.max_seq_len}, "
        f"packed {p.packed}" + (f", {p_gpus} GPUs" if p_gpus > 1 else "") + ": "
        + (f"{log_number(p.tokens_per_s or 0)} tok/s" if tokens_path
           else f"{log_number(whole_speed)} it/s over whole epochs" if (whole_speed := epoch_average_it_per_s(p)) else f"{log_number(p.it_per_s or 0)} it/s")
        + f"); formula {formula} x epochs"
        + (f"; {pool.with_speed - 1} other prior(s) ranked lower" if pool.with_speed > 1 else "")
        + ("; " + "; ".join(notes) if notes else "")
    )
    return Estimate(
        figure=total,
        unit="s",
        basis=basis,
        confidence=confidence,
        calculation=", ".join(lines),
        details={
            "steps_per_epoch": steps,
            "seconds_per_epoch": per_epoch,
            "prior": p.name,
            "model_tier": tier,
        },
    )


_KIND_WORDS = {"lora": "LoRA fine-tune", "full": "full fine-tune"}

#: The cost model's spread without a measurement on the device: eager torchtune steps
#: sustain 0.2-0.5 of peak, the default assumes 0.35.
MODELLED_SPREAD = (0.6, 1.5)


def _through_the_model(run: RunQuery, tier: int, p: PriorRun) -> bool:
    """Whether the best prior (same model, same device) differs from the run in what the cost model knows best.

    Batch size, gradient accumulation, LoRA rank and packing change how a step splits into
    the host's dispatch and the device's compute, which it/s scaled by samples per step gets
    wrong (a tiny model on a CPU steps nearly as fast at batch 4 as at 8). Other models and
    recipe kinds, and priors that logged tokens/s, keep the scaling of :func:`training_time`.
    """
    if run.shape is None or run.device is None or run.tokens is None or not run.tokens.lengths or tier != 0:
        return False
    if not p.batch_size or p.tokens_per_s:
        return False
    mine = (run.batch_size, run.gradient_accumulation_steps, run.lora_rank, run.packed,
            run.max_seq_len if run.packed else None)
    theirs = (p.batch_size, p.gradient_accumulation_steps or 1, p.lora_rank or run.lora_rank, bool(p.packed),
              p.max_seq_len if p.packed else None)
    if mine == theirs:
        return False
    # Only where the model says the difference shows in a step: a rank of 4 instead of 8 on a
    # 1B model changes a step by a fraction of a percent, and the prior's own speed stands.
    def step(batch: int, accum: int, rank: int | None, packed: bool, max_seq_len: int | None) -> float:
        assert run.shape is not None and run.device is not None and run.tokens is not None
        cost = costmodel.loop_cost(run.shape, run.tokens, run.device, samples=max(run.train_samples, 1), batch_size=batch,
                                   gradient_accumulation_steps=accum, max_seq_len=max_seq_len, packed=packed,
                                   kind=run.kind, lora_rank=rank, dtype=run.dtype, cores=run.cores)
        return cost.step_seconds / max(batch * accum, 1)
    ratio = step(*mine[:4], run.max_seq_len) / step(*theirs[:4], p.max_seq_len)
    return abs(ratio - 1) > 0.02


def measured_tokens(run: RunQuery, pool: PriorPool) -> tuple[TokenStats | None, str | None]:
    """The run's tokens per example corrected by what packed runs of this model measured, and how.

    A packed run's bar counts its rows (``steps x batch x accumulation``): with its examples
    (the config's ``train[:N]``) and row length that gives its real tokens per example, what
    the model's own tokenizer and template made of the characters. The median ratio to the
    plan's estimate scales every example. None when no such run exists (or the run has no
    token estimate).
    """
    if run.tokens is None or not run.tokens.lengths or run.device is None:
        return None, None
    ratios: list[float] = []
    for tier, _, q in pool.ranked(run):
        if (tier != 0 or not q.packed or not q.max_seq_len or not q.steps_per_epoch or not q.batch_size
                or not q.train_samples or not same_device_kind(run, q)):
            continue
        rows = q.steps_per_epoch * q.batch_size * (q.gradient_accumulation_steps or 1) * (q.gpus or 1)
        # rows x (length - half an example) = examples x tokens, solved for tokens.
        real = rows * q.max_seq_len / q.train_samples / (1 + rows / (2 * q.train_samples))
        ratios.append(real / max(run.tokens.mean(q.max_seq_len), 1.0))
    if not ratios:
        return None, None
    factor = statistics.median(ratios)
    if abs(factor - 1) < 0.1:
        return None, None
    return run.tokens.scaled(factor), (f"tokens per example x{factor:.3g}, as {len(ratios)} packed run(s) of this model "
                                       "measured them (rows they packed)")


def fitted_training_time(run: RunQuery, pool: PriorPool) -> Estimate | None:
    """The loop from the cost model's step, fitted to the finished runs of this model on this device.

    Each such run (same recipe kind and GPUs) is modelled at its own batch, accumulation,
    rank, packing and sequence length on the plan's examples (their tokens corrected by
    :func:`measured_tokens`); :func:`costmodel.fit_steps` scales the model's dispatch and
    compute to their measured step times; the run's step is the fit at its own
    configuration. None when no prior qualifies.
    """
    assert run.shape is not None and run.device is not None and run.tokens is not None
    tokens, tokens_how = measured_tokens(run, pool)
    tokens = tokens or run.tokens
    points: list[tuple[float, float, float]] = []
    used: list[PriorRun] = []
    for tier, _, q in pool.ranked(run):
        if tier != 0 or not same_device_kind(run, q) or not q.batch_size or (q.gpus or 1) != max(run.gpus, 1):
            continue
        if (q.kind or "lora") != run.kind or q.tokens_per_s:
            continue
        speed = epoch_average_it_per_s(q) or q.it_per_s
        if not speed:
            continue
        cost = costmodel.loop_cost(run.shape, tokens, run.device, samples=q.train_samples or max(run.train_samples, 1),
                                   batch_size=q.batch_size, gradient_accumulation_steps=q.gradient_accumulation_steps or 1,
                                   max_seq_len=q.max_seq_len, packed=bool(q.packed), kind=run.kind,
                                   lora_rank=q.lora_rank or run.lora_rank, dtype=run.dtype, cores=run.cores)
        points.append((cost.dispatch_seconds, cost.compute_seconds, 1.0 / speed))
        used.append(q)
    fit = costmodel.fit_steps(points, run.device.cpu)
    if fit is None:
        return None
    mine = costmodel.loop_cost(
        run.shape, tokens, run.device, samples=run.train_samples, batch_size=run.batch_size,
        gradient_accumulation_steps=run.gradient_accumulation_steps, gpus=run.gpus, epochs=run.epochs,
        max_seq_len=run.max_seq_len, packed=run.packed, kind=run.kind, lora_rank=run.lora_rank, dtype=run.dtype,
        activation_checkpointing=run.activation_checkpointing, cores=run.cores, max_steps_per_epoch=run.max_steps_per_epoch)
    # Packed, the rows decide the steps; else torchtune's count of examples.
    steps = mine.steps_per_epoch if run.packed else run.steps_per_epoch()
    step = fit.step(mine.dispatch_seconds, mine.compute_seconds)
    per_epoch = steps * step
    total = per_epoch * run.epochs
    names = ", ".join(f"{_short(q.name)} (batch {q.batch_size}, grad_accum {q.gradient_accumulation_steps or 1}"
                      + (f", packed {q.max_seq_len}" if q.packed else "") + ")"
                      for q in used[:3]) + (" ..." if len(used) > 3 else "")
    lines = [
        *([tokens_how] if tokens_how else []),
        f"fit over {len(used)} finished run(s) of this model on {run.device.key}: {fit.text()}",
        f"this run: dispatch {mine.dispatch_seconds * 1000:.1f} ms, compute {mine.compute_seconds * 1000:.2f} ms modelled "
        f"-> step {step * 1000:.1f} ms",
        (mine.lines[0] + f", steps_per_epoch = {steps}" if run.packed else
         f"steps_per_epoch = {run.train_samples}/{run.batch_size}"
         + (f"/{max(run.gpus, 1)} GPUs" if run.gpus > 1 else "")
         + (f"/{run.gradient_accumulation_steps}" if run.gradient_accumulation_steps > 1 else "") + f" = {steps}")
        + f", time_per_epoch = {steps} x {step:.3g}s ≈ {per_epoch:.0f}s",
        f"loop = {run.epochs} x {per_epoch:.0f}s = {total:.0f}s ≈ {compact_duration(total)}",
    ]
    basis = (f"cost model fitted to finished runs of this model on {run.device.key}: {names}; the model's split of a step "
             "into the host's dispatch and the device's compute carries their speed to this configuration")
    return Estimate(
        figure=total, unit="s", basis=basis, confidence="scaled", calculation=", ".join(lines),
        details={"steps_per_epoch": steps, "seconds_per_epoch": per_epoch, "prior": used[0].name, "model_tier": 0,
                 "device": run.device.key},
    )


def calibration(run: RunQuery, pool: PriorPool) -> tuple[float, str | None, list[PriorRun]]:
    """How far the cost model was off for finished runs of this model on another GPU: measured step / modelled step.

    Learned per (device, model, recipe) and carried to the run's device through the model:
    each prior of the same model and recipe kind that ran on a GPU the table names (its
    log's ``plan-experiment: device`` line) is modelled on its own device, batch, sequence
    length and rank, with this plan's examples standing in for its data; the median ratio of
    its measured step time to that multiplies the run's modelled loop. Priors on the run's
    own device anchor directly (:func:`training_time`) and are not needed here; a CPU prior
    says nothing of a GPU (nor the reverse) and is never used.

    Returns:
        ``(factor, where it came from, the priors used)``; ``(1.0, None, [])`` when none qualifies.
    """
    if run.shape is None or run.device is None or run.tokens is None:
        return 1.0, None, []
    ratios: list[tuple[float, PriorRun, Device]] = []
    for tier, _, p in pool.ranked(run):
        if tier != 0 or p.device is None or (p.kind or "lora") != run.kind or not p.batch_size:
            continue
        dev = find_device(p.device)
        if dev is None or dev.cpu != run.device.cpu or dev.cpu:
            continue
        speed = epoch_average_it_per_s(p) or p.it_per_s
        if not speed:
            continue
        modelled = costmodel.loop_cost(
            run.shape, run.tokens, dev, samples=max(run.train_samples, 1), batch_size=p.batch_size,
            gradient_accumulation_steps=p.gradient_accumulation_steps or 1, max_seq_len=p.max_seq_len,
            packed=bool(p.packed), kind=run.kind, lora_rank=p.lora_rank or run.lora_rank, dtype=run.dtype,
        ).step_seconds
        ratios.append(((1.0 / speed) / modelled, p, dev))
    if not ratios:
        return 1.0, None, []
    factor = statistics.median(r for r, _, _ in ratios)
    devices = ", ".join(sorted({d.key for _, _, d in ratios}))
    where = (f"calibrated x{factor:.2g}: measured / modelled step of {len(ratios)} finished run(s) of this model on "
             f"{devices}, carried to {run.device.key} through the model")
    return factor, where, [p for _, p, _ in ratios]


def modelled_training_time(run: RunQuery, pool: PriorPool) -> Estimate:
    """The training loop from the cost model (:mod:`planner.estimate.costmodel`), for a run no prior of its device kind timed.

    Utilisation is learned from finished runs of the model on GPUs of a known type
    (:func:`learned_utilisation`), else the recipe's default. Priors from another kind of
    device are named in the basis and not scaled.
    """
    assert run.shape is not None and run.device is not None and run.tokens is not None
    factor, where, used = calibration(run, pool)
    cost = costmodel.loop_cost(
        run.shape, run.tokens, run.device, samples=run.train_samples, batch_size=run.batch_size,
        gradient_accumulation_steps=run.gradient_accumulation_steps, gpus=run.gpus, epochs=run.epochs,
        max_seq_len=run.max_seq_len, packed=run.packed, kind=run.kind, lora_rank=run.lora_rank, dtype=run.dtype,
        activation_checkpointing=run.activation_checkpointing,
        cores=run.cores, max_steps_per_epoch=run.max_steps_per_epoch,
    )
    per_epoch = cost.seconds_per_epoch * factor
    total = per_epoch * run.epochs
    lines = list(cost.lines)
    if used:
        lines.append(f"{where}: time_per_epoch = {cost.seconds_per_epoch:.0f}s x {factor:.3g} ≈ {per_epoch:.0f}s")
    lines.append(f"loop = {run.epochs} x {per_epoch:.0f}s = {total:.0f}s ≈ {compact_duration(total)}")
    others = pool.other_device(run)
    kind_word = "CPU" if run.device.cpu else "GPU"
    basis = (f"cost model for {run.device.label} ({run.dtype}): tokens per step x FLOPs per token from the model's shape "
             f"/ (peak x utilisation {cost.utilisation:.2g}, {cost.utilisation_source}), "
             + ("plus" if run.device.cpu else "at least") + " the host's dispatch per step; "
             + (f"no finished run on a {kind_word} timed this yet" if not used else (where or ""))
             + (f"; {len(others)} prior(s) from another device (e.g. {_short(others[0].name)} on "
                f"{others[0].device}) are not scaled to this device" if others else ""))
    lo, hi = MODELLED_SPREAD if not used else (0.8, 1.25)
    return Estimate(
        figure=total,
        unit="s",
        basis=basis,
        confidence="modelled",
        calculation=", ".join(lines),
        low=total * lo,
        high=total * hi,
        details={
            "steps_per_epoch": cost.steps_per_epoch,
            "seconds_per_epoch": per_epoch,
            "device": run.device.key,
            "utilisation": cost.utilisation,
            "calibration": factor,
            "tokens_per_step": cost.tokens_per_step,
            "flops_per_token": cost.work.per_token,
            "model_tier": None,
        },
    )

#: Epochs shorter than this are timed by their bar too coarsely (whole seconds) for the
#: epoch average; the steady rate is used instead.
MIN_EPOCH_S_FOR_AVERAGE = 20.0


def epoch_average_it_per_s(p: PriorRun) -> float | None:
    """Steps per second over the prior's whole epochs, when it finished them and they were long enough.

    The bar's elapsed time at an epoch's last step covers everything in the loop,
    warm-up included; over epochs of :data:`MIN_EPOCH_S_FOR_AVERAGE` or more its
    whole-second resolution costs under 5 %.
    """
    if p.state != "completed" or not p.steps_per_epoch or not p.epoch_seconds:
        return None
    mean = statistics.fmean(p.epoch_seconds)
    return p.steps_per_epoch / mean if mean >= MIN_EPOCH_S_FOR_AVERAGE else None


def _default_load_s(params: float | None) -> float:
    return DEFAULT_LOAD_S_PER_BPARAM * (params or 0.0) / 1e9


def default_save_s(gib: float | None) -> float:
    """Seconds one checkpoint save takes by default (see :data:`DEFAULT_SAVE_S`)."""
    return DEFAULT_SAVE_S + DEFAULT_SAVE_S_PER_GIB * (gib or 0.0)


def startup_of(p: PriorRun) -> tuple[float, float] | None:
    """What a finished prior spent outside its training loop: ``(start-up, per save)``.

    Start-up is wall time minus the epochs' loop time minus the saves; a save is the
    logged ``Checkpoint saved in`` time, else the default for the size written.
    None when the prior did not complete, or its wall time or epoch times are unknown.
    """
    if not p.wall_seconds or not p.epoch_seconds or p.state != "completed":
        return None  # a failed or cut job stopped somewhere in between: its parts do not add up
    save = p.checkpoint_save_s if p.checkpoint_save_s is not None else default_save_s(p.checkpoint_gib_per_epoch)
    startup = p.wall_seconds - sum(p.epoch_seconds) - save * len(p.epoch_seconds)
    return max(startup, 0.0), save


def job_time(
    run: RunQuery,
    loop: Estimate,
    priors: Sequence[LogRecord | PriorRun] | PriorPool,
    *,
    checkpoint_gib: float | None = None,
) -> Estimate:
    """A fine-tune job's wall time: start-up + training loop + checkpoint saves.

    Each part is learned from the user's finished runs (wall time from job-state.json
    or sacct, loop time from the bars, saves from ``Checkpoint saved in`` lines):

    * start-up: the median over finished priors of the same model (those the loop
      estimate could take at tier 0); else over any finished prior, its weight-loading
      share swapped for this model's (:data:`DEFAULT_LOAD_S_PER_BPARAM`); else
      :data:`DEFAULT_STARTUP_S` plus weight loading;
    * saves: one per epoch, the median logged save time of same-model priors, else
      :func:`default_save_s` for the checkpoint size per epoch.

    Evaluations run as their own jobs (``eval_time``).

    Args:
        run: the run.
        loop: its :func:`training_time` estimate (the loop).
        priors: prior runs or a pool of them.
        checkpoint_gib: GiB written per epoch, for the default save time.

    Returns:
        The estimate in seconds; details hold startup_s, loop_s, saves_s and how each
        part was obtained.
    """
    pool = priors if isinstance(priors, PriorPool) else PriorPool(priors)
    run_params = params_of(run.model, run.param_count)
    same: list[tuple[float, float, PriorRun]] = []
    other: list[tuple[float, float, PriorRun]] = []
    logged: list[float] = []  # save times logged by runs of this model, finished or not
    twins: list[PriorRun] = []  # finished runs of this very job: same model and configuration, steps and epochs
    steps = run.steps_per_epoch()
    for tier, dist, p in pool.ranked(run):
        if not same_device_kind(run, p):
            continue  # a CPU job's start-up has no device to set up, a GPU job's does
        if tier == 0 and p.checkpoint_save_s is not None:
            logged.append(p.checkpoint_save_s)
        parts = startup_of(p)
        if parts is None:
            continue
        (same if tier == 0 else other).append((*parts, p))
        if tier == 0 and dist == 0 and p.steps_per_epoch == steps and len(p.epoch_seconds) == run.epochs:
            twins.append(p)
    if same:
        startup = statistics.median(s for s, _, _ in same)
        names = ", ".join(_short(p.name) for _, _, p in same[:3]) + (" ..." if len(same) > 3 else "")
        startup_how = f"start-up {startup:.0f}s: median of {len(same)} finished run(s) of this model ({names})"
        learned = True
    elif other:
        fixed = statistics.median(s - _default_load_s(params_of(p.model, p.param_count)) for s, _, p in other)
        startup = max(fixed, 0.0) + _default_load_s(run_params)
        startup_how = (f"start-up {startup:.0f}s: {max(fixed, 0.0):.0f}s fixed (median of {len(other)} finished run(s) "
                       f"of other models) + weight loading {DEFAULT_LOAD_S_PER_BPARAM:g}s per billion parameters")
        learned = True
    else:
        base = DEFAULT_STARTUP_CPU_S if run.cpu else DEFAULT_STARTUP_S
        startup = base + _default_load_s(run_params)
        startup_how = (f"start-up {startup:.0f}s: default {base:g}s{' (CPU job)' if run.cpu else ''} + weight loading "
                       f"{DEFAULT_LOAD_S_PER_BPARAM:g}s per billion parameters (no finished run measured it)")
        learned = False
    if logged:
        save = statistics.median(logged)
        save_how = f"saves {run.epochs} x {save:.0f}s (logged by runs of this model)"
    else:
        save = default_save_s(checkpoint_gib)
        save_how = (f"saves {run.epochs} x {save:.0f}s (default {DEFAULT_SAVE_S:g}s + {DEFAULT_SAVE_S_PER_GIB:g}s/GiB "
                    f"x {checkpoint_gib or 0:.3g} GiB)")
    saves = save * run.epochs
    loop_s = loop.figure
    total = startup + loop_s + saves
    calculation = (f"job = start-up {startup:.0f}s + loop {loop_s:.0f}s + saves {saves:.0f}s = {total:.0f}s ≈ {compact_duration(total)}")
    basis = f"{startup_how}; {save_how}; loop from {loop.basis}"
    low = (loop.low + startup + saves) if loop.low is not None else None
    high = (loop.high + startup + saves) if loop.high is not None else None
    if twins:
        # The same job ran before, to the step: its measured wall time already holds
        # everything the parts model estimates (and what it cannot: contention with the
        # experiment's other jobs, the filesystem). The parts stay in the details, with
        # start-up taking up the difference.
        total = statistics.median(p.wall_seconds or 0.0 for p in twins)
        startup = max(total - loop_s - saves, 0.0)
        names = ", ".join(f"{_short(p.name)} {p.wall_seconds:.0f}s" for p in twins[:3]) + (" ..." if len(twins) > 3 else "")
        calculation = f"job = median wall time of {len(twins)} identical finished job(s) = {total:.0f}s ≈ {compact_duration(total)}"
        basis = f"wall time of the same job run before ({names}); parts: {basis}"
        startup_how = (f"the same job ran before: median wall time of {len(twins)} finished run(s) ({names}), "
                       f"start-up {startup:.0f}s is what the loop and saves leave")
        learned = True
        low = high = None  # a measurement, not a range
    # Otherwise the loop decides the confidence: start-up and saves are small beside it on
    # real runs, and the basis says when they are defaults.
    confidence = "measured" if twins else loop.confidence
    return Estimate(
        figure=total,
        unit="s",
        basis=basis,
        confidence=confidence,
        calculation=calculation,
        low=low,
        high=high,
        details={"startup_s": startup, "loop_s": loop_s, "saves_s": saves, "startup_basis": startup_how,
                 "saves_basis": save_how, "startup_learned": learned},
    )


def _short(name: str) -> str:
    """A prior's run folder name (or file name) for a basis line."""
    parts = name.replace("\\", "/").rstrip("/").split("/")
    return parts[-2] if len(parts) >= 2 and parts[-1].startswith("slurm-") else parts[-1]


def eval_time(
    num_evaluations: int,
    prior_seconds: Sequence[float] | None = None,
) -> Estimate:
    """Time for ``num_evaluations`` evaluations.

    Args:
        num_evaluations: evaluations planned (runs x tasks x epochs + base controls).
        prior_seconds: measured durations of comparable prior evaluations.

    Returns:
        Median prior duration x count (measured), else seed 002's 1-5 min each.
    """
    if not prior_seconds:
        return fallback_eval_time(num_evaluations)
    per = statistics.median(prior_seconds)
    total = per * num_evaluations
    return Estimate(
        figure=total,
        unit="s",
        basis=f"median of {len(prior_seconds)} prior evaluation(s)",
        confidence="measured",
        calculation=f"{num_evaluations} x {per:.0f}s = {total:.0f}s ≈ {compact_duration(total)}",
        details={"seconds_per_evaluation": per},
    )


def gpu_hours(estimates: Sequence[Estimate], gpus: int | Sequence[int] = 1) -> Estimate:
    """GPU hours of a set of time estimates.

    Args:
        estimates: time estimates (unit ``s``), e.g. every run's training plus evals.
        gpus: GPUs per job, one number for all or one per estimate.

    Returns:
        The sum in GPU-hours; confidence is the weakest of the inputs.
    """
    counts = [gpus] * len(estimates) if isinstance(gpus, int) else list(gpus)
    total = sum(e.figure * g for e, g in zip(estimates, counts)) / 3600.0
    order = {c: i for i, c in enumerate(CONFIDENCE)}
    weakest = max((e.confidence for e in estimates), key=lambda c: order.get(c, 2), default="preliminary")
    return Estimate(
        figure=total,
        unit="GPU-h",
        basis=f"sum of {len(estimates)} time estimate(s) x GPUs per job",
        confidence=weakest,
        calculation=" + ".join(f"{e.figure / 3600:.2f}h x {g}" for e, g in zip(estimates, counts))
        + f" = {total:.2f} GPU-h",
    )


def disk(
    runs: int,
    epochs: int,
    priors: Sequence[LogRecord | PriorRun] = (),
    *,
    model: str | None = None,
    param_count: int | None = None,
    free_gib: float | None = None,
    adapter_only: bool = True,
    adapter_gib: float | None = None,
) -> Estimate:
    """Disk for checkpoints: ``runs x epochs x size_per_epoch + 20%``.

    Args:
        runs: fine-tune runs.
        epochs: epochs saved per run.
        priors: prior runs; the first of the same model with a checkpoint size counts.
        model: model name, to match priors and pick the fallback size class.
        param_count: parameters, for the fallback size class.
        free_gib: free space where the experiment will live; sets ``details["fits"]``.
        adapter_only: checkpoints are adapter-only (the default recipes).
        adapter_gib: computed adapter size per epoch, used without priors.

    Returns:
        The estimate in GiB.
    """
    per_epoch = None
    source = None
    fam, size = model_key(model)
    for raw in priors:
        p = as_prior(raw)
        if p.checkpoint_gib_per_epoch is None:
            continue
        pfam, psize = model_key(p.model)
        if model is None or (size is not None and psize is not None and math.isclose(size, psize)):
            per_epoch, source = p.checkpoint_gib_per_epoch, p.name
            break
    if per_epoch is not None:
        base = runs * epochs * per_epoch
        total = base * (1 + DISK_BUFFER)
        est = Estimate(
            figure=total,
            unit="GiB",
            basis=f"checkpoint size per epoch from prior run {source}; + {DISK_BUFFER:.0%} buffer",
            confidence="measured",
            calculation=f"{runs} runs x {epochs} epochs x {per_epoch:.3g} GiB = {base:.3g} GiB, "
            f"+ {DISK_BUFFER:.0%} = {total:.3g} GiB",
            details={"gib_per_epoch": per_epoch},
        )
    else:
        fb = fallback_checkpoint_gib(param_count or model, 1, adapter_only=adapter_only, adapter_gib=adapter_gib)
        per_epoch = fb.figure
        base = runs * epochs * per_epoch
        total = base * (1 + DISK_BUFFER)
        est = Estimate(
            figure=total,
            unit="GiB",
            basis=fb.basis + f" + {DISK_BUFFER:.0%} buffer",
            confidence=fb.confidence,
            calculation=f"{runs} runs x {epochs} epochs x {per_epoch:.3g} GiB = {base:.3g} GiB, "
            f"+ {DISK_BUFFER:.0%} = {total:.3g} GiB",
            details={"gib_per_epoch": per_epoch},
        )
    if free_gib is not None:
        fits = free_gib >= total
        est.details["free_gib"] = free_gib
        est.details["fits"] = fits
        est.calculation += f"; available {free_gib:.3g} GiB -> {'fits' if fits else 'DOES NOT FIT'}"
    return est


def batch_size(
    gpu_memory_gib: float,
    prior_peak_gib: float,
    prior_batch: int,
    packed: bool,
    *,
    prior_packed: bool | None = None,
) -> Estimate:
    """Largest safe batch size from a prior run's peak memory (seed 002).

    ``headroom = available / peak``; ``max_batch = prior_batch x headroom x 0.7``,
    rounded down to a power of two. Memory is not all proportional to batch (weights
    are fixed), so scaling the whole peak is conservative. If the new run packs and
    the prior did not, samples become max_seq_len long: divide by 4 (seed 002: 2-4x).

    Args:
        gpu_memory_gib: memory of one GPU.
        prior_peak_gib: the prior's peak GPU memory.
        prior_batch: the prior's batch size.
        packed: the new run packs its dataset.
        prior_packed: whether the prior packed (None: unknown).

    Returns:
        The estimate in unit ``batch`` (at least 1).
    """
    headroom = gpu_memory_gib / prior_peak_gib if prior_peak_gib > 0 else 1.0
    raw = prior_batch * headroom * BATCH_HEADROOM_FACTOR
    steps = [
        f"headroom = {gpu_memory_gib:g}/{prior_peak_gib:g} = {headroom:.2f}",
        f"max_batch = {prior_batch} x {headroom:.2f} x {BATCH_HEADROOM_FACTOR} = {raw:.1f}",
    ]
    notes = ""
    if packed and prior_packed is False:
        raw /= PACKING_BATCH_DIVISOR
        steps.append(f"packing (prior unpacked): / {PACKING_BATCH_DIVISOR} = {raw:.1f}")
        notes = " Packing on where the prior was unpacked: divided by 4 (packing cuts the batch that fits 2-4x)."
    elif packed and prior_packed is None:
        notes = " Prior packing unknown; if it was unpacked, expect 2-4x less."
    best = 1 if raw < 2 else 2 ** int(math.floor(math.log2(raw)))
    steps.append(f"largest power of two <= {raw:.1f}: {best}")
    return Estimate(
        figure=float(best),
        unit="batch",
        basis=f"prior peak memory {prior_peak_gib:g} GiB at batch {prior_batch}; 30% headroom kept (x 0.7).{notes}",
        confidence="scaled" if best != prior_batch else "measured",
        calculation=", ".join(steps),
        details={"headroom": headroom, "raw": raw},
    )
