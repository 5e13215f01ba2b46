"""Compute estimates (time, GPU hours, disk, batch size) from prior runs or fallbacks.

Pure: data in, :class:`Estimate` out. Every estimate carries its figure, unit, the
basis it stands on (which prior runs, which formula), a confidence level and the
calculation as text, ready for the design log (seed 002's CALCULATE_TIME entries).

Confidence levels:

* ``measured``: a prior run of the same model and configuration; only arithmetic.
* ``scaled``: a prior run scaled to a different batch, sequence length or model size.
* ``preliminary``: no usable prior run; seed 002's typical ranges. Verify with a test run.
"""

from __future__ import annotations

import math
import re
import statistics
from dataclasses import dataclass, field
from functools import lru_cache
from operator import attrgetter
from typing import Any, Iterable, Sequence

from planner.estimate.logparse import LogRecord

CONFIDENCE = ("measured", "scaled", "preliminary")

#: Seed 002: batch sizing keeps 30% of the measured headroom in reserve.
BATCH_HEADROOM_FACTOR = 0.7
#: Seed 002: dataset packing reduces the batch that fits by 2-4x; plan for the worst.
PACKING_BATCH_DIVISOR = 4
#: Seed 002: disk totals get a 20% buffer.
DISK_BUFFER = 0.2

# Seed 002 fallback table by size class: (upper param bound, label, min/epoch low, high,
# full-checkpoint GiB/epoch low, high).
_SIZE_CLASSES = (
    (2.0e9, "1B", 30, 60, 2.0, 3.0),
    (5.0e9, "3B", 60, 120, 6.0, 7.0),
    (math.inf, "7B+", 180, 300, 14.0, 20.0),
)
_EVAL_FALLBACK_S = (60.0, 300.0)


# --------------------------------------------------------------------------- types


@dataclass
class Estimate:
    """One estimated quantity and how it was obtained.

    Attributes:
        figure: the value to plan with (conservative end of a range for fallbacks).
        unit: ``"s"``, ``"GiB"``, ``"GPU-h"`` or ``"batch"``.
        basis: which prior runs or table, which formula, in words.
        confidence: ``"measured"``, ``"scaled"`` or ``"preliminary"``.
        calculation: the arithmetic as text, for the design log.
        low: lower end of the range, when the estimate is a range.
        high: upper end of the range, when the estimate is a range.
        details: named intermediate values (steps_per_epoch, seconds_per_epoch, fits ...).
    """

    figure: float
    unit: str
    basis: str
    confidence: str
    calculation: str
    low: float | None = None
    high: float | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def human(self) -> str:
        """The figure in words, e.g. ``~16 min`` or ``~2.9 GiB``."""
        if self.unit == "s":
            if self.low is not None and self.high is not None and self.low != self.high:
                return f"{format_duration(self.low)}-{format_duration(self.high)}"
            return f"~{format_duration(self.figure)}"
        if self.unit == "GiB":
            return f"~{self.figure:.1f} GiB" if self.figure >= 0.1 else f"~{self.figure * 1024:.0f} MiB"
        if self.unit == "GPU-h":
            return f"~{self.figure:.1f} GPU-h"
        if self.unit == "batch":
            return f"batch size {self.figure:g}"
        return f"{self.figure:g} {self.unit}"


@dataclass
class RunQuery:
    """The run to estimate.

    Attributes:
        model: model name, e.g. ``Llama-3.2-1B-Instruct``.
        param_count: parameters of the base model (None: read the size from the name).
        batch_size: per-device batch size.
        gradient_accumulation_steps: micro-batches per optimizer step.
        epochs: training epochs.
        train_samples: training samples per epoch (before packing).
        max_seq_len: tokenizer max_seq_len (None: unlimited).
        packed: dataset packing.
        gpus: GPUs per job.
        tokens_per_sample: mean tokens per training sample, when known (enables the
            tokens-per-second estimate, which survives sequence-length changes).
        max_steps_per_epoch: torchtune's cap on steps per epoch.
    """

    model: str
    param_count: int | None
    batch_size: int
    gradient_accumulation_steps: int = 1
    epochs: int = 1
    train_samples: int = 0
    max_seq_len: int | None = None
    packed: bool = False
    gpus: int = 1
    tokens_per_sample: float | None = None
    max_steps_per_epoch: int | None = None

    @classmethod
    def from_settings(
        cls,
        model: str,
        param_count: int | None,
        settings: dict[str, Any],
        train_samples_available: int | None,
    ) -> "RunQuery":
        """Build a query from a planner ``Run.settings`` dict.

        Args:
            model: model name.
            param_count: parameter count (from the model's config), or None.
            settings: the run's flat settings (batch_size, gradient_accumulation_steps,
                epochs, train_samples, max_seq_len, packed, ...).
            train_samples_available: samples in the training split; used when
                ``settings["train_samples"]`` is unset, and as its cap.

        Returns:
            The query.
        """
        wanted = settings.get("train_samples")
        if wanted is None:
            samples = train_samples_available or 0
        elif train_samples_available is not None:
            samples = min(int(wanted), int(train_samples_available))
        else:
            samples = int(wanted)
        return cls(
            model=model,
            param_count=param_count,
            batch_size=int(settings.get("batch_size") or 1),
            gradient_accumulation_steps=int(settings.get("gradient_accumulation_steps") or 1),
            epochs=int(settings.get("epochs") or 1),
            train_samples=int(samples),
            max_seq_len=settings.get("max_seq_len"),
            packed=bool(settings.get("packed", False)),
            gpus=int(settings.get("gpus") or 1),
            tokens_per_sample=settings.get("tokens_per_sample"),
            max_steps_per_epoch=settings.get("max_steps_per_epoch"),
        )

    def steps_per_epoch(self) -> int:
        """Optimizer steps per epoch, as torchtune counts them.

        torchtune's dataloader drops the last partial batch, and the bar counts
        optimizer steps: ``len(dataloader) // gradient_accumulation_steps``, capped by
        ``max_steps_per_epoch``. So floor divisions, not ceilings.
        """
        steps = (self.train_samples // max(1, self.batch_size)) // max(1, self.gradient_accumulation_steps)
        if self.max_steps_per_epoch:
            steps = min(steps, int(self.max_steps_per_epoch))
        return steps


@dataclass(slots=True)  # thousands per estimate: no per-object dict to build
class PriorRun:
    """A prior training run, summarised for estimation.

    Attributes:
        name: where it came from (log path or run name).
        model: model name or torchtune component.
        param_count: parameters (None: read the size from ``model``).
        batch_size: per-device batch size.
        gradient_accumulation_steps: micro-batches per optimizer step.
        max_seq_len: tokenizer max_seq_len.
        packed: dataset packing.
        it_per_s: steady optimizer steps per second.
        tokens_per_s: tokens per second per GPU.
        steps_per_epoch: optimizer steps per epoch.
        epoch_seconds: measured seconds per epoch (bar elapsed).
        wall_seconds: job wall time (start-up and saves included), when known.
        checkpoint_save_s: seconds per checkpoint save, when logged.
        checkpoint_gib_per_epoch: GiB written per epoch (checkpoint lines or folder size).
        peak_memory_gib: peak GPU memory.
        state: the log's final state.
        eval_seconds: durations of evaluations of this run, when known.
        lora_rank: the LoRA rank (checkpoint size depends on it).
        adapter_only: whether its checkpoints were the adapter alone (None: no
            checkpoint lines logged).
    """

    name: str
    model: str | None = None
    param_count: int | None = None
    batch_size: int | None = None
    gradient_accumulation_steps: int | None = None
    max_seq_len: int | None = None
    packed: bool | None = None
    it_per_s: float | None = None
    tokens_per_s: float | None = None
    steps_per_epoch: int | None = None
    epoch_seconds: list[float] = field(default_factory=list)
    wall_seconds: float | None = None
    checkpoint_save_s: float | None = None
    checkpoint_gib_per_epoch: float | None = None
    peak_memory_gib: float | None = None
    state: str = "unknown"
    eval_seconds: list[float] = field(default_factory=list)
    lora_rank: int | None = None
    adapter_only: bool | None = None

    @classmethod
    def from_record(
        cls,
        rec: LogRecord,
        *,
        wall_seconds: float | None = None,
        param_count: int | None = None,
        epoch_dir_gib: float | None = None,
    ) -> "PriorRun":
        """Summarise a parsed log.

        Args:
            rec: the parsed log.
            wall_seconds: the job's wall time, if known from elsewhere (job-state.json).
            param_count: the model's parameter count, if known.
            epoch_dir_gib: measured size of an ``epoch_N`` folder, if known; preferred
                over checkpoint lines because it counts every file saved.

        Returns:
            The summary.
        """
        saves = rec.checkpoint_save_s
        kinds = {c.kind for c in rec.checkpoints} - {"recipe"}
        return cls(
            name=rec.path or "(log)",
            model=rec.model_component,
            param_count=param_count,
            batch_size=rec.batch_size,
            gradient_accumulation_steps=rec.gradient_accumulation_steps,
            max_seq_len=rec.max_seq_len,
            packed=rec.packed,
            it_per_s=rec.steady_it_per_s,
            tokens_per_s=rec.tokens_per_second_median,
            steps_per_epoch=rec.steps_per_epoch,
            epoch_seconds=list(rec.epoch_elapsed_s),
            wall_seconds=wall_seconds,
            checkpoint_save_s=statistics.median(saves) if saves else None,
            checkpoint_gib_per_epoch=epoch_dir_gib if epoch_dir_gib is not None else rec.checkpoint_gib_per_epoch(),
            peak_memory_gib=rec.peak_memory,
            state=rec.state,
            lora_rank=rec.lora_rank,
            adapter_only=("model" not in kinds) if kinds else None,
        )


def _as_prior(p: LogRecord | PriorRun) -> PriorRun:
    return p if isinstance(p, PriorRun) else PriorRun.from_record(p)


# --------------------------------------------------------------------------- models

_FAMILY_RE = re.compile(
    r"(llama|qwen|gemma|phi|mistral|mixtral|olmo|smollm)[-_ ]?(\d+)(?:[._-](\d+)(?![\d]*b))?",
    re.I,
)
_SIZE_RE = re.compile(r"(?<![a-z\d])(\d+)(?:[._](\d+))?\s*b(?![a-z])", re.I)
_PARAM_WORDS = {"mini": 3.8e9, "small": 7e9, "medium": 14e9}


@lru_cache(maxsize=4096)  # thousands of priors share a handful of model names
def model_key(name: str | None) -> tuple[str | None, float | None]:
    """Family and size (billions) from a model name or torchtune component.

    ``Llama-3.2-1B-Instruct`` and ``torchtune.models.llama3_2.lora_llama3_2_1b`` both
    give ``("llama3.2", 1.0)``; ``Qwen2.5-0.5B`` and ``qwen2_5_0_5b`` give
    ``("qwen2.5", 0.5)``.

    Args:
        name: the name.

    Returns:
        ``(family, size_b)``; either may be None when not recognisable.
    """
    if not name:
        return None, None
    leaf = name.rsplit(".", 1)[-1] if name.startswith("torchtune.") else name
    leaf = re.sub(r"^(q?lora|dora)_", "", leaf, flags=re.I)
    fam = _FAMILY_RE.search(leaf)
    family = None
    rest = leaf
    if fam:
        family = fam.group(1).lower() + fam.group(2) + (f".{fam.group(3)}" if fam.group(3) else "")
        rest = leaf[fam.end() :]
    size = None
    sm = _SIZE_RE.search(rest)
    if sm:
        size = float(f"{sm.group(1)}.{sm.group(2)}") if sm.group(2) else float(sm.group(1))
    else:
        for word, params in _PARAM_WORDS.items():
            if word in rest.lower():
                size = params / 1e9
    return family, size


def _params(model: str | None, param_count: int | None) -> float | None:
    if param_count:
        return float(param_count)
    _, size = model_key(model)
    return size * 1e9 if size else None


def size_class(param_count_or_size_label: int | float | str | None) -> tuple[str, int, int, float, float]:
    """Seed 002's size class for a parameter count, a label (``"3B"``) or a model name.

    Returns:
        ``(label, min_per_epoch_low, min_per_epoch_high, ckpt_gib_low, ckpt_gib_high)``.
        Unknown sizes fall in the largest class (conservative).
    """
    x = param_count_or_size_label
    params: float | None
    if isinstance(x, (int, float)):
        params = float(x)
    else:
        params = _params(x, None) if x else None
        if params is None and isinstance(x, str) and x.strip().upper().startswith("7B"):
            params = 7e9
    if params is None:
        params = math.inf
    for limit, label, lo, hi, clo, chi in _SIZE_CLASSES:
        if params < limit:
            return label, lo, hi, clo, chi
    return _SIZE_CLASSES[-1][1:]  # type: ignore[return-value]


# --------------------------------------------------------------------------- formatting


def format_duration(seconds: float) -> str:
    """Round *up* to a planning-friendly unit: ``45 s``, ``8 min``, ``2 h 5 min``, ``1 d 3 h``.

    Rounding up keeps the seed's arithmetic (461 s per epoch is "8 min") and errs on
    the side of more time.
    """
    if seconds < 90:
        return f"{math.ceil(seconds)} s"
    minutes = math.ceil(seconds / 60)
    if minutes < 90:
        return f"{minutes} min"
    h, m = divmod(minutes, 60)
    if h < 48:
        return f"{h} h {m} min" if m else f"{h} h"
    d, h = divmod(h, 24)
    return f"{d} d {h} h" if h else f"{d} d"


def _n(x: float) -> str:
    """A number as the design log shows it: 4.34, 2000, 0.5."""
    return f"{x:.0f}" if float(x).is_integer() else f"{x:.3g}" if abs(x) < 100 else f"{x:.0f}"


def _c(seconds: float) -> str:
    """Compact duration for calculation lines, as seed 002 writes them: ``8min``."""
    return format_duration(seconds).replace(" ", "")


def slurm_time(estimate_seconds: float, margin: float = 0.5, minimum_s: float = 15 * 60) -> str:
    """A Slurm ``--time`` for an estimate: margin added, rounded up, formatted.

    Granularity grows with the figure so requests look deliberate and schedule well:
    5 minutes up to an hour, 15 up to 6 hours, 30 up to a day, then whole hours.

    Args:
        estimate_seconds: the estimate.
        margin: safety margin as a fraction (0.5: +50%).
        minimum_s: never ask for less (start-up alone can take minutes on a busy node).

    Returns:
        ``HH:MM:SS``, or ``D-HH:MM:SS`` from one day on.
    """
    t = max(float(estimate_seconds) * (1.0 + margin), minimum_s)
    for limit, step in ((3600, 300), (6 * 3600, 900), (86400, 1800), (math.inf, 3600)):
        if t <= limit:
            t = math.ceil(t / step) * step
            break
    total = int(t)
    d, rem = divmod(total, 86400)
    h, rem = divmod(rem, 3600)
    m, s = divmod(rem, 60)
    return f"{d}-{h:02d}:{m:02d}:{s:02d}" if d else f"{h:02d}:{m:02d}:{s:02d}"


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
        basis=f"no usable prior run; seed 002 typical range for {label} models ({lo}-{hi} min/epoch). "
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
        basis=f"no prior checkpoint sizes; seed 002 typical full checkpoint for {label} models "
        f"({_n(clo)}-{_n(chi)} GiB/epoch).{note}",
        confidence="preliminary",
        calculation=f"{epochs} epoch(s) x {_n(clo)}-{_n(chi)} GiB = {_n(clo * epochs)}-{_n(chi * epochs)} GiB",
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
    lo, hi = _EVAL_FALLBACK_S
    return Estimate(
        figure=hi * num_evaluations,
        unit="s",
        basis="no prior evaluation timings; seed 002 typical 1-5 min per evaluation. Preliminary.",
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
        note += f" Packing on: seed 002 says start at {start} for {label}."
    return Estimate(
        figure=float(lo),
        unit="batch",
        basis=f"no prior memory figures; seed 002 table for {label} on a "
        f"{'80' if big else '40'} GB-class GPU: {lo}-{hi}.{note} Preliminary.",
        confidence="preliminary",
        calculation=f"table lookup ({label}, {gpu_memory_gib:g} GiB GPU) -> {lo}-{hi}",
        low=float(lo),
        high=float(hi),
    )


# --------------------------------------------------------------------------- from priors


def _config_distance(run: RunQuery, p: PriorRun) -> float:
    """How far a prior's configuration is from the run (0: identical)."""
    d = 0.0
    eff_run = run.batch_size * run.gradient_accumulation_steps
    if p.batch_size:
        eff_p = p.batch_size * (p.gradient_accumulation_steps or 1)
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
    if p.state != "completed":
        d += 0.5  # a cut or failed run still measured speed, but trust it a bit less
    return d


#: What makes two priors interchangeable for ranking: everything tier and distance read.
_CONFIG_KEY = attrgetter("model", "param_count", "batch_size", "gradient_accumulation_steps",
                         "max_seq_len", "packed", "state")


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
        self.priors: list[PriorRun] = [p if type(p) is PriorRun else _as_prior(p) for p in priors]
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
        run_params = _params(run.model, run.param_count)
        ranks = []
        for members in self._groups:
            p = self.priors[members[0]]
            pfam, psize = model_key(p.model)
            p_params = _params(p.model, p.param_count)
            if run.param_count and p.param_count and run.param_count == p.param_count and (fam == pfam or not pfam):
                tier = 0
            elif size is not None and psize is not None and math.isclose(size, psize):
                tier = 0 if fam and fam == pfam else 1
            elif run_params and p_params:
                tier = 2
            else:
                tier = 3
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
            if first >= 0 and (best is None or (tier, dist, first) < best):
                best = (tier, dist, first)
        return None if best is None else (best[0], best[1], self.priors[best[2]])


def rank_priors(run: RunQuery, priors: Iterable[LogRecord | PriorRun] | PriorPool) -> list[tuple[int, float, PriorRun]]:
    """Order priors by match: same model, then same size, then any; nearest config first.

    Args:
        run: the run to estimate.
        priors: candidate prior runs (logs, summaries, or a pool of them).

    Returns:
        ``(model_tier, config_distance, prior)``, best first. Tier 0: same family and
        size; 1: same size; 2: other sizes (need parameter scaling); 3: size unknown.
    """
    pool = priors if isinstance(priors, PriorPool) else PriorPool(priors)
    return pool.ranked(run)


def training_time(run: RunQuery, priors: Sequence[LogRecord | PriorRun] | PriorPool) -> Estimate:
    """Training time of one run, from the best-matching prior run.

    Formula (seed 002): ``time = steps_per_epoch / speed x epochs`` with
    ``steps_per_epoch = samples // batch_size // gradient_accumulation_steps``. The
    prior's speed is adjusted when the configuration differs:

    * tokens per second, when the prior logged it and the run's tokens per sample is
      known: ``time_per_epoch = samples x tokens_per_sample / tokens_per_s`` (robust
      to sequence-length and packing changes);
    * otherwise it/s scaled by effective batch (``batch x grad_accum``), by
      ``max_seq_len`` when both are packed (packed steps carry max_seq_len tokens per
      sample), and by parameter count across model sizes.

    Fixed overhead (start-up, checkpoint saves) is added when the prior measured it.

    Args:
        run: the run to estimate.
        priors: prior runs (parsed logs or summaries), or a :class:`PriorPool` of them
            (build one pool to estimate many runs).

    Returns:
        The estimate in seconds; details hold steps_per_epoch, seconds_per_epoch,
        overhead_s and the prior used. Falls back to seed 002's table without priors.
    """
    pool = priors if isinstance(priors, PriorPool) else PriorPool(priors)
    best = pool.best(run)
    steps = run.steps_per_epoch()
    if best is None:
        est = fallback_training_time(run.param_count or run.model, run.epochs)
        est.details["steps_per_epoch"] = steps
        return est
    tier, _, p = best
    notes: list[str] = []
    if steps == 0:
        notes.append(
            f"0 optimizer steps: {run.train_samples} samples < batch {run.batch_size} x "
            f"grad_accum {run.gradient_accumulation_steps} (torchtune drops the partial batch)"
        )
    scaled = tier > 0
    run_params = _params(run.model, run.param_count)
    p_params = _params(p.model, p.param_count)
    param_factor = 1.0
    if tier >= 1 and run_params and p_params and not math.isclose(run_params, p_params, rel_tol=0.05):
        param_factor = run_params / p_params
        notes.append(
            f"scaled by parameter count {run_params / 1e9:.3g}B / {p_params / 1e9:.3g}B = x{param_factor:.2f} time"
        )
    lines: list[str] = []
    tokens_path = bool(p.tokens_per_s and run.tokens_per_sample)
    if p.tokens_per_s and run.tokens_per_sample:
        tps = p.tokens_per_s / param_factor
        tokens = run.train_samples * run.tokens_per_sample
        per_epoch = tokens / tps / max(1, run.gpus)
        lines.append(
            f"tokens_per_epoch = {run.train_samples} x {_n(run.tokens_per_sample)} = {_n(tokens)}, "
            f"time_per_epoch = {_n(tokens)}/{_n(tps)} tok/s"
            + (f"/{run.gpus} GPUs" if run.gpus > 1 else "")
            + f" ≈ {per_epoch:.0f}s ≈ {_c(per_epoch)}"
        )
        formula = "tokens_per_epoch / tokens_per_second"
        scaled = scaled or param_factor != 1.0
    else:
        speed = float(p.it_per_s or 0.0)
        factors: list[str] = []
        eff_run = run.batch_size * run.gradient_accumulation_steps
        eff_p = (p.batch_size or run.batch_size) * (p.gradient_accumulation_steps or 1)
        if p.batch_size is None:
            notes.append("prior batch size unknown; assumed equal")
        if eff_run != eff_p:
            speed *= eff_p / eff_run
            factors.append(f"x {eff_p}/{eff_run} (samples per step)")
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
            factors.append(f"/ {param_factor:.2f} (parameters)")
        if factors:
            scaled = True
            lines.append(f"speed = {_n(p.it_per_s or 0)} it/s {' '.join(factors)} = {speed:.3g} it/s")
        per_epoch = steps / speed if speed > 0 else float("inf")
        div = f"{run.train_samples}/{run.batch_size}"
        if run.gradient_accumulation_steps > 1:
            div += f"/{run.gradient_accumulation_steps}"
        lines.append(
            f"steps_per_epoch = {div} = {steps}, time_per_epoch = {steps}/{_n(speed)} "
            f"≈ {per_epoch:.0f}s ≈ {_c(per_epoch)}"
        )
        formula = "steps_per_epoch / it_per_s"
    # Overhead the prior measured: start-up (imports, model load) from its wall time,
    # and per-epoch checkpoint saves from its log.
    overhead = 0.0
    save = p.checkpoint_save_s or 0.0
    if p.wall_seconds and p.epoch_seconds:
        startup = p.wall_seconds - sum(p.epoch_seconds) - save * len(p.epoch_seconds)
        if startup > 0:
            overhead += startup
            lines.append(f"start-up overhead (prior wall - epochs - saves) ≈ {startup:.0f}s")
    if save:
        overhead += save * run.epochs
        lines.append(f"checkpoint saves {run.epochs} x {save:.0f}s")
    total = per_epoch * run.epochs + overhead
    lines.append(
        f"total = {run.epochs} x {per_epoch:.0f}s"
        + (f" + {overhead:.0f}s overhead" if overhead else "")
        + f" = {total:.0f}s ≈ {_c(total)}"
    )
    if p.state != "completed":
        notes.append(f"prior run ended {p.state}")
    confidence = "scaled" if scaled else "measured"
    basis = (
        f"prior run {p.name} ({p.model or 'model unknown'}, batch {p.batch_size}, "
        f"grad_accum {p.gradient_accumulation_steps or 1}, max_seq_len {p.max_seq_len}, "
        f"packed {p.packed}: "
        + (f"{_n(p.tokens_per_s or 0)} tok/s" if tokens_path else f"{_n(p.it_per_s or 0)} it/s")
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
            "overhead_s": overhead,
            "prior": p.name,
            "model_tier": tier,
        },
    )


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
        calculation=f"{num_evaluations} x {per:.0f}s = {total:.0f}s ≈ {_c(total)}",
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
        p = _as_prior(raw)
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
        notes = " Packing on where the prior was unpacked: divided by 4 (seed 002: 2-4x)."
    elif packed and prior_packed is None:
        notes = " Prior packing unknown; if it was unpacked, expect 2-4x less."
    best = 1 if raw < 2 else 2 ** int(math.floor(math.log2(raw)))
    steps.append(f"largest power of two <= {raw:.1f}: {best}")
    return Estimate(
        figure=float(best),
        unit="batch",
        basis=f"prior peak memory {prior_peak_gib:g} GiB at batch {prior_batch}; seed 002 headroom x 0.7.{notes}",
        confidence="scaled" if best != prior_batch else "measured",
        calculation=", ".join(steps),
        details={"headroom": headroom, "raw": raw},
    )
