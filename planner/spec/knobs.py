"""Run-level knobs: every setting a factor, a paired factor or a control may set.

One table drives spec validation, the wizard's checks, defaults, run naming, the summary's
column labels, the knob table of docs/spec.md (:func:`knob_table`) and which settings the
torchtune config builder accepts, so a new knob is one entry here (and one line where the
config builder puts it).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Callable


def format_number(value: Any) -> str:
    """Format a number compactly as researchers write it: 1e-05 -> 1e-5, 0.0001 -> 1e-4."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value == 0:
            return "0"
        if abs(value) < 1e-3 or abs(value) >= 1e5:
            mantissa, exp = f"{value:.6e}".split("e")
            mantissa = mantissa.rstrip("0").rstrip(".")
            return f"{mantissa}e{int(exp)}"
        return f"{value:g}"
    return str(value)


def _positive_int(v: Any) -> str | None:
    if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
        return "must be a positive whole number"
    return None


def _nonneg_int(v: Any) -> str | None:
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        return "must be a whole number >= 0"
    return None


def _number(v: Any) -> bool:
    """A real, finite number (true/false, NaN and infinities are not)."""
    return not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v)


def _positive_number(v: Any) -> str | None:
    if not _number(v) or v <= 0:
        return "must be a finite number > 0"
    return None


def _nonneg_number(v: Any) -> str | None:
    if not _number(v) or v < 0:
        return "must be a finite number >= 0"
    return None


def _fraction(v: Any) -> str | None:
    if not _number(v) or not 0 <= v < 1:
        return "must be a number in [0, 1)"
    return None


def _boolean(v: Any) -> str | None:
    return None if isinstance(v, bool) else "must be true or false"


def _text(v: Any) -> str | None:
    return None if isinstance(v, str) else "must be text"


def _prompt(v: Any) -> str | None:
    if not isinstance(v, str):
        return "must be text"
    if "{input}" not in v:
        return "must contain the placeholder {input} where the example goes"
    return None


def _optional_positive_int(v: Any) -> str | None:
    return None if v is None else _positive_int(v)


@dataclass(frozen=True)
class Knob:
    """One run-level setting.

    Attributes:
        name: The key in ``factors``, ``paired`` and ``controls``.
        check: Returns a problem description for a bad value, None for a good one.
        default: The value a run gets when the spec does not set the knob.
        label: How the knob appears in run names: label + value, e.g. ``rank4``.
        column: The column title in the All Runs table.
        help: What the knob means (the docs' knob table and the wizard show it).
        config: Where the knob lands in ``finetune.yaml`` as a dotted path, or None for
            a knob that only shapes the plan (none does today; the docs' table says which).
        shown_default: How the docs show the default when the value alone says too little.
    """

    name: str
    check: Callable[[Any], str | None]
    default: Any
    label: str
    column: str
    help: str
    config: str | None
    shown_default: str | None = None


KNOBS: dict[str, Knob] = {
    k.name: k
    for k in [
        Knob("lora_rank", _positive_int, 8, "rank", "LoRA Rank", "LoRA rank r", "model.lora_rank"),
        Knob("lora_alpha", _positive_number, None, "alpha", "LoRA Alpha", "LoRA alpha", "model.lora_alpha",
             shown_default="2 x rank"),
        Knob("lora_dropout", _fraction, 0.0, "drop", "LoRA Dropout", "dropout on the LoRA path", "model.lora_dropout"),
        Knob("learning_rate", _positive_number, 3e-4, "lr", "LR",
             "peak learning rate (`1e-5` is read as a number even though YAML 1.1 calls it text)", "optimizer.lr"),
        Knob("batch_size", _positive_int, 4, "bs", "Batch Size", "examples per device per step", "batch_size"),
        Knob("gradient_accumulation_steps", _positive_int, 1, "ga", "Grad Accum", "micro-batches per optimizer step",
             "gradient_accumulation_steps"),
        Knob("epochs", _positive_int, 1, "ep", "Epochs", "passes over the training split", "epochs"),
        Knob("train_samples", _optional_positive_int, None, "n", "Train Samples",
             "first N training examples (dataset-size sweeps)", "dataset.split", shown_default="all"),
        Knob("max_seq_len", _positive_int, 2048, "seq", "Max Seq Len",
             "tokens per example (or per pack); capped at the model's maximum", "tokenizer.max_seq_len"),
        Knob("packed", _boolean, False, "packed", "Packed", "pack examples into `max_seq_len` sequences", "dataset.packed"),
        Knob("weight_decay", _nonneg_number, 0.01, "wd", "Weight Decay", "AdamW weight decay", "optimizer.weight_decay"),
        Knob("num_warmup_steps", _nonneg_int, 100, "warm", "Warmup Steps", "linear warm-up steps of the cosine schedule",
             "lr_scheduler.num_warmup_steps"),
        Knob("max_steps_per_epoch", _optional_positive_int, None, "steps", "Max Steps/Epoch",
             "cap on optimizer steps per epoch", "max_steps_per_epoch", shown_default="none"),
        Knob("system_prompt", _text, "", "sys", "System Prompt", "system prompt, identical in training and evaluation",
             "dataset.new_system_prompt", shown_default='`""`'),
        Knob("prompt", _prompt, "{input}", "prompt", "Prompt", "template wrapping each input; must contain `{input}`",
             "tokenizer.prompt", shown_default="`{input}`"),
    ]
}

# Knobs whose values are text: in run names they are numbered by level, not spelled out.
TEXT_KNOBS = {"system_prompt", "prompt"}


_FLOAT_TEXT = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
_NUMBER_KNOBS = {"lora_alpha", "lora_dropout", "learning_rate", "weight_decay"}


def coerce_knob(name: str, value: Any) -> Any:
    """Read numbers YAML 1.1 leaves as text: PyYAML loads ``1e-5`` (no dot) as a string."""
    if name in _NUMBER_KNOBS and isinstance(value, str) and _FLOAT_TEXT.match(value.strip()):
        return float(value)
    return value


def check_knob(name: str, value: Any) -> str | None:
    """Return a problem description for ``value`` of knob ``name``, or None when it is valid."""
    knob = KNOBS.get(name)
    if knob is None:
        return "unknown knob"
    return knob.check(value)


def name_part(name: str, value: Any, level_index: int) -> str:
    """The fragment a knob contributes to a run name, e.g. ``rank4`` or ``lr1e-5``."""
    knob = KNOBS[name]
    if name in TEXT_KNOBS:
        return f"{knob.label}{level_index + 1}"
    if name == "packed":
        return "packed" if value else "unpacked"
    if value is None:
        return f"{knob.label}all"
    return f"{knob.label}{format_number(value)}"


def _shown_label(knob: Knob) -> str:
    if knob.name in TEXT_KNOBS:
        return f"`{knob.label}1`, `{knob.label}2`, ..."
    if knob.name == "packed":
        return "`packed`/`unpacked`"
    return f"`{knob.label}`"


def knob_table() -> str:
    """The knob table of docs/spec.md, rendered from :data:`KNOBS` (a test keeps them equal)."""
    lines = ["| knob | default | label | meaning | in `finetune.yaml` |", "|---|---|---|---|---|"]
    for knob in KNOBS.values():
        default = knob.shown_default if knob.shown_default is not None else format_number(knob.default)
        target = f"`{knob.config}`" if knob.config else "plan only"
        lines.append(f"| `{knob.name}` | {default} | {_shown_label(knob)} | {knob.help} | {target} |")
    return "\n".join(lines) + "\n"
