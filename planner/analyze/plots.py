"""The analysis plots as PNG bytes (matplotlib, Agg backend: no display needed).

matplotlib is optional at run time: :func:`available` says whether it imports, and
analysis without it still writes its tables, its report and the Results block.
"""

from __future__ import annotations

import io
import math
import re
from typing import Any

from planner.analyze.tables import Analysis

#: Panels per small-multiples figure; further combinations are left to sweeps.csv.
MAX_PANELS = 16
#: Lines per panel and bars per figure: beyond this a plot is unreadable (and slow); the CSVs hold all.
MAX_LINES = 12
MAX_BARS = 40
_FLAG_COLOURS = {"improved": "#2a7", "none": "#888", "mild": "#e90", "severe": "#c22"}


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


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    # No software/date metadata: the same analysis must give the same bytes.
    # bbox "tight": long condition names as tick labels must not be cut at the edge.
    fig.savefig(buf, format="png", dpi=90, metadata={"Software": None}, bbox_inches="tight")
    _plt().close(fig)
    return buf.getvalue()


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "plot"


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
        fig, ax = plt.subplots(figsize=(7, 4))
        for cond in sorted(sub["condition"].unique())[:MAX_LINES]:
            g = sub[sub["condition"] == cond].groupby("step")["loss"].agg(["mean", "min", "max"])
            line = ax.plot(g.index, g["mean"], label=cond, linewidth=1.2)
            ax.fill_between(g.index, g["min"], g["max"], alpha=0.2, color=line[0].get_color())
        bounds = sub.groupby("epoch")["step"].max().dropna().tolist()[:-1]
        for b in bounds:
            ax.axvline(b + 0.5, color="#999", linestyle=":", linewidth=1)
        ax.set_xlabel("optimizer step (dotted: epoch ends)")
        ax.set_ylabel("training loss")
        ax.set_title(f"Training loss: {model} (mean of seeds, band = min-max)")
        ax.legend(fontsize=7)
        fig.tight_layout()
        out[f"loss_{_safe(str(model))}.png"] = _png(fig)
    return out


def _log_axis(factor: str, levels: list[Any]) -> bool:
    nums = [v for v in levels if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if factor in ("learning_rate", "model_size") and len(nums) == len(levels) and all(v > 0 for v in nums):
        return True
    return len(nums) == len(levels) and all(v > 0 for v in nums) and max(nums) / min(nums) >= 100


def sweep_figures(a: Analysis) -> dict[str, bytes]:
    """One small-multiples figure per swept factor: a panel per combination of the other factors."""
    if a.sweeps.empty:
        return {}
    plt = _plt()
    base = {(c.model, c.task): c.summary.mean for c in a.cell_objs if c.kind == "base" and c.summary}
    out: dict[str, bytes] = {}
    for factor in a.sweep_factors:
        sub = a.sweeps[a.sweeps["factor"] == factor]
        panels = list(dict.fromkeys(sub["fixed"]))[:MAX_PANELS]  # plan order
        if not panels:
            continue
        cols = min(4, len(panels))
        rows = math.ceil(len(panels) / cols)
        fig, axes = plt.subplots(rows, cols, figsize=(max(6.0, 3.2 * cols), 2.6 * rows + 0.6), squeeze=False, sharey=True)
        for i, fixed in enumerate(panels):
            ax = axes[i // cols][i % cols]
            p = sub[sub["fixed"] == fixed]
            levels = list(dict.fromkeys(p["level"]))
            numeric = _log_axis(factor, levels)
            for task in sorted(p["task"].unique())[:MAX_LINES]:
                t = p[p["task"] == task]
                xs = [float(v) for v in t["level"]] if numeric else list(range(len(t)))
                mean = t["mean"].astype(float)
                err = [(mean - t["ci_low"].astype(float)).fillna(0).clip(lower=0).tolist(),
                       (t["ci_high"].astype(float) - mean).fillna(0).clip(lower=0).tolist()]
                line = ax.errorbar(xs, mean, yerr=err, marker="o", markersize=3, capsize=3 if len(xs) <= 8 else 0,
                                   label=task, linewidth=1)
                model = re.search(r"model=([^;]*)", fixed)
                if model and (model.group(1), task) in base:
                    ax.axhline(base[(model.group(1), task)], linestyle="--", linewidth=1,
                               color=line[0].get_color(), alpha=0.8)
            if numeric:
                ax.set_xscale("log")
            else:
                # At most ~8 labels: dozens of rotated labels per panel are unreadable and slow to draw.
                step = max(1, math.ceil(len(levels) / 8))
                ticks = list(range(0, len(levels), step))
                ax.set_xticks(ticks, [str(levels[i]) for i in ticks], fontsize=7, rotation=20)
            ax.set_title(fixed, fontsize=7)
            ax.set_xlabel(factor, fontsize=8)
        for j in range(len(panels), rows * cols):
            axes[j // cols][j % cols].axis("off")
        axes[0][0].set_ylabel(a.metric)
        if sub["task"].nunique() <= MAX_LINES:
            axes[0][0].legend(fontsize=7)
        fig.suptitle(f"{a.metric} by {factor} (mean of seeds, 95 % CI; dashed: base model)", fontsize=9)
        fig.tight_layout() if len(panels) <= 4 else fig.subplots_adjust(hspace=0.6, wspace=0.15, top=0.9)
        out[f"sweep_{_safe(factor)}.png"] = _png(fig)
    return out


def accuracy_by_epoch(a: Analysis) -> dict[str, bytes]:
    """A panel per task: each condition's mean by epoch with its interval; the base model dashed."""
    cells = [c for c in a.cell_objs if c.summary is not None]
    tasks = sorted({c.task for c in cells})
    if not tasks:
        return {}
    plt = _plt()
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(1, len(tasks), figsize=(5 * len(tasks), 3.6), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        conds: dict[str, list[Any]] = {}
        for c in cells:
            if c.task == task and c.kind != "base":
                conds.setdefault(c.condition, []).append(c)
        shown = list(conds)[:MAX_LINES]
        for cond in shown:
            group = conds[cond]
            group.sort(key=lambda c: c.epoch or 0)
            xs = [c.epoch for c in group]
            ys = [c.summary.mean for c in group if c.summary]
            err = [[max(0.0, c.summary.mean - c.summary.ci_low) if c.summary and c.summary.ci_low is not None else 0.0
                    for c in group],
                   [max(0.0, c.summary.ci_high - c.summary.mean) if c.summary and c.summary.ci_high is not None else 0.0
                    for c in group]]
            ax.errorbar(xs, ys, yerr=err, marker="o", capsize=3, label=cond, linewidth=1)
        for c in cells:
            if c.task == task and c.kind == "base" and c.summary:
                ax.axhline(c.summary.mean, linestyle="--", color="#444", linewidth=1, label=c.condition)
        ax.set_title(task if len(conds) <= MAX_LINES else f"{task} (first {MAX_LINES} of {len(conds)} conditions)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel(a.metric)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return {"accuracy_by_epoch.png": _png(fig)}


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
    fig, ax = plt.subplots(figsize=(7, 0.3 * len(rows) + 1.4))
    labels = [f"{r['run']} / {r['task']} (epoch {r['epoch']})" for r in rows]
    values = [r["rel_delta_pct"] if r["rel_delta_pct"] is not None else 0.0 for r in rows]
    ax.barh(range(len(rows)), values, color=[_FLAG_COLOURS.get(r["flag"], "#888") for r in rows])
    ax.set_yticks(range(len(rows)), labels, fontsize=7)
    ax.invert_yaxis()
    for x in (-a.thresholds.mild_pct, -a.thresholds.severe_pct):
        ax.axvline(x, linestyle="--", color="#999", linewidth=1)
    ax.axvline(0, color="#000", linewidth=0.8)
    ax.set_xlabel(f"change in {a.metric} against the base model (%)")
    shown = "" if total <= MAX_BARS else f"; the {MAX_BARS} largest drops of {total}"
    ax.set_title(f"Each evaluation against base (dashed: mild and severe thresholds{shown})", fontsize=9)
    fig.tight_layout()
    return {"deltas.png": _png(fig)}


def all_plots(a: Analysis) -> dict[str, bytes]:
    """Every figure, by file name."""
    out: dict[str, bytes] = {}
    for make in (loss_curves, sweep_figures, accuracy_by_epoch, delta_figure):
        out.update(make(a))
    return out


__all__ = ["all_plots", "available"]
