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
from planner.folder.markdown import md_code, md_table

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
    where = f"{md_code(f.task)}, epoch {f.epoch}" + (f", {f.fixed}" if f.fixed else "")
    if t is None:
        return f"{md_code(f.a)} vs {md_code(f.b)} ({where}): {f.verdict} ({f.note})"
    rel = "" if f.rel_pct is None or f.kind == "trend" else f" ({f.rel_pct:+.1f} %)"
    scale = f" {f.scale}" if f.kind == "trend" else ""
    basis = "" if t.n_seeds > 1 else ", 1 seed: test-set interval"
    return (f"{md_code(f.a)} vs {md_code(f.b)} ({where}): {_fmt3(f.a_mean)} vs {_fmt3(f.b_mean)}, "
            f"Δ {t.effect:+.3f}{scale} [95 % CI {t.ci_low:+.3f}, {t.ci_high:+.3f}]{rel}, {t.test} p = {_p(t.p)}, "
            f"adjusted p = {_p(f.p_adjusted)}{basis}: **{f.verdict}**")


def _fmt3(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"


#: How many findings of one kind the Results block lists before it points to findings.csv.
MAX_FINDINGS = 12


def answer_lines(a: Analysis, question: str) -> list[str]:
    """The answer to the spec's question: its factors' contrasts and trends, then fine-tuning against base."""
    th = a.thresholds
    factors, named = question_factors(question, a.sweep_factors)
    tested = sum(1 for f in a.findings if f.tested is not None)
    lines = [f"**Question:** {question or '(not stated in the spec)'}", "",
             f"**Answer** ({a.metric}; each claim is a paired test, adjusted over the {tested} tested findings of "
             f"this analysis by {CORRECTION_NAMES[th.correction]} at alpha = {th.alpha:g}):"]
    if not a.findings:
        return lines + ["- no finding can be made yet: no evaluation has results (see Incomplete units)"]
    for factor in factors:
        rows = [f for f in a.findings if f.factor == factor and f.kind in ("contrast", "trend")]
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
    contrasts = [f for f in rows if f.kind == "contrast" and f.a_mean is not None and f.b_mean is not None]
    if not contrasts:
        return None
    hib = contrasts[0].metric.higher_is_better
    # Among one fixed combination of the other factors at a time; the first such group in plan order.
    fixed = contrasts[0].fixed
    group = [f for f in contrasts if f.fixed == fixed]
    means = {}
    for f in group:
        means.setdefault(f.a, f.a_mean)  # type: ignore[arg-type]
        means.setdefault(f.b, f.b_mean)  # type: ignore[arg-type]
    ranked = sorted(means, key=lambda k: means[k], reverse=hib)
    if len(ranked) < 2:
        return None
    top, second = ranked[0], ranked[1]
    pair = next((f for f in group if {f.a, f.b} == {top, second}), None)
    where = f" ({fixed})" if fixed else ""
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
            f"{sign * t.effect:+.3f} [95 % CI {lo:+.3f}, {hi:+.3f}], adjusted p = {_p(pair.p_adjusted)}: {sig}")


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


def _table_html(columns: list[str], rows: list[list[Any]], total: int | None = None) -> str:
    """A table of the first rows; ``total`` counts every row when ``rows`` holds only the first ones."""
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
    body = ["<tr>" + "".join(f"<td>{'' if v is None else html.escape(str(v))}</td>" for v in row) + "</tr>"
            for row in rows[:_HTML_ROWS]]
    total = len(rows) if total is None else total
    more = f"<p>{total - _HTML_ROWS} more rows in the CSV file.</p>" if total > _HTML_ROWS else ""
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>{more}"


_CSS = """body{font-family:sans-serif;margin:2em;max-width:80em;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:0.9em}th,td{border:1px solid #bbb;padding:0.25em 0.5em;
text-align:left}th{background:#eee}img{max-width:100%;border:1px solid #ddd;margin:0.5em 0}
.severe{color:#b00}.mild{color:#c60}.improved{color:#070}"""


def report_html(a: Analysis, name: str, question: str, images: dict[str, bytes]) -> str:
    """One self-contained page: question, headline, sweeps, deltas, incomplete units, plots, files."""
    e = html.escape
    sweeps, deltas = a.tables["sweeps"], a.tables["deltas"]
    parts = [
        "<!DOCTYPE html>", "<html lang=\"en\"><head><meta charset=\"utf-8\">",
        f"<title>{e(name)}: analysis</title><style>{_CSS}</style></head><body>",
        f"<h1>{e(name)}</h1>",
        f"<p><strong>Question:</strong> {e(question or '(not stated)')}</p>",
        f"<p>Metric <code>{e(a.metric)}</code>, epoch <code>{e(a.epoch_choice)}</code>.</p>",
        "<h2>Headline</h2>",
        _table_html(headline_headers(), headline_table_rows(a, _HTML_ROWS), total=len(a.headline)),
        "<h2>Sweeps</h2>",
        _table_html(sweeps.columns, sweeps.rows) if sweeps.rows else "<p>No factor has two or more levels.</p>",
        "<h2>Deltas against the base model</h2>",
        _table_html(deltas.columns, deltas.rows) if deltas.rows else
        "<p>No fine-tuned evaluation has a base-model control.</p>",
        "<h2>Incomplete units</h2>",
        "<ul>" + "".join(f"<li><code>{e(u)}</code></li>" for u in a.incomplete) + "</ul>"
        if a.incomplete else "<p>None: every planned run and evaluation has its results.</p>",
        "<h2>Plots</h2>",
    ]
    if images:
        for fname, png in sorted(images.items()):
            data = base64.b64encode(png).decode("ascii")
            parts.append(f"<figure><img alt=\"{e(fname)}\" src=\"data:image/png;base64,{data}\">"
                         f"<figcaption>{e(fname)}</figcaption></figure>")
    else:
        parts.append("<p>No plots: matplotlib is not installed or --no-plots was given.</p>")
    parts.append("<h2>Files</h2><ul>")
    parts += [f"<li><a href=\"{f}\">{f}</a></li>" for f in ANALYSIS_FILES]
    parts += [f"<li><a href=\"plots/{e(f)}\">plots/{e(f)}</a></li>" for f in sorted(images)]
    parts.append("</ul></body></html>")
    return "\n".join(parts) + "\n"
