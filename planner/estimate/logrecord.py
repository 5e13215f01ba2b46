"""What a torchtune log says: :class:`LogRecord` and its parts, as the parser fills them in.

Pure. Records round-trip through plain dicts (:meth:`LogRecord.to_dict`,
:meth:`LogRecord.from_dict`) for the per-folder scan cache; the config dump is parsed
only when :attr:`LogRecord.config` is asked for.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from planner.spec.units import tqdm_seconds


try:  # libyaml is ~10x faster than the pure-Python loader; fall back when absent.
    YAML_LOADER: Any = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - depends on how PyYAML was built
    YAML_LOADER = yaml.SafeLoader


#: Final states a log can be in.
STATES = ("completed", "oom", "failed", "truncated", "unknown")

#: Probes per long bar line (plus its last update). Lines with up to this many + 2
#: updates are parsed whole. tqdm's rate is already a moving average, so a few probes
#: give a robust median; bounded so a 10,000-step epoch costs what a 50-step one does.
BAR_SAMPLES_PER_LINE = 3

#: Upper bound on stored loss points and speed samples (keeps cached records small).
MAX_SERIES = 16

GIB = 1024**3

def to_float(s: str | bytes | None) -> float | None:
    if s is None:
        return None
    try:
        return float(s)
    except ValueError:
        return None



@dataclass(slots=True)
class BarSample:
    """One sampled tqdm update.

    Attributes:
        epoch: 1-based epoch from the bar description (None on the first, bare print).
        global_step: optimizer steps so far across epochs (None without description).
        loss_raw: loss as printed in the description (converted only when used).
        n: steps done in this epoch.
        total: steps in this epoch (optimizer steps, capped by max_steps_per_epoch).
        elapsed_raw: tqdm's elapsed clock as printed (converted only when used).
        it_per_s: rate as iterations per second (``s/it`` is inverted).
    """

    epoch: int | None
    global_step: int | None
    loss_raw: bytes | None
    n: int
    total: int
    elapsed_raw: bytes
    it_per_s: float | None

    @property
    def loss(self) -> float | None:
        """The loss as a float (None when unreadable)."""
        return to_float(self.loss_raw)

    @property
    def elapsed_s(self) -> float | None:
        """Seconds since the bar started."""
        return tqdm_seconds(self.elapsed_raw.decode("ascii", "replace"))


@dataclass(slots=True)
class CheckpointSave:
    """A checkpoint file torchtune reported saving.

    Attributes:
        kind: ``"model"``, ``"adapter"`` or ``"recipe"``.
        size_gib: file size in GiB as logged (None: newer torchtune logs no size).
        path: path as logged.
        epoch: 0-based epoch from the ``epoch_N`` folder in the path, or from the
            file name (``hf_model_0001_9.pt``, torchtune <= 0.4).
    """

    kind: str
    size_gib: float | None
    path: str
    epoch: int | None


@dataclass
class LogRecord:
    """What one training log says. Every field is optional: logs can be partial.

    Attributes:
        path: where the text came from (informational).
        recipe: recipe class, e.g. ``LoRAFinetuneRecipeSingleDevice``.
        config_text: the YAML of the config dump as logged (not kept in scan caches).
        model_component: ``model._component_``, e.g. ``torchtune.models.llama3_2.lora_llama3_2_1b``.
        batch_size: ``batch_size``.
        gradient_accumulation_steps: ``gradient_accumulation_steps``.
        epochs: configured epochs.
        max_seq_len: ``tokenizer.max_seq_len``.
        packed: ``dataset.packed``.
        dataset_source: ``dataset.source``.
        dataset_data_files: ``dataset.data_files``.
        dataset_split: ``dataset.split``.
        max_steps_per_epoch: ``max_steps_per_epoch``.
        output_dir: ``output_dir``.
        lora_rank: ``model.lora_rank``.
        checkpoint_dir: ``checkpointer.checkpoint_dir`` (the base model's folder).
        peak_rss_gib: the training's peak resident memory, from the supervisor's
            ``plan-experiment: peak memory (RSS) X GiB`` line (CPU jobs' memory).
        device: the config's ``device`` (``cuda``, ``cpu``, ``mps`` ...): what kind of
            device measured the speeds.
        world_size: processes (GPUs) of a distributed run: ``world_size`` or
            ``nproc_per_node`` in the config, the ``plan-experiment: world size N`` and
            ``rank R of N`` lines of train.sh and its processes, else the ranks a launcher
            prefixed lines with; None for a single process. The bar's rate is then per
            global step: each step takes ``batch_size`` samples on every process.
        steps_per_epoch: bar total (optimizer steps per epoch).
        total_steps: highest global step seen.
        epochs_started: highest epoch number seen on a bar (1-based).
        epochs_finished: epochs whose bar reached its total.
        epoch_elapsed_s: bar elapsed time at the last seen update of each epoch.
        speed_samples: sampled rates in it/s, in log order.
        steady_it_per_s: median rate after warm-up.
        tokens_per_second: tokens/s per GPU samples (Step lines, W&B summary).
        tokens_per_second_median: median of ``tokens_per_second``.
        loss: ``(global_step, loss)`` points, bounded, in log order.
        peak_memory_gib: ``{"alloc"|"reserved"|"active": GiB}``, maxima over the log.
        checkpoints: checkpoint saves.
        checkpoint_save_s: ``Checkpoint saved in X seconds`` values.
        wandb: numeric W&B summary values.
        oom: an out-of-memory marker was seen.
        error: last exception line, if a traceback was seen.
        state: one of :data:`STATES`.
        problems: human-readable notes on what could not be parsed.
    """

    path: str | None = None
    recipe: str | None = None
    config_text: str | None = None
    model_component: str | None = None
    batch_size: int | None = None
    gradient_accumulation_steps: int | None = None
    epochs: int | None = None
    max_seq_len: int | None = None
    packed: bool | None = None
    dataset_source: str | None = None
    dataset_data_files: Any = None
    dataset_split: str | None = None
    max_steps_per_epoch: int | None = None
    output_dir: str | None = None
    lora_rank: int | None = None
    checkpoint_dir: str | None = None
    world_size: int | None = None
    device: str | None = None
    steps_per_epoch: int | None = None
    total_steps: int | None = None
    epochs_started: int = 0
    epochs_finished: int = 0
    epoch_elapsed_s: list[float] = field(default_factory=list)
    speed_samples: list[float] = field(default_factory=list)
    steady_it_per_s: float | None = None
    tokens_per_second: list[float] = field(default_factory=list)
    tokens_per_second_median: float | None = None
    loss: list[tuple[int, float]] = field(default_factory=list)
    peak_memory_gib: dict[str, float] = field(default_factory=dict)
    peak_rss_gib: float | None = None
    checkpoints: list[CheckpointSave] = field(default_factory=list)
    checkpoint_save_s: list[float] = field(default_factory=list)
    wandb: dict[str, float] = field(default_factory=dict)
    oom: bool = False
    error: str | None = None
    state: str = "unknown"
    problems: list[str] = field(default_factory=list)

    @property
    def config(self) -> dict[str, Any] | None:
        """The resolved config, parsed with ``yaml.safe_load`` on first use.

        Returns:
            The config mapping, or None when there was no dump, it did not parse (even
            after dropping damaged trailing lines), or the record came from a cache.
        """
        if self.config_text is None:
            return None
        cached = self.__dict__.get("_config_cache", _UNSET)
        if cached is not _UNSET:
            return cached
        cfg = _safe_yaml(self.config_text)
        self.__dict__["_config_cache"] = cfg
        return cfg

    @property
    def finetune_kind(self) -> str | None:
        """``"lora"`` or ``"full"`` from the recipe class or model builder (None: unknown).

        LoRA, QLoRA and DoRA recipes train adapters; ``Full...Recipe`` trains every weight.
        """
        return finetune_kind(self.recipe, self.model_component)

    @property
    def peak_memory(self) -> float | None:
        """The largest peak-memory figure logged (reserved is what the GPU had to hold)."""
        return max(self.peak_memory_gib.values()) if self.peak_memory_gib else None

    @property
    def has_training_data(self) -> bool:
        """Whether the log holds anything an estimate can use."""
        return bool(
            self.recipe or self.speed_samples or self.tokens_per_second or self.checkpoints
        )

    def checkpoint_gib_per_epoch(self) -> float | None:
        """Size written per epoch (model + adapter files; recipe state excluded).

        Returns:
            GiB per epoch, averaged over the epochs seen, or None without checkpoint lines.
        """
        per_epoch: dict[int | None, float] = {}
        for c in self.checkpoints:
            if c.kind != "recipe" and c.size_gib is not None:
                per_epoch[c.epoch] = per_epoch.get(c.epoch, 0.0) + c.size_gib
        if not per_epoch:
            return None
        return sum(per_epoch.values()) / len(per_epoch)

    def to_dict(self, *, with_config: bool = True) -> dict[str, Any]:
        """A JSON-serialisable dict (``from_dict`` reverses it).

        Args:
            with_config: keep ``config_text``; caches leave it out to stay small.

        Returns:
            Field name to value; checkpoints become dicts.
        """
        # Shallow on purpose: dataclasses.asdict deep-copies and is ~10x slower, which
        # shows when 10,000 records are cached.
        d = {name: getattr(self, name) for name in _FIELDS}
        d["checkpoints"] = [
            {"kind": c.kind, "size_gib": c.size_gib, "path": c.path, "epoch": c.epoch}
            for c in self.checkpoints
        ]
        if not with_config:
            d["config_text"] = None
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "LogRecord":
        """Rebuild a record written by :meth:`to_dict`.

        Args:
            data: the dict.

        Returns:
            The record; unknown keys are ignored so older caches still load.
        """
        known = {k: v for k, v in data.items() if k in _FIELDS}
        known["checkpoints"] = [CheckpointSave(**c) for c in known.get("checkpoints") or []]
        known["loss"] = [tuple(p) for p in known.get("loss") or []]
        return cls(**known)


_FIELDS = tuple(LogRecord.__dataclass_fields__)


def finetune_kind(recipe: str | None, model_component: str | None) -> str | None:
    """``"lora"`` for LoRA/QLoRA/DoRA, ``"full"`` for full fine-tunes, None when neither says.

    Args:
        recipe: the recipe class, e.g. ``FullFinetuneRecipeDistributed``.
        model_component: the model builder, e.g. ``torchtune.models.llama3_2.lora_llama3_2_1b``.
    """
    r = (recipe or "").lower()
    if "lora" in r or "dora" in r:
        return "lora"
    if r.startswith("full"):
        return "full"
    leaf = (model_component or "").rsplit(".", 1)[-1].lower()
    if leaf.startswith(("lora_", "qlora_", "dora_")):
        return "lora"
    if leaf:
        return "full"
    return None
_UNSET = object()


def _safe_yaml(text: str) -> dict[str, Any] | None:
    """``yaml.safe_load`` that survives a dump cut short or interleaved with output."""
    try:
        cfg = yaml.load(text, Loader=YAML_LOADER)
    except yaml.YAMLError:
        # Drop lines from the end until it parses, so the keys before the damage count.
        lines = text.split("\n")
        cfg = None
        for cut in range(len(lines) - 1, 0, -max(1, len(lines) // 8)):
            try:
                cfg = yaml.load("\n".join(lines[:cut]), Loader=YAML_LOADER)
                break
            except yaml.YAMLError:
                continue
    return cfg if isinstance(cfg, dict) else None


