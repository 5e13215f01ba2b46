"""What an estimate is made of: the value types, model size classes and the design log's
number formats.

Pure. :class:`Estimate` carries a figure, its unit, its basis, a confidence level and the
calculation as text; :class:`RunQuery` is what is asked about one run; :class:`PriorRun`
is what a finished run measured.
"""

from __future__ import annotations

import math
import re
import statistics
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from planner.estimate.costmodel import TokenStats
from planner.estimate.logparse import LogRecord
from planner.spec.hardware import Device
from planner.torchtune.shapes import ModelShape
from planner.spec.units import format_duration

CONFIDENCE = ("measured", "scaled", "modelled", "low", "preliminary")

#: Seed 002: batch sizing keeps 30% of the measured headroom in reserve.
BATCH_HEADROOM_FACTOR = 0.7
#: Seed 002: dataset packing reduces the batch that fits by 2-4x; plan for the worst.
PACKING_BATCH_DIVISOR = 4
#: Seed 002: disk totals get a 20% buffer.
DISK_BUFFER = 0.2

# Seed 002 fallback table by size class: (upper param bound, label, min/epoch low, high,
# full-checkpoint GiB/epoch low, high).
SIZE_CLASSES = (
    (2.0e9, "1B", 30, 60, 2.0, 3.0),
    (5.0e9, "3B", 60, 120, 6.0, 7.0),
    (math.inf, "7B+", 180, 300, 14.0, 20.0),
)
EVAL_FALLBACK_S = (60.0, 300.0)



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
        kind: ``"lora"`` or ``"full"`` (the planner's recipes are LoRA).
        lora_rank: the LoRA rank (a tie-breaker between otherwise equal priors).
        cpu: a CPU job (``gpus: 0``): no device set-up, a smaller start-up default.
        device: the accelerator the job will run on (None: unknown; priors of any device
            kind then count).
        shape: the model's shape, for the cost model (None: no derivation).
        tokens: tokens per training example, for the cost model.
        dtype: training dtype.
        activation_checkpointing: the recipe's setting.
        cores: CPU cores of a CPU job.
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
    kind: str = "lora"
    lora_rank: int | None = None
    cpu: bool = False
    device: Device | None = None
    shape: ModelShape | None = None
    tokens: TokenStats | None = None
    dtype: str = "bf16"
    activation_checkpointing: bool = False
    cores: int = 1

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
            lora_rank=settings.get("lora_rank"),
        )

    def steps_per_epoch(self) -> int:
        """Optimizer steps per epoch, as torchtune counts them.

        torchtune's dataloader drops the last partial batch, and the bar counts
        optimizer steps: ``len(dataloader) // gradient_accumulation_steps``, capped by
        ``max_steps_per_epoch``. So floor divisions, not ceilings. With several GPUs
        the sampler splits the samples between ranks.
        """
        # Each of the ``gpus`` ranks takes its own batch per step.
        steps = (self.train_samples // max(1, self.batch_size * max(1, self.gpus))) // max(1, self.gradient_accumulation_steps)
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
        peak_rss_gib: peak resident memory of the training processes (CPU jobs).
        train_samples: examples per epoch, when the config's split says (``train[:20000]``).
        state: the log's final state.
        eval_seconds: durations of evaluations of this run, when known.
        lora_rank: the LoRA rank (checkpoint size depends on it).
        adapter_only: whether its checkpoints were the adapter alone (None: no
            checkpoint lines logged).
        kind: ``"lora"`` or ``"full"`` fine-tune (None: the log did not say).
        gpus: processes of a distributed run (None: one).
        device: what kind of device measured it: ``cpu``, ``cuda`` ... from the log's
            config (None: not said).
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
    peak_rss_gib: float | None = None
    state: str = "unknown"
    eval_seconds: list[float] = field(default_factory=list)
    lora_rank: int | None = None
    adapter_only: bool | None = None
    kind: str | None = None
    gpus: int | None = None
    device: str | None = None
    train_samples: int | None = None

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
            peak_rss_gib=rec.peak_rss_gib,
            state=rec.state,
            lora_rank=rec.lora_rank,
            adapter_only=("model" not in kinds) if kinds else None,
            kind=rec.finetune_kind,
            gpus=rec.world_size,
            device=rec.device,
            train_samples=split_samples(rec.dataset_split),
        )


_SPLIT_COUNT_RE = re.compile(r"\[\s*:\s*(\d+)\s*\]\s*$")


def split_samples(split: str | None) -> int | None:
    """Examples a Hugging Face split slice takes: ``train[:20000]`` -> 20000 (None: not a count)."""
    m = _SPLIT_COUNT_RE.search(split) if isinstance(split, str) else None
    return int(m.group(1)) if m else None


def as_prior(p: LogRecord | PriorRun) -> PriorRun:
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


def params_of(model: str | None, param_count: int | None) -> float | None:
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
        params = params_of(x, None) if x else None
        if params is None and isinstance(x, str) and x.strip().upper().startswith("7B"):
            params = 7e9
    if params is None:
        params = math.inf
    for limit, label, lo, hi, clo, chi in SIZE_CLASSES:
        if params < limit:
            return label, lo, hi, clo, chi
    return SIZE_CLASSES[-1][1:]  # type: ignore[return-value]


# --------------------------------------------------------------------------- formatting




def log_number(x: float) -> str:
    """A number as the design log shows it: 4.34, 2000, 0.5."""
    return f"{x:.0f}" if float(x).is_integer() else f"{x:.3g}" if abs(x) < 100 else f"{x:.0f}"


def compact_duration(seconds: float) -> str:
    """Compact duration for calculation lines, as seed 002 writes them: ``8min``."""
    return format_duration(seconds).replace(" ", "")




