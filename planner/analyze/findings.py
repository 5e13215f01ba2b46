"""Findings: the claims a report makes, each a paired test adjusted over its family. Pure.

Three kinds, all at the headline's epoch choice:

- ``vs base``: each fine-tuned condition against its model's base-model control on a task
  (improved, forgetting, or no detectable change);
- ``contrast``: for each factor with two or more levels, every pair of its levels with the
  other factors held fixed (paired per example within a seed, then combined over seeds);
- ``trend``: for a numeric factor with three or more levels, the least-squares slope of the
  metric on the level (on log2 of it when the levels span a factor of 4 or more).

The p-values of every finding are adjusted together (Holm by default, Benjamini-Hochberg
on request): that family is what the Results block and the report show. A verdict needs an
adjusted p below alpha; the relative-change thresholds are a *practical* bar on top.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np

from planner.analyze.inference import ALPHA, CORRECTION, Correction, Tested, adjust, paired_test
from planner.analyze.observe import Examples, align

Kind = Literal["vs base", "contrast", "trend", "main effect", "interaction"]

#: Metric names whose smaller values are better, when a task does not declare its metrics.
LOWER_IS_BETTER = ("loss", "perplexity", "ppl", "error", "wer", "cer", "nll", "ece")


def lower_is_better(name: str) -> bool:
    """The documented default direction of a metric name (docs/analysis.md)."""
    lowered = name.lower()
    return any(lowered == w or lowered.endswith(("_" + w, "-" + w)) or lowered.startswith(w + "_") for w in LOWER_IS_BETTER)


@dataclass(frozen=True)
class MetricInfo:
    """How a metric reads: its direction and whether it is a share in [0, 1]."""

    name: str
    higher_is_better: bool = True
    bounded: bool = True


@dataclass(frozen=True)
class Policy:
    """What makes a finding: the practical bar (percent of the reference), the level and the correction.

    A drop of at least ``mild_pct`` is ``mild`` forgetting, of at least ``severe_pct``
    ``severe``, a gain of at least ``mild_pct`` ``improved`` (smaller significant changes are
    ``negligible``), and only when the adjusted p is below ``alpha``.
    """

    mild_pct: float = 5.0
    severe_pct: float = 20.0
    alpha: float = ALPHA
    correction: Correction = CORRECTION


@dataclass
class Side:
    """One side of a comparison: per-seed per-example values, as the cell holds them."""

    label: str
    mean: float | None
    seeds: list[Any]
    examples: list[Examples | None]
    aggregates: list[float]


@dataclass
class Finding:
    """One tested claim.

    Attributes:
        kind: ``vs base``, ``contrast`` or ``trend``.
        factor: the factor compared (``fine-tuning`` for vs base).
        task, epoch: where.
        a, b: what is compared (A against B); for a trend, the factor's lowest and highest level.
        fixed: the other factors' levels, as text.
        a_mean, b_mean: the two means (seeds averaged).
        tested: the paired test, or None when it cannot be made.
        note: why it was not tested, or how the examples were paired.
        metric: the metric's direction and range.
        p_adjusted: p after the family's correction.
        verdict: the claim.
    """

    kind: Kind
    factor: str
    task: str
    epoch: str
    a: str
    b: str
    fixed: str
    a_mean: float | None
    b_mean: float | None
    tested: Tested | None
    note: str | None
    metric: MetricInfo
    p_adjusted: float | None = None
    verdict: str = "untested"
    scale: str = ""

    @property
    def rel_pct(self) -> float | None:
        """The effect in percent of B's mean (None when B's mean is 0 or unknown)."""
        if self.tested is None or not self.b_mean or self.kind in ("trend", "interaction"):
            return None
        return self.tested.effect / abs(self.b_mean) * 100


def _paired(a: Side, b: Side, metric: str) -> tuple[np.ndarray, np.ndarray, bool, str] | str:
    """A's and B's per-example matrices on the same examples in the same order, or why not."""
    if any(e is None for e in a.examples + b.examples):
        return "no per-example outcomes (predictions.jsonl)"
    first = b.examples[0]
    assert first is not None
    how = set()
    rows_a: list[list[float]] = []
    rows_b: list[list[float]] = []
    for side, rows in ((a, rows_a), (b, rows_b)):
        for ex, agg in zip(side.examples, side.aggregates):
            assert ex is not None
            paired = align(first, ex)
            if isinstance(paired, str):
                return paired + f" ({side.label} against {b.label})"
            _, idx, way = paired
            if way != "position" or ex is not first:
                how.add(way)
            values = ex.metric(metric, agg)
            if values is None:
                return f"no per-example values of {metric!r} in predictions.jsonl"
            rows.append([values[i] for i in idx])
    same = a.seeds == b.seeds and len(a.seeds) == len(b.seeds)
    return np.array(rows_a, dtype=float), np.array(rows_b, dtype=float), same, ", ".join(sorted(how)) or "position"


def _note(reason: str) -> str:
    """A finding's note for why it is not tested: a refusal as it is, anything else as ``untested: ...``."""
    return reason if reason.startswith("refused") else f"untested: {reason}"


def compare(kind: Kind, factor: str, task: str, epoch: str, a: Side, b: Side, fixed: str, metric: MetricInfo,
            key: str) -> Finding:
    """One finding of A against B (not yet adjusted)."""
    paired = _paired(a, b, metric.name)
    if isinstance(paired, str):
        return Finding(kind, factor, task, epoch, a.label, b.label, fixed, a.mean, b.mean, None, _note(paired),
                       metric)
    ma, mb, same, how = paired
    tested = paired_test(ma, mb, key, same)
    return Finding(kind, factor, task, epoch, a.label, b.label, fixed, a.mean, b.mean, tested,
                   None if how == "position" else f"paired by {how}", metric)


def trend(factor: str, task: str, epoch: str, levels: list[tuple[float, Side]], fixed: str, metric: MetricInfo,
          key: str) -> Finding:
    """The least-squares slope of the metric on a numeric factor's levels (per doubling on a log scale)."""
    xs = [x for x, _ in levels]
    log = min(xs) > 0 and max(xs) / min(xs) >= 4
    pos = np.log2(xs) if log else np.array(xs, dtype=float)
    c = pos - pos.mean()
    sides = [s for _, s in levels]
    ref = sides[0]
    lo_label, hi_label = sides[0].label, sides[-1].label
    means = [s.mean for s in sides]
    base = Finding("trend", factor, task, epoch, hi_label, lo_label, fixed, means[-1], means[0], None, None, metric,
                   scale="per doubling" if log else "per unit")
    per_level = []
    for s in sides:
        paired = _paired(s, ref, metric.name)
        if isinstance(paired, str):
            base.note = _note(paired)
            return base
        per_level.append(paired[0].mean(axis=0))  # per example, seeds averaged
    t = (c[:, None] * np.array(per_level)).sum(axis=0) / float((c * c).sum())
    base.tested = paired_test(t[None, :], np.zeros((1, len(t))), key, True, mcnemar=False)
    return base


def per_example(side: Side, ref: Examples, metric: str) -> np.ndarray | str:
    """A side's per-example values averaged over its seeds, in ``ref``'s example order; or why not."""
    rows = []
    for ex, agg in zip(side.examples, side.aggregates):
        if ex is None:
            return "no per-example outcomes (predictions.jsonl)"
        paired = align(ref, ex)
        if isinstance(paired, str):
            return paired
        values = ex.metric(metric, agg)
        if values is None:
            return f"no per-example values of {metric!r} in predictions.jsonl"
        rows.append([values[i] for i in paired[1]])
    if not rows:
        return "no results"
    return np.array(rows, dtype=float).mean(axis=0)


def factorial(kind: Kind, factor: str, task: str, epoch: str, a: str, b: str, a_mean: float | None,
              b_mean: float | None, terms: list[tuple[float, list[Side]]], metric: MetricInfo, key: str) -> Finding:
    """A main effect or interaction: the per-example sum of ``weight x mean of the sides``, tested against 0.

    Each term's sides are conditions (one per combination of the other factors) whose
    seed-averaged per-example values are averaged, so the interval is over examples of
    seed means.
    """
    f = Finding(kind, factor, task, epoch, a, b, "averaged over the other factors", a_mean, b_mean, None, None,
                metric)
    ref = next((s.examples[0] for _, sides in terms for s in sides if s.examples and s.examples[0] is not None), None)
    if ref is None:
        f.note = "untested: no per-example outcomes (predictions.jsonl)"
        return f
    total = np.zeros(len(ref))
    for weight, sides in terms:
        vectors = []
        for s in sides:
            v = per_example(s, ref, metric.name)
            if isinstance(v, str):
                f.note = _note(v)
                return f
            vectors.append(v)
        total += weight * np.mean(vectors, axis=0)
    tested = paired_test(total[None, :], np.zeros((1, len(total))), key, True, mcnemar=False)
    f.tested = replace(tested, ci_basis="examples (seed means)", n_seeds=len(terms[0][1][0].seeds))
    return f


def verdict(f: Finding, policy: Policy) -> str:
    """The claim a finding supports: gated on the adjusted p, then on the practical bar."""
    if f.tested is None or f.p_adjusted is None:
        return "untested"
    effect = f.tested.effect
    better = effect > 0 if f.metric.higher_is_better else effect < 0
    if f.kind == "interaction":
        if f.p_adjusted >= policy.alpha or effect == 0:
            return "no detectable interaction"
        return "interaction"
    if f.kind in ("contrast", "main effect"):
        if f.p_adjusted >= policy.alpha or effect == 0:
            return "no detectable difference"
        return f"{f.a if better else f.b} better"
    if f.kind == "trend":
        if f.p_adjusted >= policy.alpha or effect == 0:
            return "no detectable trend"
        return "better with higher levels" if better else "worse with higher levels"
    if f.p_adjusted >= policy.alpha or effect == 0:
        return "no detectable change"
    rel = f.rel_pct
    size = math.inf if rel is None else abs(rel)
    if better:
        return "improved" if size >= policy.mild_pct else "negligible"
    if size >= policy.severe_pct:
        return "severe"
    return "mild" if size >= policy.mild_pct else "negligible"


def settle(findings: list[Finding], policy: Policy) -> list[Finding]:
    """Adjust every tested finding's p over the family and give each its verdict (in place)."""
    tested = [f for f in findings if f.tested is not None]
    for f, p in zip(tested, adjust([f.tested.p for f in tested if f.tested is not None], policy.correction)):
        f.p_adjusted = p
    for f in findings:
        f.verdict = verdict(f, policy)
    return findings


_WORDS = {"model": ("model", "models", "size", "sizes", "scale"), "learning_rate": ("learning", "lr", "rate"),
          "lora_rank": ("rank", "ranks"), "train_samples": ("samples", "data", "dataset", "examples"),
          "epochs": ("epoch", "epochs")}


def question_factors(question: str, factors: list[str]) -> tuple[list[str], bool]:
    """The factors a question names (by their words), else every swept factor; and whether any was named."""
    text = "".join(ch if ch.isalnum() else " " for ch in question.lower()).split()
    words = set(text)
    named = []
    for f in factors:
        keys = _WORDS.get(f, tuple(w for w in f.lower().split("_") if len(w) >= 3))
        if f.lower() in words or any(k in words for k in keys):
            named.append(f)
    return (named, True) if named else (list(factors), False)


__all__ = ["Finding", "MetricInfo", "Policy", "Side", "compare", "lower_is_better", "question_factors",
           "settle", "trend", "verdict"]
