"""The analysis as text: the Results block of experiment_summary.md and report.html. Pure.

Nothing here carries a clock time, so analysing the same folders twice gives the same
bytes.
"""

from __future__ import annotations

import base64
import html
from typing import Any

from planner.analyze.findings import Finding, question_factors
from planner.analyze.inference import CORRECTION_NAMES
from planner.analyze.tables import Analysis
from planner.folder.markdown import md_cell, md_code, md_table

RESULTS_BLOCK = "results"

ANALYSIS_FILES = ("runs.csv", "evals.csv", "cells.csv", "deltas.csv", "findings.csv", "sweeps.csv", "loss.csv")

_HEADLINE_HEADERS = ["Condition", "Task", "Epoch", "mean [95 % CI]", "Base", "Δ [95 % CI]", "Δ %", "p (adj.)",
                     "Verdict", "Best vs last epoch"]

#: How many incomplete units the summary lists before it counts the rest.
MAX_LISTED = 20


def _num(v: Any, spec: str = "+.3f") -> str:
    return "-" if v is None else format(v, spec)


def headline_table_rows(a: Analysis, limit: int | None = None) -> list[list[Any]]:
    """The headline table's cells (the first ``limit`` rows), shared by the summary, the report and the terminal."""
    return [[r["condition"], r["task"], "-" if r["epoch"] is None else r["epoch"], r["result"], r["base"],
             r.get("effect_ci") or _num(r["delta"]), _num(r["rel_delta_pct"], "+.1f"), _p(r.get("p_adjusted")),
             r["flag"] or "-", r["best_vs_last"]]
            for r in a.headline[:limit]]


def _p(p: float | None) -> str:
    if p is None:
        return "-"
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def _finding_line(f: Finding) -> str:
    """``A vs B: effect [CI] (rel %), p, adjusted p: verdict`` in words a reader can quote."""
    t = f.tested
    where = f"{md_code(f.task)}, epoch {f.epoch}" + (f", {md_code(f.fixed)}" if f.fixed else "")
    if t is None:
        return f"{md_code(f.a)} vs {md_code(f.b)} ({where}): {f.verdict} ({f.note})"
    rel = "" if f.rel_pct is None or f.kind == "trend" else f" ({f.rel_pct:+.1f} %)"
    scale = f" {f.scale}" if f.kind == "trend" else ""
    basis = "" if t.n_seeds > 1 or t.ci_basis != "examples only (1 seed)" else ", 1 seed: test-set interval"
    return (f"{md_code(f.a)} vs {md_code(f.b)} ({where}): {_fmt3(f.a_mean)} vs {_fmt3(f.b_mean)}, "
            f"Δ {t.effect:+.3f}{scale} [95 % CI {t.ci_low:+.3f}, {t.ci_high:+.3f}]{rel}, {t.test} p {_p_is(t.p)}, "
            f"adjusted p {_p_is(f.p_adjusted)}{basis}: **{f.verdict}**")


def _p_is(p: float | None) -> str:
    """``= 0.012`` or ``< 0.001``: a p-value after its relation."""
    text = _p(p)
    return text if text.startswith("<") else f"= {text}"


def _fmt3(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"


#: How many findings of one kind the Results block lists before it points to findings.csv.
MAX_FINDINGS = 12


def answer_lines(a: Analysis, question: str) -> list[str]:
    """The answer to the spec's question: its factors' contrasts and trends, then fine-tuning against base."""
    th = a.thresholds
    factors, named = question_factors(question, a.sweep_factors)
    tested = sum(1 for f in a.findings if f.tested is not None)
    # md_cell: a question is one line, and a '<' in it never opens a tag or a block marker.
    lines = [f"**Question:** {md_cell(question) if question else '(not stated in the spec)'}", "",
             f"**Answer** ({a.metric}; each claim is a paired test, adjusted over the {tested} tested findings of "
             f"this analysis by {CORRECTION_NAMES[th.correction]} at alpha = {th.alpha:g}):"]
    if not a.findings:
        return lines + ["- no finding can be made yet: no evaluation has results (see Incomplete units)"]
    for factor in factors:
        rows = [f for f in a.findings if f.factor == factor and f.kind in ("main effect", "contrast", "trend")]
        if not rows:
            continue
        note = "" if named else " (the question names no factor: every swept one is shown)"
        for task in dict.fromkeys(f.task for f in rows):
            of_task = [f for f in rows if f.task == task]
            lines.append(f"- {md_code(factor)} on {md_code(task)}{note}:")
            best = _best_level(of_task, a)
            if best:
                lines.append(f"  - {best}")
            for f in sorted(of_task, key=lambda f: (f.p_adjusted is None, f.p_adjusted or 1.0))[:MAX_FINDINGS]:
                lines.append(f"  - {_finding_line(f)}")
            if len(of_task) > MAX_FINDINGS:
                lines.append(f"  - ... and {len(of_task) - MAX_FINDINGS} more (analysis/findings.csv)")
    inter = [f for f in a.findings if f.kind == "interaction" and any(p in factors for p in f.factor.split(" x "))]
    if inter:
        lines.append("- interactions (does one factor's effect depend on another's level?):")
        for f in sorted(inter, key=lambda f: (f.p_adjusted is None, f.p_adjusted or 1.0))[:MAX_FINDINGS]:
            lines.append(f"  - {md_code(f.factor)}: {_finding_line(f)}")
    base = [f for f in a.findings if f.kind == "vs base"]
    if base:
        counts = {v: sum(f.verdict == v for f in base) for v in
                  ("improved", "negligible", "no detectable change", "mild", "severe", "untested")}
        lines.append(f"- fine-tuning against the base model ({len(base)}): "
                     + ", ".join(f"{k} {n}" for k, n in counts.items() if n) + ":")
        order = {"severe": 0, "mild": 1, "improved": 2, "negligible": 3, "no detectable change": 4, "untested": 5}
        for f in sorted(base, key=lambda f: order.get(f.verdict, 9))[:MAX_FINDINGS]:
            lines.append(f"  - {_finding_line(f)}")
        if len(base) > MAX_FINDINGS:
            lines.append(f"  - ... and {len(base) - MAX_FINDINGS} more (analysis/findings.csv)")
    lines += ["", f"Verdicts: `improved`, `mild` and `severe` need an adjusted p below {th.alpha:g} *and* a change of "
              f"at least {th.mild_pct:g} % (`severe`: {th.severe_pct:g} %) of the base value; a significant smaller "
              "change is `negligible`; otherwise `no detectable change`: the data cannot tell, which is not "
              "evidence of no effect. Methods: the planner's docs/analysis.md."]
    return lines


def _best_level(rows: list[Finding], a: Analysis) -> str | None:
    """``best: X (mean), margin over the runner-up ...`` from the pairwise contrasts of one task."""
    # The marginal means (main effects) when the design has them, else the first group of contrasts.
    mains = [f for f in rows if f.kind == "main effect" and f.a_mean is not None and f.b_mean is not None]
    contrasts = mains or [f for f in rows if f.kind == "contrast" and f.a_mean is not None and f.b_mean is not None]
    if not contrasts:
        return None
    hib = contrasts[0].metric.higher_is_better
    # Among one fixed combination of the other factors at a time; the first such group in plan order.
    fixed = contrasts[0].fixed
    group = [f for f in contrasts if f.fixed == fixed]
    means: dict[str, float] = {}
    for f in group:
        means.setdefault(f.a, f.a_mean)  # type: ignore[arg-type]
        means.setdefault(f.b, f.b_mean)  # type: ignore[arg-type]
    ranked = sorted(means, key=lambda k: means[k], reverse=hib)
    if len(ranked) < 2:
        return None
    top, second = ranked[0], ranked[1]
    pair = next((f for f in group if {f.a, f.b} == {top, second}), None)
    where = f" ({md_code(fixed)})" if fixed else ""
    if means[top] == means[second]:
        tied = [k for k in ranked if means[k] == means[top]]
        return f"no level is best{where}: {', '.join(md_code(k) for k in tied)} all {means[top]:.3f}"
    if pair is None or pair.tested is None:
        return f"best {md_code(top)}{where}: {means[top]:.3f}; runner-up {md_code(second)}: {means[second]:.3f} (untested)"
    t = pair.tested
    sign = 1 if pair.a == top else -1
    lo, hi = sorted((sign * t.ci_low, sign * t.ci_high))
    sig = "significant" if pair.p_adjusted is not None and pair.p_adjusted < a.thresholds.alpha else "not significant"
    return (f"best {md_code(top)}{where}: {means[top]:.3f}; margin over the runner-up {md_code(second)} "
            f"{sign * t.effect:+.3f} [95 % CI {lo:+.3f}, {hi:+.3f}], adjusted p {_p_is(pair.p_adjusted)}: {sig}")


def headline_headers() -> list[str]:
    """Column titles of the headline table."""
    return list(_HEADLINE_HEADERS)


def _incomplete_lines(a: Analysis) -> list[str]:
    if not a.incomplete:
        return ["- none: every planned run and evaluation has its results"]
    lines = [f"- {md_code(u)}" for u in a.incomplete[:MAX_LISTED]]
    if len(a.incomplete) > MAX_LISTED:
        lines.append(f"- ... and {len(a.incomplete) - MAX_LISTED} more (see analysis/evals.csv)")
    return lines


def results_block(a: Analysis, question: str = "") -> str:
    """The inside of the Results block: the answer first, then the headline table and what is missing."""
    lines = [
        *answer_lines(a, question),
        "",
        f"Metric {md_code(a.metric)}, epoch {md_code(a.epoch_choice)}"
        + (" (chosen on the validation split)" if a.epoch_choice == "best" else "")
        + f"; {a.n_present} of {a.n_planned} planned evaluations have results. Intervals combine seed-to-seed and "
        "test-set variance. Tables, plots and `report.html` are in `analysis/`; every column is described in the "
        "planner's docs/analysis.md.",
        "",
        md_table(headline_headers(), headline_table_rows(a)),
        "",
        "**Incomplete units:**",
        *_incomplete_lines(a),
    ]
    return "\n".join(lines)


def insert_results_section(text: str, block: str, anchor: str) -> str:
    """Insert a ``## Results`` section holding ``block`` after the line that holds ``anchor``.

    Without the anchor (a summary edited by hand) the section goes at the end. Every
    other byte of ``text`` stays.
    """
    section = f"## Results\n{block}\n"
    pos = text.find(anchor)
    if pos < 0:
        sep = "" if text.endswith("\n\n") else ("\n" if text.endswith("\n") else "\n\n")
        return text + sep + section
    eol = text.find("\n", pos)
    eol = len(text) if eol < 0 else eol + 1
    return text[:eol] + "\n" + section + text[eol:]


_HTML_ROWS = 200  # rows a table of the report shows; the CSV files hold them all


def verdict_class(verdict: Any) -> str:
    """The CSS class of a verdict: forgetting red or orange, a gain green, no claim grey."""
    v = str(verdict or "")
    if v == "severe":
        return "v-severe"
    if v in ("mild", "worse with higher levels"):
        return "v-mild"
    if v == "improved" or v.endswith(" better") or v == "better with higher levels":
        return "v-good"
    return "v-none"


_VERDICT_TD = ' class="verdict"'


def _table_html(columns: list[str], rows: list[list[Any]], total: int | None = None,
                row_classes: list[str] | None = None, verdict_col: int | None = None) -> str:
    """A table of the first rows inside a horizontal scroll box (wide tables scroll, never get cut).

    ``total`` counts every row when ``rows`` holds only the first ones; ``row_classes``
    gives each row a CSS class, and the cell at ``verdict_col`` is marked as its verdict.
    Every value is escaped.
    """
    e = html.escape
    head = "".join(f"<th scope=\"col\">{e(str(c))}</th>" for c in columns)
    body = []
    for i, row in enumerate(rows[:_HTML_ROWS]):
        cls = f" class=\"{e(row_classes[i])}\"" if row_classes and i < len(row_classes) else ""
        cells = [f"<td{_VERDICT_TD if j == verdict_col else ''}>{'' if v is None else e(str(v))}</td>"
                 for j, v in enumerate(row)]
        body.append(f"<tr{cls}>{''.join(cells)}</tr>")
    total = len(rows) if total is None else total
    more = f"<p>{total - _HTML_ROWS} more rows in the CSV file.</p>" if total > _HTML_ROWS else ""
    return (f"<div class=\"scroll\"><table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>"
            f"{more}")


_CSS = """body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:1.5em auto;max-width:82em;
padding:0 1.5em;color:#222;line-height:1.45}
h1{margin:0.2em 0 0.3em}h2{margin-top:1.6em;border-bottom:1px solid #ddd;padding-bottom:0.15em}
p,li,figcaption{overflow-wrap:anywhere}code{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;
font-size:0.9em;background:#f1f1f1;padding:0 0.2em;border-radius:3px}
.question{font-size:1.1em}.answer{background:#f5f8fc;border-left:4px solid #3a6fb0;padding:0.4em 1em;margin:0.8em 0}
.answer ul{padding-left:1.3em;margin:0.3em 0}.meta{color:#555;font-size:0.92em}
.scroll{overflow-x:auto;max-width:100%;margin:0.6em 0}
table{border-collapse:collapse;font-size:0.88em}th,td{border:1px solid #bbb;padding:0.25em 0.5em;text-align:left;
vertical-align:top}th{background:#eee}
tr.v-severe td{background:#fbe3e3}tr.v-mild td{background:#fdf0dc}tr.v-good td{background:#e4f4e8}
tr.v-none td{color:#666}td.verdict{font-weight:bold}tr.v-severe td.verdict{color:#a00}
tr.v-mild td.verdict{color:#b25e00}tr.v-good td.verdict{color:#176b2c}
figure{margin:1em 0}img{max-width:100%;height:auto;border:1px solid #ddd}figcaption{font-size:0.9em;color:#555}
details{margin:0.8em 0;border:1px solid #e3e3e3;border-radius:4px;padding:0.3em 0.8em}
summary{cursor:pointer;font-weight:bold}"""

#: Figures the report shows right after the verdicts, by name prefix; the rest fold away.
_KEY_FIGURES = ("scaling_", "best_learning_rate", "sweep_", "deltas")


def _figure_order(name: str) -> tuple[int, str]:
    return next((i for i, p in enumerate(_KEY_FIGURES) if name.startswith(p)), len(_KEY_FIGURES)), name


#: Pixels per inch of the embedded PNGs and of a screen: a figure shows at the size it was drawn, not blown up.
_PNG_DPI, _SCREEN_DPI = 200, 100


def _png_width(png: bytes) -> int | None:
    """Width in pixels from a PNG's header (IHDR), or None for anything else."""
    if png[:8] != b"\x89PNG\r\n\x1a\n" or len(png) < 24:
        return None
    return int.from_bytes(png[16:20], "big")


def _figures_html(names: list[str], images: dict[str, bytes]) -> str:
    e = html.escape
    parts = []
    for fname in names:
        data = base64.b64encode(images[fname]).decode("ascii")
        svg = fname[:-4] + ".svg"
        link = f" (<a href=\"plots/{e(svg, quote=True)}\">SVG</a>)" if svg in images else ""
        px = _png_width(images[fname])
        width = f" width=\"{px * _SCREEN_DPI // _PNG_DPI}\"" if px else ""
        parts.append(f"<figure><img alt=\"{e(fname, quote=True)}\"{width} src=\"data:image/png;base64,{data}\">"
                     f"<figcaption>{e(fname)}{link}</figcaption></figure>")
    return "\n".join(parts)


def _verdict_table(a: Analysis) -> str:
    rows = headline_table_rows(a, _HTML_ROWS)
    at = _HEADLINE_HEADERS.index("Verdict")
    return _table_html(headline_headers(), rows, total=len(a.headline), row_classes=[verdict_class(r[at]) for r in rows],
                       verdict_col=at)


_FINDING_HEADERS = ["Kind", "Factor", "Task", "Epoch", "Fixed", "A", "B", "mean A", "mean B", "Δ [95 % CI]", "p (adj.)",
                    "Verdict"]


_CONTRAST_KINDS = ("main effect", "contrast", "trend", "interaction")


def _findings_rows(a: Analysis, limit: int = _HTML_ROWS) -> tuple[list[list[Any]], list[str], int]:
    """The first ``limit`` rows of the contrasts table, their CSS classes, and how many rows it has in all."""
    rows, classes = [], []
    total = 0
    for f in a.findings:
        if f.kind not in _CONTRAST_KINDS:
            continue
        total += 1
        if total > limit:
            continue  # counted only: the CSV file holds every row
        t = f.tested
        effect = "-" if t is None else f"{t.effect:+.3f}{' ' + f.scale if f.scale else ''} [{t.ci_low:+.3f}, {t.ci_high:+.3f}]"
        rows.append([f.kind, f.factor, f.task, f.epoch, f.fixed or "-", f.a, f.b, _fmt3(f.a_mean), _fmt3(f.b_mean),
                     effect, _p(f.p_adjusted), f.verdict])
        classes.append(verdict_class(f.verdict))
    return rows, classes, total


def _best_lr_html(a: Analysis) -> str:
    from planner.analyze.views import best_levels, level_text

    rows = best_levels(a)
    if not rows:
        return ""
    body = [[r.task, level_text("model", r.by), r.fixed or "-", level_text("learning_rate", r.level),
             f"{r.mean:.3f}" + ("" if r.ci_low is None else f" [{r.ci_low:.3f}, {r.ci_high:.3f}]"), r.n_seeds,
             "-" if r.runner_up is None else f"{level_text('learning_rate', r.runner_up)}: {_fmt3(r.runner_up_mean)}"]
            for r in rows]
    return ("<h2>Best learning rate per model size</h2><p class=\"meta\">The level with the best mean; its 95 % "
            "interval combines seeds and test set. Whether it beats the runner-up is a contrast below.</p>"
            + _table_html(["Task", "Model", "Other factors", "Best learning rate", "mean [95 % CI]", "Seeds",
                           "Runner-up"], body))


def _details(title: str, inner: str, open_: bool = False) -> str:
    return f"<details{' open' if open_ else ''}><summary>{html.escape(title)}</summary>{inner}</details>"


def report_html(a: Analysis, name: str, question: str, images: dict[str, bytes]) -> str:
    """One self-contained page that leads with the answer.

    Order: title, question, the answer (the Results block's answer lines), the verdict
    table, the key figures, the contrasts, then every other table and figure folded in
    ``<details>``. Every value from the spec, the run folders or results files is escaped.
    """
    from planner.analyze.escape import markdown_html

    e = html.escape
    sweeps, deltas = a.tables["sweeps"], a.tables["deltas"]
    lines = answer_lines(a, question)
    if lines and lines[0].startswith("**Question:**"):
        asked, lines = lines[0], lines[1:]
    else:
        asked = f"**Question:** {question or '(not stated in the spec)'}"
    pngs = sorted((f for f in images if f.endswith(".png")), key=_figure_order)
    key = [f for f in pngs if _figure_order(f)[0] < len(_KEY_FIGURES)]
    rest = [f for f in pngs if f not in key]
    if not key:
        key, rest = rest, []
    contrasts, contrast_classes, n_contrasts = _findings_rows(a)
    parts = [
        "<!DOCTYPE html>", "<html lang=\"en\"><head><meta charset=\"utf-8\">",
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">",
        f"<title>{e(name)}: analysis</title><style>{_CSS}</style></head><body>",
        f"<h1>{e(name)}</h1>",
        f"<div class=\"question\">{markdown_html([asked])}</div>",
        f"<section id=\"answer\" class=\"answer\">{markdown_html(lines)}</section>",
        f"<p class=\"meta\">Metric <code>{e(a.metric)}</code>, epoch <code>{e(a.epoch_choice)}</code>; "
        f"{a.n_present} of {a.n_planned} planned evaluations have results.</p>",
        "<h2 id=\"verdicts\">Verdicts</h2>",
        _verdict_table(a),
        "<h2 id=\"figures\">Figures</h2>",
        _figures_html(key, images) if key else
        "<p>No plots: matplotlib is not installed, --no-plots was given, or nothing has results yet.</p>",
        _best_lr_html(a),
        "<h2 id=\"contrasts\">Contrasts between levels</h2>",
        _table_html(_FINDING_HEADERS, contrasts, total=n_contrasts, row_classes=contrast_classes,
                    verdict_col=len(_FINDING_HEADERS) - 1)
        if contrasts else
        "<p>No factor has two levels with results to compare.</p>",
        "<h2 id=\"more\">More</h2>",
    ]
    if rest:
        parts.append(_details(f"More figures ({len(rest)})", _figures_html(rest, images)))
    parts += [
        _details(f"Sweeps ({len(sweeps.rows)} rows, sweeps.csv)",
                 _table_html(sweeps.columns, sweeps.rows) if sweeps.rows else "<p>No factor has two or more levels.</p>"),
        _details(f"Deltas against the base model ({len(deltas.rows)} rows, deltas.csv)",
                 _table_html(deltas.columns, deltas.rows) if deltas.rows else
                 "<p>No fine-tuned evaluation has a base-model control.</p>"),
        _details(f"Incomplete units ({len(a.incomplete)})",
                 "<ul>" + "".join(f"<li><code>{e(u)}</code></li>" for u in a.incomplete) + "</ul>"
                 if a.incomplete else "<p>None: every planned run and evaluation has its results.</p>",
                 open_=bool(a.incomplete) and len(a.incomplete) <= MAX_LISTED),
        "<h2 id=\"files\">Files</h2><ul>",
    ]
    parts += [f"<li><a href=\"{e(f, quote=True)}\">{e(f)}</a></li>" for f in ANALYSIS_FILES]
    parts += [f"<li><a href=\"plots/{e(f, quote=True)}\">plots/{e(f)}</a></li>" for f in sorted(images)]
    parts.append("</ul></body></html>")
    return "\n".join(parts) + "\n"
