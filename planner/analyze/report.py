"""The analysis as text: the Results block of experiment_summary.md and report.html. Pure.

Nothing here carries a clock time, so analysing the same folders twice gives the same
bytes.
"""

from __future__ import annotations

import base64
import html
from typing import Any

from planner.analyze.tables import Analysis
from planner.folder.markdown import md_code, md_table

RESULTS_BLOCK = "results"

ANALYSIS_FILES = ("runs.csv", "evals.csv", "cells.csv", "deltas.csv", "sweeps.csv", "loss.csv")

_HEADLINE_HEADERS = ["Condition", "Task", "Epoch", "mean ± std [95 % CI] (n seeds)", "Base", "Δ", "Δ %", "Flag",
                     "Best vs last epoch"]

#: How many incomplete units the summary lists before it counts the rest.
MAX_LISTED = 20


def _num(v: Any, spec: str = "+.3f") -> str:
    return "-" if v is None else format(v, spec)


def headline_table_rows(a: Analysis, limit: int | None = None) -> list[list[Any]]:
    """The headline table's cells (the first ``limit`` rows), shared by the summary, the report and the terminal."""
    return [[r["condition"], r["task"], "-" if r["epoch"] is None else r["epoch"], r["result"], r["base"],
             _num(r["delta"]), _num(r["rel_delta_pct"], "+.1f"), r["flag"] or "-", r["best_vs_last"]]
            for r in a.headline[:limit]]


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


def _flag_lines(a: Analysis) -> list[str]:
    """Flag counts over every fine-tuned evaluation, and the forgetting ones by name."""
    deltas = a.tables["deltas"]
    rows = [dict(zip(deltas.columns, r)) for r in deltas.rows if r[deltas.columns.index("flag")] is not None]
    if not rows:
        return []
    counts = ", ".join(f"{f} {sum(r['flag'] == f for r in rows)}" for f in ("improved", "none", "mild", "severe"))
    lines = [f"Every fine-tuned evaluation against its base model ({len(rows)}): {counts}."]
    worst = sorted((r for r in rows if r["flag"] in ("mild", "severe")), key=lambda r: r["rel_delta_pct"] or 0.0)
    for r in worst[:MAX_LISTED]:
        p = "" if r["mcnemar_p"] is None else f", McNemar p = {r['mcnemar_p']:.3g}"
        lines.append(f"- {r['flag']}: {md_code(r['run'] + '/' + r['task'])} epoch {r['epoch']}: "
                     f"{r['value']:.3f} against {r['base_value']:.3f} ({r['rel_delta_pct']:+.1f} %{p})")
    if len(worst) > MAX_LISTED:
        lines.append(f"- ... and {len(worst) - MAX_LISTED} more (see analysis/deltas.csv)")
    return ["", *lines]


def results_block(a: Analysis) -> str:
    """The inside of the Results block."""
    th = a.thresholds
    lines = [
        f"Metric {md_code(a.metric)}, epoch {md_code(a.epoch_choice)}; {a.n_present} of {a.n_planned} planned "
        f"evaluations have results. Tables, plots and `report.html` are in `analysis/`; every column is described "
        "in the planner's docs/analysis.md.",
        "",
        md_table(headline_headers(), headline_table_rows(a)),
        "",
        f"Flags compare the mean with the base model on the same task: a drop of {th.mild_pct:g} % or more is "
        f"`mild` forgetting, {th.severe_pct:g} % or more `severe`; a gain of {th.mild_pct:g} % or more is `improved`. "
        "Per-evaluation deltas with exact McNemar tests are in `analysis/deltas.csv`.",
        *_flag_lines(a),
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
