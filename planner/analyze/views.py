"""What the figures and the report show, computed without matplotlib: pure.

Levels in reading order and as a reader writes them, model sizes from their names, the
headline's cells, and the best level of a tuned factor per level of another.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from planner.analyze.findings import lower_is_better
from planner.analyze.tables import Analysis, Cell, shown_null


_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([kKmMbBtT])(?![A-Za-z])")
_SCALE = {"k": 1e3, "m": 1e6, "b": 1e9, "t": 1e12}


def parse_params(label: str) -> float | None:
    """Parameter count written in a model's name (``m60M``, ``Llama-3.2-1B``, ``qwen-0.5b``), else None.

    The last size-like token counts: ``Llama-3.2-1B`` is 1e9, not 3.2 of anything.
    """
    found = _SIZE.findall(str(label))
    if not found:
        return None
    number, unit = found[-1]
    return float(number) * _SCALE[unit.lower()]


def level_text(factor: str, value: Any) -> str:
    """A level as a reader writes it: ``all`` for ``train_samples: null``, 5e-05 as ``5e-5``."""
    from planner.spec.knobs import format_number

    return shown_null(factor) if value is None else format_number(value)


def _natural(text: str) -> tuple[Any, ...]:
    """Sort key putting ``rank4`` before ``rank16``: digit runs compare as numbers."""
    return tuple((0, float(p), "") if p[:1].isdigit() else (1, 0.0, p.lower())
                 for p in re.findall(r"\d+(?:\.\d+)?|\D+", text))


def level_key(factor: str, value: Any) -> tuple[Any, ...]:
    """Sort key of a level: numbers numerically (None, i.e. ``all``, last), model sizes by parameters, text naturally."""
    if value is None:
        return (2, 0.0, ())
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (0, float(value), ())
    if factor == "model" and parse_params(str(value)) is not None:
        return (0, parse_params(str(value)) or 0.0, _natural(str(value)))
    return (1, 0.0, _natural(str(value)))


def sorted_levels(factor: str, levels: Iterable[Any]) -> list[Any]:
    """Distinct levels in value order (see :func:`level_key`)."""
    seen: dict[str, Any] = {}
    for v in levels:
        seen.setdefault(repr(v), v)
    return sorted(seen.values(), key=lambda v: level_key(factor, v))


def _higher_is_better(a: Analysis) -> bool:
    for f in a.findings:
        return f.metric.higher_is_better
    return not lower_is_better(a.metric)


def selected_cells(a: Analysis) -> list[Cell]:
    """The headline's fine-tuned cells (one per condition x task; with ``--epoch all``, the last epoch)."""
    index = {c.key: c for c in a.cell_objs}
    out: dict[tuple[str, str], Cell] = {}
    for r in a.headline:
        if r.get("selection") == "base":
            continue
        c = index.get((r["condition"], r["task"], r["epoch"]))
        if c is None or c.summary is None:
            continue
        prev = out.get((c.condition, c.task))
        if prev is None or (c.epoch or 0) >= (prev.epoch or 0):
            out[(c.condition, c.task)] = c
    return list(out.values())


def _varying(cells: Sequence[Cell]) -> list[str]:
    """Factors (model included) with two or more levels among ``cells``, in the cells' order."""
    names: dict[str, set[str]] = {}
    for c in cells:
        for k, v in c.factors.items():
            names.setdefault(k, set()).add(repr(v))
    return [k for k, v in names.items() if len(v) > 1]


def _fixed_text(c: Cell, names: Sequence[str]) -> str:
    return ", ".join(f"{k}={level_text(k, c.factors.get(k))}" for k in names)


@dataclass(frozen=True)
class BestLevel:
    """The best level of a tuned factor at one level of another (e.g. the best learning rate per model size)."""

    task: str
    by: Any
    fixed: str
    level: Any
    mean: float
    ci_low: float | None
    ci_high: float | None
    n_seeds: int
    runner_up: Any
    runner_up_mean: float | None


def best_levels(a: Analysis, tune: str = "learning_rate", by: str = "model") -> list[BestLevel]:
    """For each task, level of ``by`` and combination of the other factors: the ``tune`` level with the best mean."""
    cells = selected_cells(a)
    if tune not in a.sweep_factors or by not in a.sweep_factors:
        return []
    hib = _higher_is_better(a)
    others = [k for k in _varying(cells) if k not in (tune, by)]
    groups: dict[tuple[str, str, str], list[Cell]] = {}
    for c in cells:
        groups.setdefault((c.task, _fixed_text(c, others), repr(c.factors.get(by))), []).append(c)
    out = []
    for (task, fixed, _), group in groups.items():
        ranked = sorted(group, key=lambda c: (c.summary.mean if c.summary else 0.0) * (-1 if hib else 1))
        top = ranked[0]
        second = ranked[1] if len(ranked) > 1 else None
        assert top.summary is not None
        out.append(BestLevel(task, top.factors.get(by), fixed, top.factors.get(tune), top.summary.mean, top.ci[0],
                             top.ci[1], top.summary.n, second.factors.get(tune) if second else None,
                             second.summary.mean if second and second.summary else None))
    out.sort(key=lambda r: (_natural(r.task), _natural(r.fixed), level_key(by, r.by)))
    return out
