"""The analysis tables, built from observations: pure (data in, pandas frames out).

Rows follow the plan's order (models, paired levels, factors as written, seeds, then
base controls), so the same folder always gives the same files. Every column is
described in docs/analysis.md.
"""

from __future__ import annotations

import csv
import io
import statistics
from functools import cached_property, lru_cache
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

import pandas as pd

from planner.analyze.observe import FAILED, MISSING, PRESENT, EvalObs, RunObs, config_mismatches
from planner.analyze.stats import Summary, mcnemar_exact, summarize, wilson
from planner.spec.runs import Plan, Run, model_label

EpochChoice = Literal["last", "best", "all"]
Flag = Literal["improved", "none", "mild", "severe"]


@dataclass(frozen=True)
class Thresholds:
    """Relative changes (percent of the base value) that set a delta's flag.

    A drop of at least ``mild_pct`` is ``mild`` forgetting, of at least ``severe_pct``
    ``severe``; a gain of at least ``mild_pct`` is ``improved``; anything smaller is
    ``none``. The defaults put a -8.0 % drop at mild and a -26.7 % drop at severe.
    """

    mild_pct: float = 5.0
    severe_pct: float = 20.0


def flag_for(base: float, value: float, th: Thresholds) -> Flag:
    """The flag of one change from ``base`` to ``value`` (higher is better)."""
    if base == 0:
        # No relative change exists from zero; any gain counts, nothing can be lost.
        return "improved" if value > 0 else "none"
    # Rounded so that a drop of exactly the threshold (0.4 against 0.5) is not lost to 1e-15.
    rel = round((value - base) / abs(base) * 100, 9)
    if rel <= -th.severe_pct:
        return "severe"
    if rel <= -th.mild_pct:
        return "mild"
    if rel >= th.mild_pct:
        return "improved"
    return "none"


def condition_of(run: Run) -> str:
    """A run's condition: its name without the replicate seed."""
    suffix = f"_seed{run.seed}"
    return run.name[: -len(suffix)] if run.seed is not None and run.name.endswith(suffix) else run.name


@lru_cache(maxsize=4096)
def _label(model: str) -> str:
    # model_label builds a PurePath: cached, since thousands of runs share a few models.
    return model_label(model)


def factor_values(run: Run) -> dict[str, Any]:
    """What varies between conditions: the model and every factor (paired ones included)."""
    return {"model": _label(run.model), **run.factors}


class Table:
    """One analysis table: its columns, its rows as written, and (on first use) a pandas frame.

    The CSV is written from ``rows`` directly (the csv module writes None as an empty
    field), and the frame is built only when a plot or a summary asks for it: passes
    through pandas were most of the time of analysing 10,000 evaluations. The frame has
    object columns, so ints, bools and floats stay as they are.
    """

    def __init__(self, columns: list[str], rows: list[list[Any]]) -> None:
        self.columns = columns
        self.rows = rows

    @cached_property
    def frame(self) -> pd.DataFrame:
        """The table as a DataFrame."""
        return pd.DataFrame(self.rows, columns=self.columns, dtype=object)

    def column(self, name: str) -> list[Any]:
        """One column's values, without building the frame."""
        i = self.columns.index(name)
        return [row[i] for row in self.rows]


def csv_body(rows: Iterable[list[Any]]) -> bytes:
    """Rows as UTF-8 CSV: '\\n' line ends, floats as Python prints them (shortest exact), None as an empty field."""
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)  # the csv module writes None as an empty field
    return buf.getvalue().encode()


def csv_text(table: Table) -> bytes:
    """A table as a CSV file's bytes: its header, then its rows."""
    return csv_body([table.columns]) + csv_body(table.rows)


def _frame(rows: list[dict[str, Any]], columns: list[str]) -> Table:
    template = dict.fromkeys(columns)
    # A copy of the ordered template updated with the row: its values are the row in column order.
    return Table(columns, [list({**template, **row}.values()) for row in rows])


def _round(value: float | None, digits: int = 6) -> float | None:
    return None if value is None else round(value, digits)


@dataclass
class Cell:
    """One condition x task x epoch across its replicate seeds."""

    condition: str
    model: str
    kind: str
    factors: dict[str, Any]
    task: str
    epoch: int | None
    split: str
    planned: list[str] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    present_runs: list[str] = field(default_factory=list)
    summary: Summary | None = None

    @property
    def complete(self) -> bool:
        """Every planned seed has a value."""
        return len(self.values) == len(self.planned)

    @property
    def key(self) -> tuple[str, str, int | None]:
        """(condition, task, epoch)."""
        return (self.condition, self.task, self.epoch)


@dataclass
class Analysis:
    """Every table of one analysis, plus what the report and the Results block need.

    Attributes:
        tables: the tables held in memory: runs, deltas, sweeps and loss.
        csv: every table's CSV file (UTF-8 bytes), by table name.
        run_states: ``(run, is a base control, job state)`` of every planned run, in plan order.
        statuses: ``(evaluation key, run, status)`` of every planned evaluation, in plan order.
        metrics_present: the metric names evals.csv has for evaluations with results.
    """

    metric: str
    epoch_choice: EpochChoice
    thresholds: Thresholds
    tables: dict[str, "Table"]
    csv: dict[str, bytes]
    cell_objs: list[Cell]
    headline: list[dict[str, Any]]
    incomplete: list[str]
    sweep_factors: list[str]
    task_splits: dict[str, str]
    run_states: list[tuple[str, bool, str]] = field(default_factory=list)
    statuses: list[tuple[str, str, str]] = field(default_factory=list)
    metrics_present: set[str] = field(default_factory=set)

    @property
    def n_planned(self) -> int:
        """Planned evaluations."""
        return len(self.statuses)

    @property
    def n_present(self) -> int:
        """Planned evaluations with results.json."""
        return sum(1 for _, _, status in self.statuses if status == PRESENT)

    @property
    def missing_or_failed(self) -> list[str]:
        """Planned evaluations without results.json, by key (for ``--strict``)."""
        return [key for key, _, status in self.statuses if status in (MISSING, FAILED)]

    @property
    def runs(self) -> pd.DataFrame:
        """runs.csv as a frame."""
        return self.tables["runs"].frame

    @property
    def cells(self) -> pd.DataFrame:
        """cells.csv as a frame."""
        return cells_frame(self.cell_objs).frame

    @property
    def deltas(self) -> pd.DataFrame:
        """deltas.csv as a frame."""
        return self.tables["deltas"].frame

    @property
    def sweeps(self) -> pd.DataFrame:
        """sweeps.csv as a frame."""
        return self.tables["sweeps"].frame

    @property
    def loss(self) -> pd.DataFrame:
        """loss.csv as a frame."""
        return self.tables["loss"].frame


RUN_COLUMNS = [
    "run", "condition", "kind", "model", "factors", "seed", "state", "wall_s", "predicted_s",
    "configured_steps", "actual_steps", "final_loss", "min_loss", "median_tokens_per_s", "peak_memory_gib",
    "config_mismatch", "mismatch_detail", "metric_log",
]


def _factor_text(factors: dict[str, Any]) -> str:
    return "; ".join(f"{k}={v}" for k, v in factors.items())


def runs_frame(runs: list[RunObs]) -> Table:
    """runs.csv: one row per planned run (base controls train nothing)."""
    rows = []
    for o in runs:
        r = o.run
        losses = [p.loss for p in o.loss if p.loss is not None]
        tps = [p.tokens_per_s for p in o.loss if p.tokens_per_s is not None]
        mismatches = [] if r.is_base else config_mismatches(r.settings, o.log_config)
        rows.append({
            "run": r.name, "condition": condition_of(r), "kind": r.kind, "model": _label(r.model),
            "factors": _factor_text(r.factors), "seed": r.seed, "state": o.state,
            "wall_s": _round(o.wall_s, 3), "predicted_s": _round(o.predicted_s, 3),
            "configured_steps": o.configured_steps if not r.is_base else None,
            "actual_steps": max((p.step for p in o.loss), default=None),
            "final_loss": losses[-1] if losses else None, "min_loss": min(losses) if losses else None,
            "median_tokens_per_s": _round(statistics.median(tps), 3) if tps else None,
            "peak_memory_gib": o.peak_memory_gib,
            "config_mismatch": None if r.is_base or o.log_config is None else bool(mismatches),
            "mismatch_detail": "; ".join(mismatches) or None, "metric_log": o.metric_log,
        })
    return _frame(rows, RUN_COLUMNS)


EVAL_COLUMNS = [
    "run", "condition", "task", "epoch", "split", "metric", "status", "n", "value", "ci_low", "ci_high",
    "duration_s", "adapter_sha256", "folder",
]


def _metrics_of(o: EvalObs, chosen: str) -> list[str]:
    assert o.results is not None
    metrics = o.results.get("metrics")
    names = {k for k in metrics if o.value(k) is not None} if isinstance(metrics, dict) else set()
    if o.value(chosen) is not None:
        names.add(chosen)
    return sorted(names)


def proportion_interval(value: float, n: Any) -> tuple[float | None, float | None]:
    """Wilson 95 % interval when ``value`` is a share of ``n`` examples (k / n exactly); else none."""
    if isinstance(n, bool) or not isinstance(n, int) or n <= 0 or not 0.0 <= value <= 1.0:
        return None, None
    return _wilson_of(value, n)


@lru_cache(maxsize=65536)
def _wilson_of(value: float, n: int) -> tuple[float | None, float | None]:
    # Cached: evaluations share a handful of (value, n) pairs, and every metric of one
    # evaluation often repeats the headline value.
    k = round(value * n)
    if abs(k / n - value) > 1e-9:
        return None, None
    lo, hi = wilson(k, n)
    return round(lo, 6), round(hi, 6)


def evals_frame(evals: list[EvalObs], plan: Plan, metric: str) -> Table:
    """evals.csv: one row per planned evaluation x metric (one row with the chosen metric when absent)."""
    conditions = {r.name: condition_of(r) for r in plan.runs}
    rows: list[list[Any]] = []
    # Rows built as lists in EVAL_COLUMNS order: this is the largest table (evaluations x metrics).
    for o in evals:
        ev = o.evaluation
        res = o.results
        if res is None:
            rows.append([ev.run, conditions[ev.run], ev.task, ev.epoch, o.split, metric, o.status,
                         None, None, None, None, None, None, o.folder])
            continue
        n = res.get("n")
        if isinstance(n, bool) or not isinstance(n, int):
            n = None
        split = res.get("split") or o.split
        for name in _metrics_of(o, metric) or [metric]:
            value = o.value(name)
            lo, hi = proportion_interval(value, n) if value is not None else (None, None)
            rows.append([ev.run, conditions[ev.run], ev.task, ev.epoch, split, name, o.status, n, value, lo, hi,
                         res.get("duration_s"), res.get("adapter_sha256"), o.folder])
    return Table(EVAL_COLUMNS, rows)


def build_cells(evals: list[EvalObs], plan: Plan, metric: str) -> list[Cell]:
    """Group evaluations by condition x task x epoch, in plan order, and summarise the seeds."""
    runs = {r.name: (r, condition_of(r)) for r in plan.runs}
    factors: dict[str, dict[str, Any]] = {}  # one dict per condition, shared by its cells (read only)
    cells: dict[tuple[str, str, int | None], Cell] = {}
    for o in evals:
        ev = o.evaluation
        run, condition = runs[ev.run]
        key = (condition, ev.task, ev.epoch)
        cell = cells.get(key)
        if cell is None:
            shared = factors.get(condition)
            if shared is None:
                shared = factors[condition] = factor_values(run)
            cell = cells[key] = Cell(condition, _label(run.model), run.kind, shared, ev.task, ev.epoch, o.split)
        cell.planned.append(ev.run)
        value = o.value(metric)
        if value is not None:
            cell.values.append(value)
            cell.present_runs.append(ev.run)
            cell.split = str(o.results.get("split") or o.split) if o.results else o.split
    for cell in cells.values():
        cell.summary = summarize(cell.values) if cell.values else None
    return list(cells.values())


CELL_COLUMNS = [
    "condition", "kind", "model", "factors", "task", "split", "epoch", "n_planned", "n_seeds", "mean", "std",
    "sem", "ci_low", "ci_high", "min", "max", "complete", "missing_runs",
]


def cells_frame(cells: list[Cell]) -> Table:
    """cells.csv (rows built as lists in CELL_COLUMNS order: one per cell, thousands in a big sweep)."""
    rows: list[list[Any]] = []
    texts: dict[int, str] = {}  # cells of one condition share their factors dict: its text is made once
    for c in cells:
        s = c.summary
        stats = ([round(s.mean, 6), _round(s.std), _round(s.sem), _round(s.ci_low), _round(s.ci_high),
                  round(s.min, 6), round(s.max, 6)] if s else [None] * 7)
        text = texts.get(id(c.factors))
        if text is None:
            text = texts[id(c.factors)] = _factor_text({k: v for k, v in c.factors.items() if k != "model"})
        complete = len(c.values) == len(c.planned)
        if complete:
            missing = None
        else:
            present = set(c.present_runs)
            missing = "; ".join(r for r in c.planned if r not in present) or None
        rows.append([c.condition, c.kind, c.model, text, c.task, c.split, c.epoch, len(c.planned), len(c.values),
                     *stats, complete, missing])
    return Table(CELL_COLUMNS, rows)


DELTA_COLUMNS = [
    "run", "condition", "seed", "task", "split", "epoch", "base_run", "base_value", "value", "delta", "rel_delta_pct",
    "n_pairs", "base_only_correct", "finetune_only_correct", "mcnemar_p", "mcnemar_note", "flag",
]


def _mcnemar(ft: EvalObs, base: EvalObs) -> list[Any]:
    """Exact McNemar on the per-example outcomes, or the reason it is refused.

    Returns:
        ``[n_pairs, base_only_correct, finetune_only_correct, mcnemar_p, mcnemar_note]``.
    """
    assert ft.results is not None and base.results is not None
    if ft.results.get("n") != base.results.get("n"):
        return [None, None, None, None,
                f"refused: counts differ ({ft.results.get('n')} vs base {base.results.get('n')})"]
    if ft.outcomes is None or base.outcomes is None:
        return [None, None, None, None, "refused: no per-example outcomes (predictions.jsonl)"]
    if set(ft.outcomes) != set(base.outcomes):
        return [None, None, None, None, "refused: the evaluated inputs differ from the base model's"]
    b = sum(1 for k, ok in base.outcomes.items() if ok and not ft.outcomes[k])
    c = sum(1 for k, ok in base.outcomes.items() if not ok and ft.outcomes[k])
    return [len(base.outcomes), b, c, round(mcnemar_exact(b, c), 6), None]


def _split(o: EvalObs) -> str:
    return str((o.results or {}).get("split") or o.split)


def deltas_frame(evals: list[EvalObs], plan: Plan, metric: str, th: Thresholds, bases: list[EvalObs]) -> Table:
    """deltas.csv: every fine-tuned evaluation against its model's base control on the same task.

    ``bases`` are the base controls' evaluations (``evals`` may be a slice without them).
    Rows are built as lists in DELTA_COLUMNS order (one per fine-tuned evaluation).
    """
    runs = {r.name: (r, condition_of(r)) for r in plan.runs}
    base_runs = {r.model: r.name for r in plan.base_runs}
    by_key = {(o.evaluation.run, o.evaluation.task, o.evaluation.epoch): o for o in bases}
    rows: list[list[Any]] = []
    for o in evals:
        ev = o.evaluation
        run, condition = runs[ev.run]
        if run.is_base:
            continue
        base_name = base_runs.get(run.model)
        base = by_key.get((base_name, ev.task, None)) if base_name else None
        value = o.value(metric)
        base_value = base.value(metric) if base is not None and base.results else None
        split = _split(o)
        # delta, rel_delta_pct, n_pairs, base_only_correct, finetune_only_correct, mcnemar_p, mcnemar_note, flag
        tail: list[Any]
        if base is None:
            tail = [None] * 6 + ["no base-model control evaluates this task", None]
        elif value is None or base_value is None:
            tail = [None] * 6 + [f"missing: {ev.key if value is None else base.evaluation.key}", None]
        elif split != _split(base):
            tail = [None] * 6 + [f"refused: splits differ ({split} vs base {_split(base)})", None]
        else:
            tail = [round(value - base_value, 6),
                    round((value - base_value) / abs(base_value) * 100, 3) if base_value else None,
                    *_mcnemar(o, base), flag_for(base_value, value, th)]
        rows.append([ev.run, condition, run.seed, ev.task, split, ev.epoch, base_name, base_value, value, *tail])
    return Table(DELTA_COLUMNS, rows)


def select_cells(cells: list[Cell], choice: EpochChoice) -> list[tuple[str, Cell]]:
    """The fine-tuned cells a headline shows: ``(epoch label, cell)`` per condition x task.

    ``last`` is the highest evaluated epoch, ``best`` the epoch with the highest mean
    (selected on the evaluated split), ``all`` every epoch.
    """
    groups: dict[tuple[str, str], list[Cell]] = {}
    for c in cells:
        if c.kind != "base":
            groups.setdefault((c.condition, c.task), []).append(c)
    out: list[tuple[str, Cell]] = []
    for group in groups.values():
        group = sorted(group, key=lambda c: -1 if c.epoch is None else c.epoch)
        if choice == "all":
            out.extend((str(c.epoch), c) for c in group)
        elif choice == "last":
            out.append(("last", group[-1]))
        else:
            scored = [c for c in group if c.summary is not None]
            best = max(scored, key=lambda c: (c.summary.mean if c.summary else 0.0, -(c.epoch or 0))) if scored else group[-1]
            out.append(("best", best))
    return out


SWEEP_COLUMNS = [
    "sweep", "factor", "fixed", "task", "epoch", "level", "n_planned", "n_seeds", "mean", "ci_low", "ci_high",
    "level_complete", "sweep_complete",
]


def sweep_factors(plan: Plan) -> list[str]:
    """Factors with two or more levels (the model counts as one), in the spec's order."""
    spec = plan.spec
    names = ["model"] if len(spec.models) >= 2 else []
    return names + [k for k, levels in spec.factors.items() if len(levels) >= 2]


def sweeps_frame(selected: list[tuple[str, Cell]], plan: Plan) -> Table:
    """sweeps.csv: for each swept factor, one sweep per combination of the other factors' levels.

    Seeds are not a factor: a sweep's level is a cell, already averaged over its seeds.
    """
    spec = plan.spec
    levels_of: dict[str, list[Any]] = {"model": [model_label(m) for m in spec.models], **spec.factors}
    rows: list[list[Any]] = []  # in SWEEP_COLUMNS order
    names = ["model", *spec.paired, *spec.factors]
    # Once per cell, not once per swept factor: its levels as text and its columns n_planned .. level_complete.
    entries = []
    for label, cell in selected:
        s = cell.summary
        ok = bool(cell.values) and len(cell.values) == len(cell.planned)
        stats = [len(cell.planned), len(cell.values), round(s.mean, 6) if s else None,
                 _round(s.ci_low) if s else None, _round(s.ci_high) if s else None, ok]
        epoch = cell.epoch if label in ("last", "best") else label
        entries.append((label, cell, tuple(repr(cell.factors.get(k)) for k in names), epoch, stats, ok))
    for factor in sweep_factors(plan):
        at = names.index(factor)
        others = names[:at] + names[at + 1:]
        groups: dict[tuple[Any, ...], dict[str, Any]] = {}
        for entry in entries:
            texts = entry[2]
            groups.setdefault((entry[1].task, entry[0], texts[:at] + texts[at + 1:]), {})[texts[at]] = entry
        levels = [(level, repr(level)) for level in levels_of[factor]]
        for (task, label, _), by_level in groups.items():
            first = next(iter(by_level.values()))[1]
            fixed = "; ".join(f"{k}={first.factors.get(k)}" for k in others)
            sweep_id = f"{factor} | {task} | epoch {label} | {fixed}"
            found = [(level, by_level.get(text)) for level, text in levels]
            complete = all(e is not None and e[5] for _, e in found)
            for level, e in found:
                if e is None:
                    rows.append([sweep_id, factor, fixed, task, label, level, 0, 0, None, None, None, False, complete])
                else:
                    rows.append([sweep_id, factor, fixed, task, e[3], level, *e[4], complete])
    return Table(SWEEP_COLUMNS, rows)


LOSS_COLUMNS = ["run", "step", "epoch", "loss", "lr", "tokens_per_s"]


def loss_frame(runs: list[RunObs]) -> Table:
    """loss.csv: every optimizer step of each run's newest per-step metric log (rows in LOSS_COLUMNS order)."""
    rows: list[list[Any]] = []
    for o in runs:
        if not o.loss:
            continue
        per_epoch = o.steps_per_epoch
        if not per_epoch and o.configured_steps:
            per_epoch = o.configured_steps // max(int(o.run.settings.get("epochs") or 1), 1)
        name = o.run.name
        rows += [[name, p.step, (p.step - 1) // per_epoch if per_epoch else None, p.loss, p.lr, p.tokens_per_s]
                 for p in o.loss]
    return Table(LOSS_COLUMNS, rows)


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"


def cell_text(c: Cell) -> str:
    """``mean ± std [95 % CI] (n seeds)`` of a cell, or what is missing."""
    s = c.summary
    if s is None:
        return f"missing (0 of {len(c.planned)} seeds)"
    if s.n < 2:
        text = f"{s.mean:.3f} (1 seed)"
    else:
        text = f"{s.mean:.3f} ± {s.std:.3f} [{_fmt(s.ci_low)}, {_fmt(s.ci_high)}] ({s.n} seeds)"
    return text + ("" if c.complete else f", {len(c.planned) - s.n} missing")


def base_rows(cells: list[Cell]) -> list[dict[str, Any]]:
    """The headline's rows of the base controls (after every selected row)."""
    return [{"condition": c.condition, "task": c.task, "epoch": None, "selection": "base", "result": cell_text(c),
             "mean": c.summary.mean if c.summary else None, "base": "-", "delta": None, "rel_delta_pct": None,
             "flag": None, "best_vs_last": "-"} for c in cells if c.kind == "base"]


def selected_rows(cells: list[Cell], selected: list[tuple[str, Cell]], bases: list[Cell], th: Thresholds,
                  task_splits: dict[str, str]) -> list[dict[str, Any]]:
    """The headline's rows of the selected cells; ``cells`` holds every epoch of their conditions."""
    base_cells = {(c.model, c.task): c for c in bases}
    by_group: dict[tuple[str, str], list[Cell]] = {}
    for c in cells:
        if c.kind != "base":
            by_group.setdefault((c.condition, c.task), []).append(c)
    rows: list[dict[str, Any]] = []
    for label, c in selected:
        base = base_cells.get((c.model, c.task))
        row: dict[str, Any] = {"condition": c.condition, "task": c.task, "epoch": c.epoch, "selection": label,
                               "result": cell_text(c), "mean": c.summary.mean if c.summary else None,
                               "base": cell_text(base) if base else "-", "delta": None, "rel_delta_pct": None,
                               "flag": None}
        if base is not None and base.summary is not None and c.summary is not None:
            row["delta"] = round(c.summary.mean - base.summary.mean, 6)
            if base.summary.mean:
                row["rel_delta_pct"] = round((c.summary.mean - base.summary.mean) / abs(base.summary.mean) * 100, 3)
            row["flag"] = flag_for(base.summary.mean, c.summary.mean, th)
        scored = [g for g in by_group[(c.condition, c.task)] if g.summary is not None]
        if len(scored) > 1:
            best = max(scored, key=lambda g: (g.summary.mean if g.summary else 0.0, -(g.epoch or 0)))
            last = max(scored, key=lambda g: g.epoch or 0)
            split = task_splits.get(c.task, "test")
            note = "" if split == "validation" else f" (selected on the {split} split)"
            row["best_vs_last"] = (f"best epoch {best.epoch}: {_fmt(best.summary.mean if best.summary else None)}"
                                   f"{note}; last epoch {last.epoch}: {_fmt(last.summary.mean if last.summary else None)}")
        else:
            row["best_vs_last"] = "-"
        rows.append(row)
    return rows


def incomplete_units(run_states: list[tuple[str, bool, str]], statuses: list[tuple[str, str, str]]) -> list[str]:
    """Evaluations without results.json, then fine-tune runs not completed whose evaluations are not all in.

    A run whose every evaluation has results is not listed whatever its job state: the
    evaluations may have been run by hand, and they are what the analysis reads.
    """
    out = [f"{key}: {status}" for key, _, status in statuses if status != PRESENT]
    waiting = {run for _, run, status in statuses if status != PRESENT}
    out += [f"{name}: training {state.lower()}" for name, is_base, state in run_states
            if not is_base and state != "COMPLETED" and name in waiting]
    return out


class Slice(NamedTuple):
    """A stretch of whole conditions: planned runs ``runs[0]:runs[1]`` and their evaluations ``evals[0]:evals[1]``."""

    runs: tuple[int, int]
    evals: tuple[int, int]


def slice_bounds(plan: Plan, shares: list[float]) -> list[Slice]:
    """Split the plan into stretches of whole conditions of about the given shares of the work.

    A run's folder and each of its evaluations count one unit of work each. Returns one
    slice per share (some possibly empty), or a single one when the plan does not keep a
    condition's runs together or a run's evaluations in run order.
    """
    runs, evals = plan.runs, plan.evaluations
    whole = [Slice((0, len(runs)), (0, len(evals)))]
    # Where each run's evaluations start; a plan that interleaves them cannot be cut.
    first: list[int] = []
    at = 0
    for r in runs:
        first.append(at)
        while at < len(evals) and evals[at].run == r.name:
            at += 1
    conditions = [condition_of(r) for r in runs]
    cuts = [i for i in range(1, len(runs)) if conditions[i] != conditions[i - 1]]
    if len(shares) < 2 or at != len(evals) or len(cuts) + 1 != len(set(conditions)):
        return whole
    first.append(len(evals))
    work = [i + first[i] for i in range(len(runs) + 1)]  # units done before run i
    total, acc, start = sum(shares), 0.0, 0
    stops: list[int] = []
    for share in shares[:-1]:
        acc += share
        target = work[-1] * acc / total
        stop = min((c for c in cuts if work[c] >= target), default=len(runs))
        stops.append(max(stop, start))
        start = stops[-1]
    starts = [0, *stops]
    stops.append(len(runs))
    return [Slice((a, b), (first[a], first[b])) for a, b in zip(starts, stops)]


@dataclass
class Part:
    """What one slice of the plan adds to the analysis.

    A slice holds whole conditions (every seed, task and epoch of each), in plan order,
    so its cells are complete and its rows are a stretch of each table; the slices of a
    large plan are analysed in parallel where they were read. The part keeps only what
    the whole analysis still needs, and its stretch of each per-run and per-evaluation
    CSV file (no header).
    """

    cells: list[Cell]
    selected: list[tuple[str, Cell]]
    headline: list[dict[str, Any]]
    runs: list[list[Any]]
    loss: list[list[Any]]
    deltas: list[list[Any]]
    run_states: list[tuple[str, bool, str]]
    statuses: list[tuple[str, str, str]]
    metrics: set[str]
    csv: dict[str, bytes]


def analyze_slice(runs: list[RunObs], evals: list[EvalObs], plan: Plan, metric: str, epoch_choice: EpochChoice,
                  th: Thresholds, bases: list[EvalObs]) -> Part:
    """The part of the analysis one slice gives; ``bases`` are the base controls' evaluations."""
    cells = build_cells(evals, plan, metric)
    selected = select_cells(cells, epoch_choice)
    headline = selected_rows(cells, selected, build_cells(bases, plan, metric), th,
                             {t.name: t.split for t in plan.spec.evaluation.tasks})
    deltas = deltas_frame(evals, plan, metric, th, bases).rows
    rows = evals_frame(evals, plan, metric).rows
    run_rows, loss_rows = runs_frame(runs).rows, loss_frame(runs).rows
    at_metric, at_status = EVAL_COLUMNS.index("metric"), EVAL_COLUMNS.index("status")
    return Part(
        cells=cells, selected=selected, headline=headline, runs=run_rows, loss=loss_rows, deltas=deltas,
        run_states=[(o.run.name, o.run.is_base, o.state) for o in runs],
        statuses=[(o.evaluation.key, o.evaluation.run, o.status) for o in evals],
        metrics={r[at_metric] for r in rows if r[at_status] == PRESENT},
        csv={"runs": csv_body(run_rows), "evals": csv_body(rows), "cells": csv_body(cells_frame(cells).rows),
             "deltas": csv_body(deltas), "loss": csv_body(loss_rows)},
    )


#: Every table of ``analysis/`` and its columns, in the order the files are listed.
COLUMNS = {"runs": RUN_COLUMNS, "evals": EVAL_COLUMNS, "cells": CELL_COLUMNS, "deltas": DELTA_COLUMNS,
           "sweeps": SWEEP_COLUMNS, "loss": LOSS_COLUMNS}


def assemble(parts: list[Part], plan: Plan, metric: str = "accuracy", epoch_choice: EpochChoice = "last",
             thresholds: Thresholds | None = None) -> Analysis:
    """The whole analysis from the parts of consecutive slices, in plan order."""
    th = thresholds or Thresholds()
    task_splits = {t.name: t.split for t in plan.spec.evaluation.tasks}
    cells = [c for p in parts for c in p.cells]
    selected = [s for p in parts for s in p.selected]
    statuses = [s for p in parts for s in p.statuses]
    run_states = [s for p in parts for s in p.run_states]
    tables = {"runs": Table(RUN_COLUMNS, [r for p in parts for r in p.runs]),
              "deltas": Table(DELTA_COLUMNS, [r for p in parts for r in p.deltas]),
              "sweeps": sweeps_frame(selected, plan), "loss": Table(LOSS_COLUMNS, [r for p in parts for r in p.loss])}
    texts = {name: csv_text(tables[name]) if name == "sweeps" else
             csv_body([columns]) + b"".join(p.csv[name] for p in parts) for name, columns in COLUMNS.items()}
    return Analysis(
        metric=metric, epoch_choice=epoch_choice, thresholds=th, tables=tables, csv=texts, cell_objs=cells,
        headline=[r for p in parts for r in p.headline] + base_rows(cells),
        incomplete=incomplete_units(run_states, statuses), sweep_factors=sweep_factors(plan), task_splits=task_splits,
        run_states=run_states, statuses=statuses, metrics_present=set().union(*(p.metrics for p in parts)),
    )


__all__ = ["Analysis", "Cell", "Part", "Slice", "Thresholds", "analyze_slice", "assemble", "flag_for", "slice_bounds"]
