"""The analysis tables, built from observations: pure (data in, pandas frames out).

Rows follow the plan's order (models, paired levels, factors as written, seeds, then
base controls), so the same folder always gives the same files. Every column is
described in docs/analysis.md.
"""

from __future__ import annotations

import itertools
import math
import statistics
from functools import cached_property, lru_cache
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

import numpy as np
import pandas as pd

from planner.analyze.findings import (
    Finding, MetricInfo, Policy, Side, compare, factorial, lower_is_better, settle, trend, verdict,
)
from planner.analyze.inference import Tested, adjust, mean_interval, paired_test
from planner.analyze.observe import FAILED, MISSING, PRESENT, EvalObs, Examples, RunObs, align, config_mismatches
from planner.analyze.stats import Summary, summarize, t_quantile, wilson
from planner.spec.errors import ConfigError
from planner.spec.runs import Plan, Run, model_label

EpochChoice = Literal["last", "best", "all"]


def metric_infos(plan: Plan, metric: str) -> dict[str, MetricInfo]:
    """Each task's reading of ``metric``: declared in the spec's task entry, else by the metric's name."""
    out: dict[str, MetricInfo] = {}
    for t in plan.spec.evaluation.tasks:
        declared = t.metrics.get(metric)
        if declared is not None:
            out[t.name] = MetricInfo(metric, declared.higher_is_better, declared.kind != "unbounded")
        else:
            out[t.name] = MetricInfo(metric, not lower_is_better(metric), not lower_is_better(metric))
    return out


#: The practical bar, the level and the correction of findings (kept under its old name for callers).
Thresholds = Policy


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


#: How a text cell must not start: a spreadsheet would run it as a formula (CSV injection).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _csv_field(text: str, guard: bool) -> str:
    """One field as the csv module writes it (quoted only when it must be), guarded against formulas first."""
    if guard and text.startswith(_FORMULA_START):
        text = "'" + text
    if '"' in text:
        return '"' + text.replace('"', '""') + '"'
    if "," in text or "\n" in text or "\r" in text:
        return '"' + text + '"'
    return text


def csv_body(rows: Iterable[Sequence[Any]]) -> bytes:
    """Rows as UTF-8 CSV: '\\n' line ends, floats as Python prints them (shortest exact), None as an empty field.

    Text that starts like a formula (``=``, ``+``, ``-``, ``@``, tab, carriage return) gets a
    leading ``'``, which spreadsheets show as text; numbers (negative ones too) stay numbers.

    The bytes are those of ``csv.writer(lineterminator="\\n")`` (tests/test_analyze_escape.py
    compares them on random rows), except that a carriage return is always quoted (the csv
    module leaves it bare, and many readers end the row there). Written here because the
    csv module looks at every character of every field: texts repeat down a column (names,
    tasks, verdicts) and are quoted once each, which writes the 10,000-evaluation tables in
    two thirds of the time (docs/benchmarks.md).
    """
    texts: dict[str, str] = {}
    lines = []
    for row in rows:
        fields = []
        for v in row:
            if v.__class__ is str:
                field_ = texts.get(v)
                if field_ is None:
                    field_ = texts[v] = _csv_field(v, True)
                fields.append(field_)
            elif v is None:
                fields.append("")
            elif v.__class__ is float or v.__class__ is int or v.__class__ is bool:
                fields.append(str(v))
            else:  # any other object: its text, quoted as needed (a str subclass is guarded like a str)
                fields.append(_csv_field(str(v), isinstance(v, str)))
        line = ",".join(fields)
        lines.append('""' if not line and len(fields) == 1 else line)  # a lone empty field, as csv writes it
    return ("\n".join(lines) + "\n").encode() if lines else b""


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
    seeds: list[Any] = field(default_factory=list)
    examples: list[Examples | None] = field(default_factory=list)
    ci: tuple[float | None, float | None, str | None] = (None, None, None)

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
    thresholds: Policy
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
    findings: list[Finding] = field(default_factory=list)
    best: dict[str, tuple[int | None, str]] = field(default_factory=dict)

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


def level_text(factor: str, value: Any) -> str:
    """A factor level as text: a null level reads as its documented meaning (``all`` for ``train_samples``)."""
    return shown_null(factor) if value is None else str(value)


def _factor_text(factors: dict[str, Any]) -> str:
    return "; ".join(f"{k}={level_text(k, v)}" for k, v in factors.items())


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


def cell_interval(cell: Cell, info: MetricInfo, n_examples: int | None) -> tuple[float | None, float | None, str | None]:
    """A cell's 95 % interval from both seed-to-seed and test-set variance (docs/analysis.md).

    With every seed's per-example values: a hierarchical bootstrap (seeds, then examples).
    Without them: for a share of ``n`` examples, Student's t over seeds on a variance that
    adds the binomial variance of one seed's mean, so two equal seeds do not give a zero-width
    interval; one seed gets the Wilson interval. Shares stay inside [0, 1].
    """
    s = cell.summary
    if s is None:
        return None, None, None
    key = f"cell|{cell.condition}|{cell.task}|{cell.epoch}"
    rows: list[tuple[float, ...]] = []
    for ex, value in zip(cell.examples, cell.values):
        per = ex.metric(info.name, value) if ex is not None else None
        if per is None or (rows and len(per) != len(rows[0])):
            rows = []
            break
        rows.append(per)
    bounded = info.bounded and all(0.0 <= v <= 1.0 for v in cell.values)
    if rows and len(rows[0]):
        lo, hi, method = mean_interval(np.array(rows, dtype=float), key, bounded)
        return round(lo, 6), round(hi, 6), method
    n = n_examples
    if bounded and isinstance(n, int) and n > 0:
        if s.n < 2:
            wlo, whi = _wilson_of(s.mean, n) if abs(round(s.mean * n) - s.mean * n) < 1e-9 else (None, None)
            if wlo is not None:
                return wlo, whi, "Wilson (1 seed, test set only)"
        var = (s.std or 0.0) ** 2 / s.n + s.mean * (1 - s.mean) / n
        half = (t_quantile(0.975, s.n - 1) if s.n > 1 else 1.959964) * var ** 0.5
        return round(max(0.0, s.mean - half), 6), round(min(1.0, s.mean + half), 6), "t over seeds + binomial"
    if s.n < 2:
        return None, None, "none: 1 seed and no per-example values"
    return _round(s.ci_low), _round(s.ci_high), "Student t over seeds"


def build_cells(evals: list[EvalObs], plan: Plan, metric: str) -> list[Cell]:
    """Group evaluations by condition x task x epoch, in plan order, and summarise the seeds."""
    runs = {r.name: (r, condition_of(r)) for r in plan.runs}
    factors: dict[str, dict[str, Any]] = {}  # one dict per condition, shared by its cells (read only)
    cells: dict[tuple[str, str, int | None], Cell] = {}
    sizes: dict[tuple[str, str, int | None], int | None] = {}
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
            cell.seeds.append(run.seed)
            cell.examples.append(o.examples)
            cell.split = str(o.results.get("split") or o.split) if o.results else o.split
            n = o.results.get("n") if o.results else None
            sizes.setdefault(key, n if isinstance(n, int) and not isinstance(n, bool) else None)
    infos = metric_infos(plan, metric)
    for key, cell in cells.items():
        cell.summary = summarize(cell.values) if cell.values else None
        cell.ci = cell_interval(cell, infos.get(cell.task, MetricInfo(metric)), sizes.get(key))
    return list(cells.values())


CELL_COLUMNS = [
    "condition", "kind", "model", "factors", "task", "split", "epoch", "n_planned", "n_seeds", "mean", "std",
    "sem", "ci_low", "ci_high", "ci_method", "min", "max", "complete", "missing_runs",
]


def cells_frame(cells: list[Cell]) -> Table:
    """cells.csv (rows built as lists in CELL_COLUMNS order: one per cell, thousands in a big sweep)."""
    rows: list[list[Any]] = []
    texts: dict[int, str] = {}  # cells of one condition share their factors dict: its text is made once
    for c in cells:
        s = c.summary
        stats = ([round(s.mean, 6), _round(s.std), _round(s.sem), c.ci[0], c.ci[1], c.ci[2],
                  round(s.min, 6), round(s.max, 6)] if s else [None] * 8)
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
    "n_pairs", "base_only_correct", "finetune_only_correct", "test", "p", "p_adjusted", "test_note", "flag",
]


def _row_test(ft: EvalObs, base: EvalObs, metric: str, key: str) -> list[Any]:
    """The paired test of one fine-tuned evaluation against its base model's, or the reason it is refused.

    Returns:
        ``[n_pairs, base_only_correct, finetune_only_correct, test, p, test_note]``.
    """
    assert ft.results is not None and base.results is not None
    refused: list[Any] = [None, None, None, None, None]
    if ft.results.get("n") != base.results.get("n"):
        return refused + [f"refused: counts differ ({ft.results.get('n')} vs base {base.results.get('n')})"]
    if ft.examples is None or base.examples is None:
        return refused + ["refused: no per-example outcomes (predictions.jsonl)"]
    paired = align(base.examples, ft.examples)
    if isinstance(paired, str):
        return refused + [paired + " from the base model's"]
    ib, ia, how = paired
    a = ft.examples.metric(metric, ft.value(metric))
    b = base.examples.metric(metric, base.value(metric))
    if a is None or b is None:
        return refused + [f"refused: no per-example values of {metric!r} in predictions.jsonl"]
    ma = np.array([[a[i] for i in ia]], dtype=float)
    mb = np.array([[b[i] for i in ib]], dtype=float)
    t = paired_test(ma, mb, key, True, interval=False)
    b_only, a_only = t.discordant if t.discordant else (None, None)
    return [t.n_examples, b_only, a_only, t.test, round(t.p, 6), None if how == "position" else f"paired by {how}"]


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
            tail = [None] * 8 + ["no base-model control evaluates this task", None]
        elif value is None or base_value is None:
            tail = [None] * 8 + [f"missing: {ev.key if value is None else base.evaluation.key}", None]
        elif split != _split(base):
            tail = [None] * 8 + [f"refused: splits differ ({split} vs base {_split(base)})", None]
        else:
            test = _row_test(o, base, metric, f"delta|{ev.key}")
            # p_adjusted and the flag are set over the whole table's family (assemble).
            tail = [round(value - base_value, 6),
                    round((value - base_value) / abs(base_value) * 100, 3) if base_value else None,
                    *test[:5], None, test[5], None]
        rows.append([ev.run, condition, run.seed, ev.task, split, ev.epoch, base_name, base_value, value, *tail])
    return Table(DELTA_COLUMNS, rows)


def best_epochs(cells: list[Cell], plan: Plan, metric: str) -> dict[str, tuple[int | None, str]]:
    """``--epoch best``: each condition's epoch with the best mean on a validation-split task.

    The epoch is chosen on the validation split and then reported on every task, so the
    test split never chooses what it reports. A task evaluated on the validation split with
    the same script as the reported one is preferred; here the first such task in the spec.

    Returns:
        condition -> (epoch, the task it was chosen on).

    Raises:
        ConfigError: when no task is evaluated on a validation split.
    """
    val_tasks = [t.name for t in plan.spec.evaluation.tasks if t.split == "validation"]
    if not val_tasks:
        raise ConfigError("--epoch best chooses the epoch on a validation split, and no task of this experiment is "
                          "evaluated on one; add a task with `split: validation` to the spec (docs/analysis.md) or "
                          "use --epoch last or --epoch all")
    infos = metric_infos(plan, metric)
    out: dict[str, tuple[int | None, str]] = {}
    for task in val_tasks:
        sign = 1.0 if infos[task].higher_is_better else -1.0
        for c in cells:
            if c.kind == "base" or c.task != task or c.summary is None or c.condition in out:
                continue
            group = [g for g in cells if g.condition == c.condition and g.task == task and g.summary is not None]
            best = max(group, key=lambda g: (sign * g.summary.mean if g.summary else 0.0, -(g.epoch or 0)))
            out[c.condition] = (best.epoch, task)
    return out


def select_cells(cells: list[Cell], choice: EpochChoice,
                 best: dict[str, tuple[int | None, str]] | None = None) -> list[tuple[str, Cell]]:
    """The fine-tuned cells a headline shows: ``(epoch label, cell)`` per condition x task.

    ``last`` is the highest evaluated epoch, ``best`` the epoch :func:`best_epochs` chose on
    the validation split (the last one where it chose none), ``all`` every epoch.
    """
    groups: dict[tuple[str, str], list[Cell]] = {}
    for c in cells:
        if c.kind != "base":
            groups.setdefault((c.condition, c.task), []).append(c)
    out: list[tuple[str, Cell]] = []
    for (condition, _), group in groups.items():
        group = sorted(group, key=lambda c: -1 if c.epoch is None else c.epoch)
        if choice == "all":
            out.extend((str(c.epoch), c) for c in group)
        elif choice == "last":
            out.append(("last", group[-1]))
        else:
            chosen = (best or {}).get(condition)
            match = [c for c in group if chosen is not None and c.epoch == chosen[0]]
            out.append(("best", match[0] if match else group[-1]))
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


def shown_null(factor: str) -> str:
    """How a null level reads: the knob's documented default (``all`` for ``train_samples``), else ``none``."""
    from planner.spec.knobs import KNOBS

    knob = KNOBS.get(factor)
    return (knob.shown_default if knob is not None and knob.shown_default else "none").strip("`")


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
                 cell.ci[0] if s else None, cell.ci[1] if s else None, ok]
        epoch = cell.epoch if label in ("last", "best") else label
        entries.append((label, cell, tuple(repr(cell.factors.get(k)) for k in names), epoch, stats, ok))
    for factor in sweep_factors(plan):
        at = names.index(factor)
        others = names[:at] + names[at + 1:]
        groups: dict[tuple[Any, ...], dict[str, Any]] = {}
        for entry in entries:
            texts = entry[2]
            groups.setdefault((entry[1].task, entry[0], texts[:at] + texts[at + 1:]), {})[texts[at]] = entry
        # A null level is the knob's default as the docs show it: `train_samples: null` is `all`, never empty.
        levels = [(level if level is not None else shown_null(factor), repr(level)) for level in levels_of[factor]]
        for (task, label, _), by_level in groups.items():
            first = next(iter(by_level.values()))[1]
            fixed = "; ".join(f"{k}={shown_null(k) if first.factors.get(k) is None else first.factors.get(k)}"
                              for k in others)
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
    """``mean [95 % CI] (n seeds, sd)`` of a cell, or what is missing; the interval counts seeds and examples."""
    s = c.summary
    if s is None:
        return f"missing (0 of {len(c.planned)} seeds)"
    ci = "" if c.ci[0] is None else f" [{_fmt(c.ci[0])}, {_fmt(c.ci[1])}]"
    seeds = "1 seed, test set only" if s.n < 2 else f"{s.n} seeds, sd {s.std:.3f}"
    return f"{s.mean:.3f}{ci} ({seeds})" + ("" if c.complete else f", {len(c.planned) - s.n} missing")


def base_rows(cells: list[Cell]) -> list[dict[str, Any]]:
    """The headline's rows of the base controls (after every selected row)."""
    return [{"condition": c.condition, "task": c.task, "epoch": None, "selection": "base", "result": cell_text(c),
             "mean": c.summary.mean if c.summary else None, "base": "-", "delta": None, "rel_delta_pct": None,
             "flag": None, "effect_ci": None, "p_adjusted": None, "best_vs_last": "-"} for c in cells if c.kind == "base"]


def selected_rows(cells: list[Cell], selected: list[tuple[str, Cell]], bases: list[Cell],
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
                               "flag": None, "effect_ci": None, "p_adjusted": None}
        if base is not None and base.summary is not None and c.summary is not None:
            row["delta"] = round(c.summary.mean - base.summary.mean, 6)
            if base.summary.mean:
                row["rel_delta_pct"] = round((c.summary.mean - base.summary.mean) / abs(base.summary.mean) * 100, 3)
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
    best: dict[str, tuple[int | None, str]] = field(default_factory=dict)


class Early(NamedTuple):
    """A slice's cells and headline choice: all that the findings and sweeps need, ready before its tables."""

    cells: list[Cell]
    selected: list[tuple[str, Cell]]
    best: dict[str, tuple[int | None, str]]


def slice_cells(evals: list[EvalObs], plan: Plan, metric: str, epoch_choice: EpochChoice) -> Early:
    """A slice's cells and, per condition and task, the cell at the headline's epoch."""
    cells = build_cells(evals, plan, metric)
    best = best_epochs(cells, plan, metric) if epoch_choice == "best" else None
    return Early(cells, select_cells(cells, epoch_choice, best), best or {})


def slice_tables(early: Early, runs: list[RunObs], evals: list[EvalObs], plan: Plan, metric: str, th: Policy,
                 bases: list[EvalObs]) -> Part:
    """The rest of a slice's part: its rows of every table, and the CSV text of those that need no other slice."""
    cells, selected = early.cells, early.selected
    headline = selected_rows(cells, selected, build_cells(bases, plan, metric),
                             {t.name: t.split for t in plan.spec.evaluation.tasks})
    deltas = deltas_frame(evals, plan, metric, th, bases).rows
    rows = evals_frame(evals, plan, metric).rows
    run_rows, loss_rows = runs_frame(runs).rows, loss_frame(runs).rows
    at_metric, at_status = EVAL_COLUMNS.index("metric"), EVAL_COLUMNS.index("status")
    csv = {"runs": csv_body(run_rows), "evals": csv_body(rows), "cells": csv_body(cells_frame(cells).rows),
           "loss": csv_body(loss_rows)}
    at_p = DELTA_COLUMNS.index("p")
    if all(r[at_p] is None for r in deltas):  # nothing for the family's correction to change
        csv["deltas"] = csv_body(deltas)
    return Part(
        cells=cells, selected=selected, headline=headline, runs=run_rows, loss=loss_rows, deltas=deltas,
        run_states=[(o.run.name, o.run.is_base, o.state) for o in runs],
        statuses=[(o.evaluation.key, o.evaluation.run, o.status) for o in evals],
        metrics={r[at_metric] for r in rows if r[at_status] == PRESENT}, csv=csv, best=early.best,
    )


FINDING_COLUMNS = [
    "kind", "factor", "task", "epoch", "fixed", "a", "b", "a_mean", "b_mean", "effect", "ci_low", "ci_high",
    "ci_basis", "rel_pct", "test", "n_examples", "n_seeds", "p", "p_adjusted", "verdict", "note",
]


def _side(cell: Cell, label: str) -> Side:
    return Side(label, cell.summary.mean if cell.summary else None, cell.seeds, cell.examples, cell.values)


def _epoch_label(label: str, cell: Cell) -> str:
    return f"{label} ({cell.epoch})" if label in ("last", "best") else label


def _numeric(levels: list[Any]) -> list[float] | None:
    if len(levels) < 3 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in levels):
        return None
    return [float(v) for v in levels]


#: Up to this many levels a factor gets every pairwise contrast; beyond, each level against the next
#: (in the spec's order) and, when numeric, the trend: 50 learning rates would be 1,225 pairs per
#: combination of the other factors, a family no correction leaves any power to.
MAX_PAIRWISE_LEVELS = 6


def _pairs(k: int) -> list[tuple[int, int]]:
    if k <= MAX_PAIRWISE_LEVELS:
        return [(i, j) for i in range(k) for j in range(i + 1, k)]
    return [(i, i + 1) for i in range(k - 1)]


def build_findings(selected: list[tuple[str, Cell]], cells: list[Cell], plan: Plan, metric: str,
                   policy: Policy) -> list[Finding]:
    """Every finding the report shows (vs base, contrasts, trends), adjusted together."""
    infos = metric_infos(plan, metric)
    bases = {(c.model, c.task): c for c in cells if c.kind == "base"}
    out: list[Finding] = []
    for label, c in selected:
        base = bases.get((c.model, c.task))
        if base is None or c.summary is None or base.summary is None:
            continue
        ep = _epoch_label(label, c)
        out.append(compare("vs base", "fine-tuning", c.task, ep, _side(c, c.condition), _side(base, base.condition),
                           "", infos[c.task], f"finding|base|{c.condition}|{c.task}|{ep}"))
    spec = plan.spec
    levels_of: dict[str, list[Any]] = {"model": [model_label(m) for m in spec.models], **spec.factors}
    names = ["model", *spec.paired, *spec.factors]
    # Each cell's levels as keys, computed once (a sweep of 2,000 conditions groups them many times over).
    tested = [(label, c, tuple(repr(c.factors.get(k)) for k in names)) for label, c in selected if c.summary is not None]
    for factor in sweep_factors(plan):
        at = names.index(factor)
        keep = [i for i, k in enumerate(names) if k != factor]
        others = [names[i] for i in keep]
        groups: dict[tuple[Any, ...], dict[str, Cell]] = {}
        for label, c, key in tested:
            groups.setdefault((c.task, label, tuple(key[i] for i in keep)), {})[key[at]] = c
        texts = {repr(lv): f"{factor}={level_text(factor, lv)}" for lv in levels_of[factor]}
        for (task, label, _), by_level in groups.items():
            present = [(lv, by_level[r], texts[r]) for lv in levels_of[factor] if (r := repr(lv)) in by_level]
            if len(present) < 2:
                continue
            first = present[0][1]
            fixed = "; ".join(f"{k}={level_text(k, first.factors.get(k))}" for k in others)
            ep = _epoch_label(label, first)
            sides = [_side(cell, text) for _, cell, text in present]
            for i, j in _pairs(len(present)):
                out.append(compare("contrast", factor, task, ep, sides[j], sides[i], fixed, infos[task],
                                   f"finding|contrast|{factor}|{task}|{ep}|{fixed}|{present[j][0]}|{present[i][0]}"))
            xs = _numeric([lv for lv, _, _ in present])
            if xs is not None:
                out.append(trend(factor, task, ep, list(zip(xs, sides)), fixed, infos[task],
                                 f"finding|trend|{factor}|{task}|{ep}|{fixed}"))
    out += factorial_findings(selected, plan, infos)
    return settle(out, policy)


def factorial_findings(selected: list[tuple[str, Cell]], plan: Plan, infos: dict[str, MetricInfo]) -> list[Finding]:
    """Main effects of each factor and interactions of each pair, when two or more factors are swept.

    A main effect compares two levels of a factor averaged over every combination of the
    others (pairs as for contrasts); an interaction compares the effect of one factor's
    extreme levels (first and last in the spec) at the other's extreme levels: (a1 b1 - a0
    b1) - (a1 b0 - a0 b0), averaged over any further factors. Both need every combination.
    """
    factors = sweep_factors(plan)
    if len(factors) < 2:
        return []
    spec = plan.spec
    levels_of: dict[str, list[Any]] = {"model": [model_label(m) for m in spec.models], **spec.factors}
    level_reprs = {f: tuple(repr(v) for v in levels_of[f]) for f in factors}
    groups: dict[tuple[str, str], dict[tuple[str, ...], Cell]] = {}
    for label, c in selected:
        if c.summary is not None:
            groups.setdefault((c.task, label), {})[tuple(repr(c.factors.get(f)) for f in factors)] = c
    out: list[Finding] = []
    for (task, label), by in groups.items():
        first = next(iter(by.values()))
        ep = _epoch_label(label, first)
        # One side per cell and one list of sides per fixed set of levels: main effects ask for each level
        # twice and interactions for the same corners again.
        side_of: dict[int, Side] = {}
        found: dict[tuple[tuple[str, ...], ...], list[Side] | None] = {}

        def sides(fixed: dict[str, Any]) -> list[Side] | None:
            # Every combination of the factors not fixed, in plan order; None when one is missing.
            choices = tuple((repr(fixed[f]),) if f in fixed else level_reprs[f] for f in factors)
            if choices in found:
                return found[choices]
            got: list[Side] = []
            for key in itertools.product(*choices):  # the product's tuples are the cells' keys
                cell = by.get(key)
                if cell is None:
                    found[choices] = None
                    return None
                side = side_of.get(id(cell))
                if side is None:
                    side = side_of[id(cell)] = _side(cell, cell.condition)
                got.append(side)
            found[choices] = got
            return got

        def mean(ss: list[Side]) -> float | None:
            ms = [s.mean for s in ss if s.mean is not None]
            return sum(ms) / len(ms) if len(ms) == len(ss) else None

        for f in factors:
            lv = levels_of[f]
            for i, j in _pairs(len(lv)):
                a, b = sides({f: lv[j]}), sides({f: lv[i]})
                if a is None or b is None:
                    continue
                out.append(factorial("main effect", f, task, ep, f"{f}={level_text(f, lv[j])}",
                                     f"{f}={level_text(f, lv[i])}", mean(a), mean(b), [(1.0, a), (-1.0, b)],
                                     infos[task], f"finding|main|{f}|{task}|{ep}|{lv[j]}|{lv[i]}"))
        for x, f in enumerate(factors):
            for g in factors[x + 1:]:
                f0, f1, g0, g1 = levels_of[f][0], levels_of[f][-1], levels_of[g][0], levels_of[g][-1]
                terms = [(w, sides({f: fl, g: gl})) for w, fl, gl in
                         ((1.0, f1, g1), (-1.0, f0, g1), (-1.0, f1, g0), (1.0, f0, g0))]
                if any(t[1] is None for t in terms):
                    continue
                hi = [m for m in (mean(terms[0][1] or []), mean(terms[1][1] or [])) if m is not None]
                lo = [m for m in (mean(terms[2][1] or []), mean(terms[3][1] or [])) if m is not None]
                out.append(factorial(
                    "interaction", f"{f} x {g}", task, ep,
                    f"{f}={level_text(f, f1)} - {f}={level_text(f, f0)} at {g}={level_text(g, g1)}",
                    f"at {g}={level_text(g, g0)}", hi[0] - hi[1] if len(hi) == 2 else None,
                    lo[0] - lo[1] if len(lo) == 2 else None, [(w, s) for w, s in terms if s is not None],
                    infos[task], f"finding|interaction|{f}|{g}|{task}|{ep}"))
    return out


def _r(v: float | None) -> float | None:
    return None if v is None or v != v else round(v, 6)


def findings_frame(findings: list[Finding]) -> Table:
    """findings.csv: one row per tested claim."""
    rows = []
    for f in findings:
        t = f.tested
        rows.append([f.kind, f.factor, f.task, f.epoch, f.fixed, f.a, f.b, _r(f.a_mean), _r(f.b_mean),
                     _r(t.effect) if t else None, _r(t.ci_low) if t else None, _r(t.ci_high) if t else None,
                     t.ci_basis if t else None, _r(f.rel_pct), t.test if t else None, t.n_examples if t else None,
                     t.n_seeds if t else None, _r(t.p) if t else None, _r(f.p_adjusted), f.verdict, f.note])
    return Table(FINDING_COLUMNS, rows)


def settle_deltas(table: Table, plan: Plan, metric: str, policy: Policy) -> None:
    """Adjust the per-seed deltas' p over their own family and flag each row (in place)."""
    col = {c: i for i, c in enumerate(table.columns)}
    infos = metric_infos(plan, metric)
    testable = [r for r in table.rows if r[col["p"]] is not None]
    for r, p in zip(testable, adjust([r[col["p"]] for r in testable], policy.correction)):
        r[col["p_adjusted"]] = round(p, 6)
    for r in table.rows:
        if r[col["p"]] is None:
            continue
        base = r[col["base_value"]]
        f = Finding("vs base", "fine-tuning", r[col["task"]], str(r[col["epoch"]]), r[col["run"]], r[col["base_run"]],
                    "", r[col["value"]], base, Tested(r[col["delta"]], math.nan, math.nan, "", r[col["p"]], "", 0, 1),
                    None, infos.get(r[col["task"]], MetricInfo(metric)), r[col["p_adjusted"]])
        r[col["flag"]] = verdict(f, policy)


#: Every table of ``analysis/`` and its columns, in the order the files are listed.
COLUMNS = {"runs": RUN_COLUMNS, "evals": EVAL_COLUMNS, "cells": CELL_COLUMNS, "deltas": DELTA_COLUMNS,
           "findings": FINDING_COLUMNS, "sweeps": SWEEP_COLUMNS, "loss": LOSS_COLUMNS}


def _effect_text(f: Finding) -> str | None:
    t = f.tested
    if t is None:
        return None
    return f"{t.effect:+.3f} [{t.ci_low:+.3f}, {t.ci_high:+.3f}]"


@dataclass
class Whole:
    """What needs every slice's cells: the findings and the sweeps, with their CSV text."""

    findings: list[Finding]
    tables: dict[str, Table]
    csv: dict[str, bytes]


def across_slices(earlies: list[Early], plan: Plan, metric: str, th: Policy) -> Whole:
    """The findings (tested and adjusted together) and the sweeps of every slice's cells."""
    cells = [c for e in earlies for c in e.cells]
    selected = [s for e in earlies for s in e.selected]
    findings = build_findings(selected, cells, plan, metric, th)
    tables = {"findings": findings_frame(findings), "sweeps": sweeps_frame(selected, plan)}
    return Whole(findings, tables, {name: csv_text(t) for name, t in tables.items()})


def assemble(parts: list[Part], plan: Plan, metric: str = "accuracy", epoch_choice: EpochChoice = "last",
             thresholds: Policy | None = None, whole: Whole | None = None) -> Analysis:
    """The whole analysis from the parts of consecutive slices, in plan order.

    ``whole`` is what :func:`across_slices` made of the same parts' cells, when it was
    made earlier (while later slices were still being read).
    """
    th = thresholds or Policy()
    task_splits = {t.name: t.split for t in plan.spec.evaluation.tasks}
    cells = [c for p in parts for c in p.cells]
    selected = [s for p in parts for s in p.selected]
    statuses = [s for p in parts for s in p.statuses]
    run_states = [s for p in parts for s in p.run_states]
    if whole is None:
        whole = across_slices([Early(p.cells, p.selected, p.best) for p in parts], plan, metric, th)
    findings = whole.findings
    deltas = Table(DELTA_COLUMNS, [r for p in parts for r in p.deltas])
    settle_deltas(deltas, plan, metric, th)
    tables = {"runs": Table(RUN_COLUMNS, [r for p in parts for r in p.runs]), "deltas": deltas,
              **whole.tables, "loss": Table(LOSS_COLUMNS, [r for p in parts for r in p.loss])}
    # Per-run and per-evaluation tables come as each slice wrote them (deltas too where no row has a p to
    # adjust); findings and sweeps need every slice.
    texts: dict[str, bytes] = {}
    for name, columns in COLUMNS.items():
        if name in whole.csv:
            texts[name] = whole.csv[name]
        elif name == "deltas":
            texts[name] = csv_body([columns]) + b"".join(p.csv.get("deltas") or csv_body(p.deltas) for p in parts)
        else:
            texts[name] = csv_body([columns]) + b"".join(p.csv[name] for p in parts)
    headline = [r for p in parts for r in p.headline]
    vs_base = {(f.a, f.task, f.epoch): f for f in findings if f.kind == "vs base"}
    for row, (label, c) in zip(headline, selected):
        f = vs_base.get((c.condition, c.task, _epoch_label(label, c)))
        if f is not None:
            row["flag"], row["effect_ci"], row["p_adjusted"] = f.verdict, _effect_text(f), f.p_adjusted
    best: dict[str, tuple[int | None, str]] = {}
    for p in parts:
        best.update(p.best)
    return Analysis(
        metric=metric, epoch_choice=epoch_choice, thresholds=th, tables=tables, csv={n: texts[n] for n in COLUMNS},
        cell_objs=cells, headline=headline + base_rows(cells),
        incomplete=incomplete_units(run_states, statuses), sweep_factors=sweep_factors(plan), task_splits=task_splits,
        run_states=run_states, statuses=statuses, metrics_present=set().union(*(p.metrics for p in parts)),
        findings=findings, best=best,
    )


__all__ = ["Analysis", "Cell", "Early", "Part", "Slice", "Thresholds", "Whole", "across_slices",
           "assemble", "slice_bounds", "slice_cells", "slice_tables"]
