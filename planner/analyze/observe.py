"""What the run folders say, as plain data, and the pure parsing behind it.

:mod:`planner.analyze.collect` reads the files; everything here takes text or data
and returns data, so the analysis can be tested on hand-made observations.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from planner.spec.runs import Evaluation, Run

#: Evaluation states in evals.csv.
PRESENT, MISSING, FAILED = "present", "missing", "failed"

# torchtune's DiskLogger writes one line per step: "Step N | loss:X lr:Y tokens_per_second_per_gpu:Z ".
_STEP_LINE = re.compile(r"^Step (\d+) \| (.*)$")


@dataclass(frozen=True)
class LossPoint:
    """One optimizer step of torchtune's per-step metric log."""

    step: int
    loss: float | None
    lr: float | None
    tokens_per_s: float | None


@dataclass(frozen=True)
class RunObs:
    """One planned run as its folder shows it.

    Attributes:
        run: the planned run.
        state: job state (job-state.json, else the status cache, else the journal).
        wall_s: the training job's wall seconds (job-state.json).
        predicted_s: predicted training seconds (estimates.json).
        configured_steps: optimizer steps the plan implies (dataset size, batch, epochs).
        steps_per_epoch: optimizer steps per epoch, from the training log's progress bar.
        log_config: the training log's config dump, parsed; None without a log.
        loss: the newest per-step metric log, in step order.
        metric_log: that log's path relative to the experiment (None when there is none).
        peak_memory_gib: highest peak memory the training log reports.
    """

    run: Run
    state: str = "NOT_SUBMITTED"
    wall_s: float | None = None
    predicted_s: float | None = None
    configured_steps: int | None = None
    steps_per_epoch: int | None = None
    log_config: dict[str, Any] | None = None
    loss: tuple[LossPoint, ...] = ()
    metric_log: str | None = None
    peak_memory_gib: float | None = None


_UNSEEN: Any = object()


@dataclass(frozen=True)
class Examples:
    """The per-example records of one evaluation (predictions.jsonl), for paired tests.

    Attributes:
        ids: each record's ``id`` when every record has one (the pairing key of choice), else None.
        texts: each record's input and target joined, the key of last resort.
        values: per-example numbers by field name (``correct`` as 0/1, and any other numeric field).
    """

    ids: tuple[str, ...] | None
    texts: tuple[str, ...]
    values: dict[str, tuple[float, ...]]

    def __len__(self) -> int:
        return len(self.texts)

    def metric(self, name: str, aggregate: float | None) -> tuple[float, ...] | None:
        """Per-example values of the metric ``name``: its own field, else ``correct`` when it averages to it.

        ``aggregate`` is the evaluation's value of the metric (results.json): ``correct``
        stands for a metric only when its mean is that value, so an ``f1`` or ``bleu``
        headline is never tested on exact-match outcomes.
        """
        own = self.values.get(name)
        if own is not None:
            return own
        correct = self.values.get("correct")
        if correct is None or aggregate is None or not correct:
            return None
        return correct if abs(sum(correct) / len(correct) - aggregate) <= 1e-9 else None


def align(a: Examples, b: Examples) -> tuple[list[int], list[int], str] | str:
    """Pair the examples of two evaluations: by id, else by position, else by input and target.

    Returns:
        ``(indices into a, indices into b, how)``, or the reason they cannot be paired.
    """
    if a.ids is not None and b.ids is not None:
        if len(set(a.ids)) != len(a.ids) or len(set(b.ids)) != len(b.ids):
            return "refused: repeated example ids in predictions.jsonl"
        if set(a.ids) != set(b.ids):
            return f"refused: the example ids differ ({len(set(a.ids) ^ set(b.ids))} not in both)"
        at = {k: i for i, k in enumerate(b.ids)}
        return list(range(len(a.ids))), [at[k] for k in a.ids], "id"
    if a.texts == b.texts:
        return list(range(len(a))), list(range(len(b))), "position"
    # The same examples in another order: the k-th occurrence of an input and target pairs with its k-th.
    slots: dict[str, list[int]] = {}
    for i, t in enumerate(b.texts):
        slots.setdefault(t, []).append(i)
    seen: dict[str, int] = {}
    ib: list[int] = []
    for t in a.texts:
        k = seen.get(t, 0)
        where = slots.get(t)
        if where is None or k >= len(where):
            return "refused: the evaluated inputs differ"
        ib.append(where[k])
        seen[t] = k + 1
    if len(ib) != len(b.texts):
        return "refused: the evaluated inputs differ"
    return list(range(len(a))), ib, "input and target"


@dataclass(frozen=True)
class EvalObs:
    """One planned evaluation as its folder shows it.

    Attributes:
        evaluation: the planned evaluation.
        split: the split the plan evaluates.
        status: ``present`` (results.json there), ``failed`` (its job failed and left
            none) or ``missing``.
        results: results.json, parsed.
        examples: per-example records (predictions.jsonl), or None without a readable one.
        folder: the evaluation folder relative to the experiment.
    """

    evaluation: Evaluation
    split: str = "test"
    status: str = MISSING
    results: dict[str, Any] | None = None
    examples: Examples | None = None
    folder: str = ""
    # Metric values already looked up: every table asks for the same few, 10,000 times over.
    _values: dict[str, float | None] = field(default_factory=dict, compare=False, repr=False)

    def value(self, metric: str) -> float | None:
        """``metric_value`` of this evaluation's results (None without results)."""
        value = self._values.get(metric, _UNSEEN)
        if value is _UNSEEN:
            value = self._values[metric] = metric_value(self.results, metric) if self.results is not None else None
        return value  # type: ignore[return-value]


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def parse_metric_log(text: str) -> list[LossPoint]:
    """Parse torchtune's DiskLogger text into points, one per step (a repeated step keeps its last line)."""
    points: dict[int, LossPoint] = {}
    for line in text.splitlines():
        m = _STEP_LINE.match(line.strip())
        if not m:
            continue
        values: dict[str, float | None] = {}
        for item in m.group(2).split():
            name, _, raw = item.partition(":")
            values[name] = _number(raw)
        step = int(m.group(1))
        points[step] = LossPoint(step, values.get("loss"), values.get("lr"), values.get("tokens_per_second_per_gpu"))
    return [points[s] for s in sorted(points)]


def configured_steps(settings: dict[str, Any], n_train: int | None) -> int | None:
    """Optimizer steps the plan implies, the way torchtune's LoRA recipes count them.

    The dataloader drops the last partial batch, gradient accumulation divides the
    batches, and ``max_steps_per_epoch`` caps each epoch.
    """
    if n_train is None:
        return None
    samples = settings.get("train_samples")
    n = min(n_train, int(samples)) if samples is not None else n_train
    per_epoch = (n // int(settings["batch_size"])) // int(settings.get("gradient_accumulation_steps") or 1)
    cap = settings.get("max_steps_per_epoch")
    if cap is not None:
        per_epoch = min(per_epoch, int(cap))
    return per_epoch * int(settings["epochs"])


def _get(cfg: dict[str, Any], path: str) -> Any:
    node: Any = cfg
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return _ABSENT
        node = node[part]
    return node


_ABSENT = object()

# Knob -> where torchtune's config dump holds it, and how the planned value is written there.
_CONFIG_PATHS: dict[str, tuple[str, Any]] = {
    "lora_rank": ("model.lora_rank", int),
    "lora_alpha": ("model.lora_alpha", float),
    "learning_rate": ("optimizer.lr", float),
    "weight_decay": ("optimizer.weight_decay", float),
    "batch_size": ("batch_size", int),
    "gradient_accumulation_steps": ("gradient_accumulation_steps", int),
    "epochs": ("epochs", int),
    "max_steps_per_epoch": ("max_steps_per_epoch", int),
    "num_warmup_steps": ("lr_scheduler.num_warmup_steps", int),
    "seed": ("seed", int),
    "train_samples": ("dataset.split", None),
}


def _same(planned: Any, logged: Any) -> bool:
    if isinstance(planned, float) or isinstance(logged, float):
        try:
            return math.isclose(float(planned), float(logged), rel_tol=1e-9, abs_tol=0.0)
        except (TypeError, ValueError):
            return False
    return bool(planned == logged)


def config_mismatches(settings: dict[str, Any], log_config: dict[str, Any] | None) -> list[str]:
    """Settings whose value in the training log's config dump differs from the plan.

    Only keys the dump holds are compared (a log from an older recipe may lack some).

    Returns:
        One ``knob: planned X, log Y`` string per difference, in knob order.
    """
    if not log_config:
        return []
    out: list[str] = []
    for knob, (path, cast) in _CONFIG_PATHS.items():
        if knob not in settings:
            continue
        logged = _get(log_config, path)
        if logged is _ABSENT:
            continue
        planned = settings[knob]
        if knob == "train_samples":
            expected: Any = "train" if planned is None else f"train[:{int(planned)}]"
        elif planned is None:
            expected = None
        else:
            try:
                expected = cast(planned)
            except (TypeError, ValueError):
                expected = planned
        if not _same(expected, logged):
            out.append(f"{knob}: planned {expected}, log {logged}")
    return out


def metric_value(results: dict[str, Any], metric: str) -> float | None:
    """A metric of results.json: ``metrics[name]``, else a top-level number of that name."""
    metrics = results.get("metrics")
    value = metrics.get(metric) if isinstance(metrics, dict) else None
    if value is None:
        value = results.get(metric)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)
