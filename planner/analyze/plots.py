"""The analysis figures as PNG and SVG bytes (matplotlib, Agg backend: no display needed).

matplotlib is optional at run time: :func:`available` says whether it imports, and
analysis without it still writes its tables, its report and the Results block.

Every figure is written twice, ``NAME.png`` (200 dpi, embedded in report.html) and
``NAME.svg`` (for a paper), and both are deterministic: the same analysis gives the same
bytes (no dates, no software tag, a fixed SVG id salt). docs/analysis.md describes each
figure.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from planner.analyze.findings import lower_is_better
from planner.analyze.stats import t_quantile
from planner.analyze.tables import Analysis, Cell, shown_null
from planner.analyze.views import (
    BestLevel, _fixed_text, _higher_is_better, _natural, _varying, best_levels, level_key, level_text, parse_params,
    selected_cells, sorted_levels,
)

#: Panels per small-multiples figure; further combinations are left to sweeps.csv.
MAX_PANELS = 16
#: Lines per panel and bars per figure: beyond this a plot is unreadable (and slow); the CSVs hold all.
MAX_LINES = 12
MAX_BARS = 40
#: Factor pairs that get a heatmap, and tasks per heatmap figure.
MAX_HEATMAPS = 6
MAX_HEATMAP_TASKS = 4
#: Heatmap cells that get their value written in them, and levels a heatmap's axis may have.
MAX_ANNOTATED = 150
MAX_HEATMAP_LEVELS = 12
#: PNG resolution: print quality for a paper's column width.
DPI = 200
_FLAG_COLOURS = {"improved": "#2a7", "none": "#888", "mild": "#e90", "severe": "#c22",
                 "no detectable change": "#888", "negligible": "#aaa", "untested": "#ccc"}
#: Fonts a printed figure can be read at: ticks 9 pt, labels and titles 10-11 pt.
_RC: dict[str, Any] = {
    "font.size": 10, "axes.labelsize": 10.5, "axes.titlesize": 10.5, "figure.titlesize": 11,
    "xtick.labelsize": 9, "ytick.labelsize": 9, "legend.fontsize": 9, "legend.title_fontsize": 9.5,
    "axes.spines.top": False, "axes.spines.right": False, "axes.grid": True, "grid.alpha": 0.25,
    # A fixed salt: SVG element ids are otherwise random per process, and the files must not change.
    "svg.hashsalt": "plan-experiment", "svg.fonttype": "path",
}


def available() -> bool:
    """True when matplotlib can be imported."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, stem: str) -> dict[str, bytes]:
    """``stem.png`` and ``stem.svg`` of a figure, then close it."""
    plt = _plt()
    out: dict[str, bytes] = {}
    with plt.rc_context(_RC):
        for fmt, meta in (("png", {"Software": None}), ("svg", {"Date": None, "Creator": None})):
            buf = io.BytesIO()
            # bbox "tight": legends sit right of the axes and long names must not be cut at the edge.
            fig.savefig(buf, format=fmt, dpi=DPI, metadata=meta, bbox_inches="tight")
            out[f"{stem}.{fmt}"] = buf.getvalue()
    plt.close(fig)
    return out


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "plot"


# --- levels: labels, order, scale and colour ------------------------------------------------

def _positions(factor: str, levels: list[Any]) -> tuple[list[float], bool]:
    """Where each level sits on the x axis, and whether the axis is logarithmic.

    Numbers on their own scale (log for learning rates, model sizes and levels spanning two
    decades); model names by parsed parameter count when every one parses; else categories.
    """
    if factor == "model":
        params = [parse_params(str(v)) for v in levels]
        if len(levels) >= 2 and all(p is not None for p in params):
            return [float(p) for p in params if p is not None], True
    nums = [v for v in levels if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if len(nums) == len(levels) and levels and all(v > 0 for v in nums):
        log = factor in ("learning_rate", "model_size") or max(nums) / min(nums) >= 100
        return [float(v) for v in nums], log
    return [float(i) for i in range(len(levels))], False


def colours(n: int, ordered: bool = False) -> list[Any]:
    """``n`` distinct colours: a sequential map for ordered levels, tab10 then tab20, else evenly spread hues.

    No colour is used twice in one figure, whatever ``n``.
    """
    from matplotlib import colormaps

    if ordered and n > 1:
        cmap = colormaps["viridis"]
        # Stop short of the pale yellow end: it vanishes on a white page.
        return [cmap(0.88 * i / (n - 1)) for i in range(n)]
    if n <= 10:
        return [colormaps["tab10"](i) for i in range(n)]
    if n <= 20:
        return [colormaps["tab20"](i) for i in range(n)]
    return [colormaps["turbo"](i / (n - 1)) for i in range(n)]


def _ordered(factor: str, levels: list[Any]) -> bool:
    return all(level_key(factor, v)[0] != 1 for v in levels) and len(levels) > 1


def _bounded(a: Analysis, cells: Sequence[Cell]) -> bool:
    """A share in [0, 1] (accuracy): every value inside it and a higher-is-better name; its axis shows 0-1."""
    if any(f.metric.bounded is False for f in a.findings):
        return False
    values = [v for c in cells for v in c.values]
    return bool(values) and not lower_is_better(a.metric) and all(0.0 <= v <= 1.0 for v in values)


def _metric_axis(ax: Any, a: Analysis, bounded: bool) -> None:
    ax.set_ylabel(a.metric)
    if bounded:
        # The metric's whole scale: a difference of two examples must look like one.
        ax.set_ylim(-0.02, 1.02)


def _legend_right(fig: Any, handles: list[Any], labels: list[str], title: str | None = None) -> None:
    """One legend right of every axis, outside the data."""
    if handles:
        fig.legend(handles, labels, title=title, loc="upper left", bbox_to_anchor=(1.0, 0.95), frameon=False)


def _one_seed_handle() -> Any:
    from matplotlib.lines import Line2D

    return Line2D([], [], marker="o", linestyle="none", markerfacecolor="none", markeredgecolor="#444",
                  label="hollow: 1 seed (test-set interval only)")


def _seed_handle() -> Any:
    from matplotlib.lines import Line2D

    return Line2D([], [], marker=".", linestyle="none", color="#444", alpha=0.5, label="small dots: each seed")


def _err(cells: Sequence[Cell]) -> np.ndarray:
    """Error-bar lengths from each cell's interval (seeds and test set); 0 where it has none."""
    lo, hi = [], []
    for c in cells:
        m = c.summary.mean if c.summary else math.nan
        lo.append(max(0.0, m - c.ci[0]) if c.ci[0] is not None else 0.0)
        hi.append(max(0.0, c.ci[1] - m) if c.ci[1] is not None else 0.0)
    return np.array([lo, hi])


def _draw_cells(ax: Any, xs: Sequence[float], cells: Sequence[Cell], colour: Any, label: str | None,
                linestyle: str = "-", seed_offsets: bool = True) -> Any:
    """Means joined by a line, 95 % error bars, hollow markers for one-seed cells, each seed as a small dot."""
    means = [c.summary.mean if c.summary else math.nan for c in cells]
    line = ax.errorbar(xs, means, yerr=_err(cells), color=colour, linestyle=linestyle, linewidth=1.3, capsize=3,
                       marker="none", label=label, zorder=2)
    # One artist per kind of mark, not per cell: a sweep of 2,000 runs drew 6,000 artists and took 40 s.
    one = [c.summary is not None and c.summary.n < 2 for c in cells]
    for hollow in (False, True):
        pts = [(x, m) for x, m, o in zip(xs, means, one) if o == hollow]
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", markersize=5, color=colour,
                    markerfacecolor="white" if hollow else colour, markeredgewidth=1.3, linestyle="none", zorder=3)
    if seed_offsets:
        sx = [x for x, c in zip(xs, cells) if len(c.values) > 1 for _ in c.values]
        sy = [v for c in cells if len(c.values) > 1 for v in c.values]
        if sx:
            ax.plot(sx, sy, marker=".", markersize=4, linestyle="none", color=colour, alpha=0.45, zorder=4)
    return line


def _handles(entries: list[tuple[Any, str]], cells: Iterable[Cell]) -> tuple[list[Any], list[str]]:
    """Legend entries plus the notes for seed dots and hollow one-seed markers when the figure has them."""
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=c, marker="o", linewidth=1.3) for c, _ in entries]
    labels = [text for _, text in entries]
    cells = list(cells)
    if any(len(c.values) > 1 for c in cells):
        handles.append(_seed_handle())
        labels.append("small dots: each seed")
    if any(c.summary is not None and c.summary.n < 2 for c in cells):
        handles.append(_one_seed_handle())
        labels.append("hollow: 1 seed (test-set interval only)")
    return handles, labels


def _ticks(ax: Any, factor: str, levels: list[Any], xs: list[float], log: bool) -> None:
    if log:
        ax.set_xscale("log")
    if factor == "model" or not log:
        # At most ~8 labels: dozens of rotated labels per panel are unreadable and slow to draw.
        step = max(1, math.ceil(len(levels) / 8))
        shown = list(range(0, len(levels), step))
        ax.set_xticks([xs[i] for i in shown], [level_text(factor, levels[i]) for i in shown],
                      rotation=20 if len(levels) > 4 else 0)
        ax.minorticks_off()
    elif factor == "learning_rate" or log:
        ax.set_xticks(xs, [level_text(factor, v) for v in levels])
        ax.minorticks_off()


# --- the cells a figure shows ---------------------------------------------------------------


def _base_means(a: Analysis) -> dict[tuple[str, str], float]:
    return {(c.model, c.task): c.summary.mean for c in a.cell_objs if c.kind == "base" and c.summary}


# --- figures --------------------------------------------------------------------------------


def loss_curves(a: Analysis) -> dict[str, bytes]:
    """One figure per model: replicate-mean loss per step of each condition, min-max band, epoch marks."""
    if a.loss.empty:
        return {}
    plt = _plt()
    runs = a.runs.set_index("run")
    # The tables keep object columns (values exactly as written): numbers for plotting.
    loss = a.loss.dropna(subset=["loss"]).astype({"step": int, "loss": float})
    loss["condition"] = loss["run"].map(runs["condition"])
    loss["model"] = loss["run"].map(runs["model"])
    out: dict[str, bytes] = {}
    for model in sorted(loss["model"].dropna().unique()):
        sub = loss[loss["model"] == model]
        conds = sorted(sub["condition"].unique(), key=lambda s: _natural(str(s)))[:MAX_LINES]
        with plt.rc_context(_RC):
            fig, ax = plt.subplots(figsize=(6.4, 3.8))
            for cond, colour in zip(conds, colours(len(conds))):
                g = sub[sub["condition"] == cond].groupby("step")["loss"].agg(["mean", "min", "max"])
                ax.plot(g.index, g["mean"], label=str(cond), linewidth=1.3, color=colour)
                ax.fill_between(g.index, g["min"], g["max"], alpha=0.2, color=colour, linewidth=0)
            for b in sub.groupby("epoch")["step"].max().dropna().tolist()[:-1]:
                ax.axvline(b + 0.5, color="#999", linestyle=":", linewidth=1)
            ax.set_xlabel("optimizer step (dotted: epoch ends)")
            ax.set_ylabel("training loss")
            ax.set_title(f"Training loss: {model}\nmean of seeds, band = min-max")
            handles, labels = ax.get_legend_handles_labels()
            _legend_right(fig, handles, labels, "condition")
            fig.tight_layout()
        out.update(_save(fig, f"loss_{_safe(str(model))}"))
    return out


def sweep_figures(a: Analysis) -> dict[str, bytes]:
    """One small-multiples figure per swept factor: a panel per combination of the other factors.

    Each panel: one line per task, the mean with its 95 % interval (seeds and test set),
    each seed as a dot, the base model dashed.
    """
    cells = selected_cells(a)
    if not cells:
        return {}
    plt = _plt()
    base = _base_means(a)
    bounded = _bounded(a, cells)
    tasks = sorted({c.task for c in cells}, key=_natural)[:MAX_LINES]
    task_colour = dict(zip(tasks, colours(len(tasks))))
    varying = _varying(cells)
    out: dict[str, bytes] = {}
    for factor in a.sweep_factors:
        others = [k for k in varying if k != factor]
        panels: dict[str, list[Cell]] = {}
        for c in cells:
            if factor in c.factors and c.task in task_colour:
                panels.setdefault(_fixed_text(c, others), []).append(c)
        keys = list(panels)[:MAX_PANELS]  # plan order
        if not keys:
            continue
        cols = min(4, len(keys))
        rows = math.ceil(len(keys) / cols)
        with plt.rc_context(_RC):
            fig, axes = plt.subplots(rows, cols, figsize=(3.3 * cols + 0.4, 2.9 * rows + 0.5), squeeze=False,
                                     sharey=True)
            for i, key in enumerate(keys):
                ax = axes[i // cols][i % cols]
                group = panels[key]
                levels = sorted_levels(factor, [c.factors.get(factor) for c in group])
                xs, log = _positions(factor, levels)
                at = {repr(v): x for v, x in zip(levels, xs)}
                for task in tasks:
                    t = sorted((c for c in group if c.task == task), key=lambda c: level_key(factor, c.factors.get(factor)))
                    if not t:
                        continue
                    _draw_cells(ax, [at[repr(c.factors.get(factor))] for c in t], t, task_colour[task], task)
                    model = str(t[0].factors.get("model"))
                    if (model, task) in base:
                        ax.axhline(base[(model, task)], linestyle="--", linewidth=1, color=task_colour[task], alpha=0.8)
                _ticks(ax, factor, levels, xs, log)
                ax.set_title(key or "all conditions", fontsize=9.5)
                ax.set_xlabel(factor)
                if i % cols == 0:
                    _metric_axis(ax, a, bounded)
                elif bounded:
                    ax.set_ylim(-0.02, 1.02)
            for j in range(len(keys), rows * cols):
                axes[j // cols][j % cols].axis("off")
            handles, labels = _handles([(task_colour[t], t) for t in tasks], cells)
            if base:
                from matplotlib.lines import Line2D

                handles.append(Line2D([], [], linestyle="--", color="#444"))
                labels.append("dashed: base model")
            _legend_right(fig, handles, labels, "task")
            more = f" (first {MAX_PANELS} of {len(panels)} panels)" if len(panels) > MAX_PANELS else ""
            fig.suptitle(f"{a.metric} by {factor}: mean of seeds with 95 % CI{more}")
            fig.tight_layout()
        out.update(_save(fig, f"sweep_{_safe(factor)}"))
    return out


def accuracy_by_epoch(a: Analysis) -> dict[str, bytes]:
    """A panel per task: each condition's mean by epoch with its interval; the base model dashed."""
    cells = [c for c in a.cell_objs if c.summary is not None]
    tasks = sorted({c.task for c in cells}, key=_natural)
    if not tasks:
        return {}
    plt = _plt()
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    conds = sorted({c.condition for c in cells if c.kind != "base"}, key=_natural)
    shown = conds[:MAX_LINES]
    colour = dict(zip(shown, colours(len(shown))))
    bounded = _bounded(a, cells)
    with plt.rc_context(_RC):
        fig, axes = plt.subplots(1, len(tasks), figsize=(4.2 * len(tasks) + 0.4, 3.4), squeeze=False, sharey=True)
        for i, (ax, task) in enumerate(zip(axes[0], tasks)):
            for cond in shown:
                group = sorted((c for c in cells if c.task == task and c.condition == cond), key=lambda c: c.epoch or 0)
                if group:
                    _draw_cells(ax, [float(c.epoch or 0) for c in group], group, colour[cond], cond)
            for c in cells:
                if c.task == task and c.kind == "base" and c.summary:
                    ax.axhline(c.summary.mean, linestyle="--", color="#444", linewidth=1)
            ax.set_title(task)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_xlabel("epoch")
            if i == 0:
                _metric_axis(ax, a, bounded)
            elif bounded:
                ax.set_ylim(-0.02, 1.02)
        handles, labels = _handles([(colour[c], c) for c in shown], [c for c in cells if c.kind != "base"])
        if any(c.kind == "base" for c in cells):
            handles.append(Line2D([], [], linestyle="--", color="#444"))
            labels.append("dashed: base model")
        more = f" (first {MAX_LINES} of {len(conds)})" if len(conds) > MAX_LINES else ""
        _legend_right(fig, handles, labels, f"condition{more}")
        fig.suptitle(f"{a.metric} by epoch: mean of seeds with 95 % CI")
        fig.tight_layout()
    return _save(fig, "accuracy_by_epoch")


def delta_figure(a: Analysis) -> dict[str, bytes]:
    """Relative change against the base model of every fine-tuned evaluation, coloured by flag."""
    deltas = a.tables["deltas"]
    rows = [dict(zip(deltas.columns, r)) for r in deltas.rows]
    rows = [r for r in rows if r["flag"] is not None]
    if not rows:
        return {}
    total = len(rows)
    if total > MAX_BARS:
        rows = sorted(rows, key=lambda r: r["rel_delta_pct"] if r["rel_delta_pct"] is not None else 0.0)[:MAX_BARS]
    plt = _plt()
    from matplotlib.patches import Patch

    with plt.rc_context(_RC):
        fig, ax = plt.subplots(figsize=(6.4, 0.32 * len(rows) + 1.5))
        labels = [f"{r['run']} / {r['task']} (epoch {r['epoch']})" for r in rows]
        values = [r["rel_delta_pct"] if r["rel_delta_pct"] is not None else 0.0 for r in rows]
        ax.barh(range(len(rows)), values, color=[_FLAG_COLOURS.get(r["flag"], "#888") for r in rows])
        ax.set_yticks(range(len(rows)), labels)
        ax.invert_yaxis()
        for x in (-a.thresholds.mild_pct, -a.thresholds.severe_pct):
            ax.axvline(x, linestyle="--", color="#999", linewidth=1)
        ax.axvline(0, color="#000", linewidth=0.8)
        ax.set_xlabel(f"change in {a.metric} against the base model (%)")
        shown = "" if total <= MAX_BARS else f"; the {MAX_BARS} largest drops of {total}"
        ax.set_title(f"Each evaluation against base\ndashed: mild and severe thresholds{shown}")
        flags = sorted({r["flag"] for r in rows}, key=lambda f: list(_FLAG_COLOURS).index(f) if f in _FLAG_COLOURS else 99)
        _legend_right(fig, [Patch(color=_FLAG_COLOURS.get(f, "#888")) for f in flags], flags, "verdict")
        fig.tight_layout()
    return _save(fig, "deltas")


# --- scaling: power laws, best learning rate, heatmaps --------------------------------------


@dataclass(frozen=True)
class PowerLaw:
    """``y = exp(a) * x ** b``, fitted by least squares of ``log y`` on ``log x``.

    Attributes:
        a, b: intercept and exponent on the log-log scale.
        b_low, b_high: Student-t 95 % interval of the exponent (None with two points: an exact fit).
        n: points fitted.
        s: residual standard deviation on the log scale (None with two points).
    """

    a: float
    b: float
    b_low: float | None
    b_high: float | None
    n: int
    s: float | None
    mean_u: float
    sxx: float

    def predict(self, x: Sequence[float] | np.ndarray) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """The fitted ``y`` at ``x`` and the 95 % band of the fitted mean (None without residual df)."""
        u = np.log(np.asarray(x, dtype=float))
        mid = self.a + self.b * u
        if self.s is None:
            return np.exp(mid), None, None
        half = t_quantile(0.975, self.n - 2) * self.s * np.sqrt(1.0 / self.n + (u - self.mean_u) ** 2 / self.sxx)
        return np.exp(mid), np.exp(mid - half), np.exp(mid + half)


def fit_power_law(x: Sequence[float], y: Sequence[float]) -> PowerLaw | None:
    """Least squares of ``log y = a + b log x`` over points with ``x, y > 0``; None under two distinct x.

    The interval of ``b`` and the band of :meth:`PowerLaw.predict` are Student-t with
    ``n - 2`` degrees of freedom on the log scale (ordinary least-squares theory): with
    four model sizes they are wide, and that is the answer.
    """
    pts = [(float(xi), float(yi)) for xi, yi in zip(x, y)
           if xi is not None and yi is not None and xi > 0 and yi > 0 and math.isfinite(xi) and math.isfinite(yi)]
    if len({p[0] for p in pts}) < 2:
        return None
    u = np.log([p[0] for p in pts])
    v = np.log([p[1] for p in pts])
    n = len(pts)
    mu = float(u.mean())
    sxx = float(((u - mu) ** 2).sum())
    b = float(((u - mu) * (v - v.mean())).sum() / sxx)
    a = float(v.mean() - b * mu)
    if n < 3:
        return PowerLaw(a, b, None, None, n, None, mu, sxx)
    resid = v - (a + b * u)
    s = float(math.sqrt(float((resid ** 2).sum()) / (n - 2)))
    half = t_quantile(0.975, n - 2) * s / math.sqrt(sxx)
    return PowerLaw(a, b, b - half, b + half, n, s, mu, sxx)


def _fit_transform(a: Analysis, bounded: bool) -> tuple[str, Callable[[float], float], Callable[[np.ndarray], np.ndarray]]:
    """What the power law is fitted to: the error ``1 - metric`` of a share, else the metric itself.

    Returns:
        (its name, metric -> fitted value, fitted value -> metric).
    """
    if bounded and _higher_is_better(a):
        return f"1 - {a.metric}", lambda m: 1.0 - m, lambda e: 1.0 - e
    return a.metric, lambda m: m, lambda e: e


def _tuned(a: Analysis, cells: Sequence[Cell], axis: str, tune: str | None) -> dict[tuple[str, str], list[Cell]]:
    """Lines of a scaling plot: ``(task, other levels) -> cells along ``axis``.

    With ``tune`` (the learning rate) swept, each point is the cell with the best mean over
    its levels, as scaling studies tune it per point (an optimistic pick, said in the title).
    """
    hib = _higher_is_better(a)
    others = [k for k in _varying(cells) if k not in (axis, tune)]
    best: dict[tuple[str, str, str], Cell] = {}
    for c in cells:
        if axis not in c.factors:
            continue
        key = (c.task, _fixed_text(c, others), repr(c.factors.get(axis)))
        prev = best.get(key)
        m = c.summary.mean if c.summary else math.nan
        if prev is None or (m > prev.summary.mean if hib else m < prev.summary.mean):  # type: ignore[union-attr]
            best[key] = c
    lines: dict[tuple[str, str], list[Cell]] = {}
    for (task, fixed, _), c in best.items():
        lines.setdefault((task, fixed), []).append(c)
    return lines


def _axis_value(factor: str, value: Any) -> float | None:
    if factor == "model":
        return parse_params(str(value))
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return float(value)
    return None


def scaling_figure(a: Analysis, axis: str) -> dict[str, bytes]:
    """``axis`` (model parameters or training examples) on a log scale against the metric, with a power-law fit.

    One line per combination of the other factors (the learning rate tuned per point when
    swept); each fit and its 95 % band drawn dashed, its exponent in the legend.
    """
    cells = selected_cells(a)
    if axis not in a.sweep_factors or not cells:
        return {}
    levels = sorted_levels(axis, [c.factors.get(axis) for c in cells])
    placed = [v for v in levels if _axis_value(axis, v) is not None]
    if len(placed) < 2 or (axis == "model" and len(placed) < len(levels)):
        return {}
    dropped = [level_text(axis, v) for v in levels if _axis_value(axis, v) is None]
    tune = "learning_rate" if "learning_rate" in a.sweep_factors and axis != "learning_rate" else None
    lines = _tuned(a, cells, axis, tune)
    tasks = sorted({t for t, _ in lines}, key=_natural)[:MAX_HEATMAP_TASKS]
    bounded = _bounded(a, cells)
    name, forward, back = _fit_transform(a, bounded)
    plt = _plt()
    keys = sorted({f for t, f in lines if t in tasks}, key=_natural)[:MAX_LINES]
    palette = dict(zip(keys, colours(len(keys), ordered=len(keys) > 1)))
    with plt.rc_context(_RC):
        fig, axes = plt.subplots(1, len(tasks), figsize=(4.6 * len(tasks) + 0.4, 3.6), squeeze=False, sharey=True)
        handles: list[Any] = []
        labels: list[str] = []
        for i, (ax, task) in enumerate(zip(axes[0], tasks)):
            for key in keys:
                line = [c for c in lines.get((task, key), []) if _axis_value(axis, c.factors.get(axis)) is not None]
                line.sort(key=lambda c: _axis_value(axis, c.factors.get(axis)) or 0.0)
                if not line:
                    continue
                xs = [_axis_value(axis, c.factors.get(axis)) or 0.0 for c in line]
                h = _draw_cells(ax, xs, line, palette[key], None)
                fit = fit_power_law(xs, [forward(c.summary.mean) for c in line if c.summary])
                text = key or "all"
                if fit is not None:
                    grid = np.geomspace(min(xs), max(xs), 50)
                    mid, lo, hi = fit.predict(grid)
                    ax.plot(grid, back(mid), linestyle="--", linewidth=1, color=palette[key])
                    if lo is not None and hi is not None:
                        ax.fill_between(grid, back(lo), back(hi), color=palette[key], alpha=0.12, linewidth=0)
                    ci = "" if fit.b_low is None else f" [{fit.b_low:+.2f}, {fit.b_high:+.2f}]"
                    text += f": b = {fit.b:+.2f}{ci}"
                if i == 0:
                    handles.append(h)
                    labels.append(text)
            ax.set_xscale("log")
            ax.set_xticks([_axis_value(axis, v) or 0.0 for v in placed], [level_text(axis, v) for v in placed])
            ax.minorticks_off()
            ax.set_xlabel("parameters (log scale)" if axis == "model" else f"{axis} (log scale)")
            ax.set_title(task)
            if i == 0:
                _metric_axis(ax, a, bounded)
            elif bounded:
                ax.set_ylim(-0.02, 1.02)
        h2, l2 = _handles([], [c for ls in lines.values() for c in ls])
        tuned = f"; best {tune} per point" if tune else ""
        note = f" ({', '.join(dropped)}: size unknown, not shown)" if dropped else ""
        _legend_right(fig, handles + h2, labels + l2, f"fit: {name} = e^a x^b")
        fig.suptitle(f"{a.metric} against {'model size' if axis == 'model' else axis}{tuned}{note}\n"
                     "dashed: power-law fit with 95 % band")
        fig.tight_layout()
    return _save(fig, f"scaling_{'params' if axis == 'model' else _safe(axis)}")


def best_lr_figure(a: Analysis) -> dict[str, bytes]:
    """The best learning rate per model size (log-log), one marker series per combination of the other factors."""
    rows = best_levels(a)
    if not rows:
        return {}
    plt = _plt()
    tasks = sorted({r.task for r in rows}, key=_natural)[:MAX_HEATMAP_TASKS]
    fixed = sorted({r.fixed for r in rows}, key=_natural)[:MAX_LINES]
    palette = dict(zip(fixed, colours(len(fixed), ordered=len(fixed) > 1)))
    models = sorted_levels("model", [r.by for r in rows])
    xs, log = _positions("model", models)
    at = {repr(v): x for v, x in zip(models, xs)}
    lrs = sorted_levels("learning_rate", [c.factors.get("learning_rate") for c in selected_cells(a)])
    with plt.rc_context(_RC):
        fig, axes = plt.subplots(1, len(tasks), figsize=(4.2 * len(tasks) + 0.4, 3.4), squeeze=False, sharey=True)
        for i, (ax, task) in enumerate(zip(axes[0], tasks)):
            for j, key in enumerate(fixed):
                pts = [r for r in rows if r.task == task and r.fixed == key]
                # Series side by side (a few percent apart on the x axis) so equal picks do not hide each other.
                shift = (j - (len(fixed) - 1) / 2) * 0.06
                px = [at[repr(r.by)] * (math.exp(shift) if log else 1.0) + (0.0 if log else shift) for r in pts]
                ax.plot(px, [r.level for r in pts], marker="o", linestyle="-", linewidth=1, color=palette[key],
                        label=key or "all")
            _ticks(ax, "model", models, xs, log)
            ax.set_yscale("log")
            ax.set_yticks([float(v) for v in lrs], [level_text("learning_rate", v) for v in lrs])
            ax.minorticks_off()
            ax.set_xlabel("model (log parameters)" if log else "model")
            ax.set_title(task)
            if i == 0:
                ax.set_ylabel("best learning rate")
        handles, labels = axes[0][0].get_legend_handles_labels()
        _legend_right(fig, handles, labels, "other factors")
        fig.suptitle(f"Learning rate with the best mean {a.metric} per model size")
        fig.tight_layout()
    return _save(fig, "best_learning_rate")


def heatmaps(a: Analysis) -> dict[str, bytes]:
    """For each pair of swept factors: the mean over the other factors' levels of each cell mean, annotated."""
    cells = selected_cells(a)
    factors = [f for f in a.sweep_factors if f in _varying(cells)]
    pairs = [(f, g) for i, f in enumerate(factors) for g in factors[i + 1:]][:MAX_HEATMAPS]
    if not pairs:
        return {}
    plt = _plt()
    tasks = sorted({c.task for c in cells}, key=_natural)[:MAX_HEATMAP_TASKS]
    out: dict[str, bytes] = {}
    means: dict[tuple[str, str, str], list[float]] = {}
    for c in cells:
        if c.summary is not None:
            for fy, fx in pairs:
                means.setdefault((c.task, f"{fy}={c.factors.get(fy)!r}", f"{fx}={c.factors.get(fx)!r}"), []).append(
                    c.summary.mean)
    for fy, fx in pairs:
        ylv = sorted_levels(fy, [c.factors.get(fy) for c in cells])
        xlv = sorted_levels(fx, [c.factors.get(fx) for c in cells])
        if max(len(ylv), len(xlv)) > MAX_HEATMAP_LEVELS:
            continue  # a 50-column heatmap is a wall of colour: sweeps.csv and the sweep plots show it
        with plt.rc_context(_RC):
            fig, axes = plt.subplots(1, len(tasks), figsize=((0.8 * len(xlv) + 2.0) * len(tasks) + 1.2,
                                                             0.5 * len(ylv) + 1.8), squeeze=False)
            for ax, task in zip(axes[0], tasks):
                grid = np.full((len(ylv), len(xlv)), np.nan)
                for yi, yv in enumerate(ylv):
                    for xi, xv in enumerate(xlv):
                        ms = means.get((task, f"{fy}={yv!r}", f"{fx}={xv!r}"))
                        if ms:
                            grid[yi, xi] = sum(ms) / len(ms)
                finite = grid[np.isfinite(grid)]
                lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
                im = ax.imshow(grid, cmap="viridis", aspect="auto", vmin=lo, vmax=hi if hi > lo else lo + 1e-9,
                               origin="lower")
                # Numbers only where they can be read: past MAX_ANNOTATED cells the colour bar tells.
                for yi in range(len(ylv) if grid.size <= MAX_ANNOTATED else 0):
                    for xi in range(len(xlv)):
                        v = grid[yi, xi]
                        if np.isfinite(v):
                            light = hi > lo and (v - lo) / (hi - lo) < 0.6
                            ax.text(xi, yi, f"{v:.3f}", ha="center", va="center", fontsize=9,
                                    color="white" if light else "black")
                ax.set_xticks(range(len(xlv)), [level_text(fx, v) for v in xlv], rotation=30 if len(xlv) > 4 else 0)
                ax.set_yticks(range(len(ylv)), [level_text(fy, v) for v in ylv])
                ax.grid(False)
                ax.set_xlabel(fx)
                ax.set_ylabel(fy)
                ax.set_title(task)
                fig.colorbar(im, ax=ax, label=f"mean {a.metric}", shrink=0.9)
            rest = [f for f in factors if f not in (fx, fy)]
            fig.suptitle(f"{a.metric}: {fy} x {fx}" + (f" (mean over {', '.join(rest)})" if rest else ""))
            fig.tight_layout()
        out.update(_save(fig, f"heatmap_{_safe(fy)}_x_{_safe(fx)}"))
    return out


def all_plots(a: Analysis) -> dict[str, bytes]:
    """Every figure, by file name (each as ``.png`` and ``.svg``)."""
    out: dict[str, bytes] = {}
    makers: list[Callable[[Analysis], dict[str, bytes]]] = [
        lambda x: scaling_figure(x, "model"), lambda x: scaling_figure(x, "train_samples"), best_lr_figure,
        sweep_figures, heatmaps, accuracy_by_epoch, delta_figure, loss_curves]
    for make in makers:
        out.update(make(a))
    return out


__all__ = ["BestLevel", "PowerLaw", "all_plots", "available", "best_levels", "fit_power_law", "level_text",
           "parse_params", "sorted_levels"]
