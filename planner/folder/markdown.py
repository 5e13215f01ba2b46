"""Markdown helpers: safe table cells, tables, and the generated blocks of a summary.

Generated parts of ``experiment_summary.md`` sit between marker comments::

    <!-- plan-experiment:begin NAME -->
    ...
    <!-- plan-experiment:end NAME -->

A refresh replaces only what is between the markers of one block and leaves every other
byte of the file alone, so notes a user writes anywhere else survive.
"""

from __future__ import annotations

import re
from typing import Any, Iterable, Sequence

from planner.spec.errors import PlannerError


def md_cell(value: Any) -> str:
    """Render a value as one table cell: pipes escaped, newlines folded, a tag's ``<`` as ``&lt;``, empty as '-'."""
    if value is None or value == "":
        return "-"
    text = str(value)
    if "|" in text or "\\" in text:
        text = text.replace("\\", "\\\\").replace("|", "\\|")
    if "\n" in text or "\r" in text:  # the regex only when needed: status tables render thousands of cells
        text = re.sub(r"[\r\n]+", " ", text)
    if "<" in text:
        # A name like <script> must read as text where the summary is rendered; only a '<' that can open a
        # tag or comment is escaped, so "< 0.001" stays as written for a reader of the raw file.
        text = re.sub(r"<(?=[A-Za-z/!?])", "&lt;", text)
    return text


def md_code(value: Any) -> str:
    """Render a value as inline code, choosing a fence longer than any backtick run inside."""
    text = re.sub(r"[\r\n]+", " ", str(value))
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def md_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A GitHub-flavoured markdown table (no trailing newline)."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("-" * (len(h) + 2) for h in headers) + "|"]
    # Texts repeat down a column (tasks, verdicts, '-'): each distinct one is rendered once.
    seen: dict[str, str] = {}

    def cell(c: Any) -> str:
        if c.__class__ is not str:
            return md_cell(c)
        text = seen.get(c)
        if text is None:
            text = seen[c] = md_cell(c)
        return text

    for row in rows:
        lines.append("| " + " | ".join([cell(c) for c in row]) + " |")
    return "\n".join(lines)


def begin_marker(name: str) -> str:
    """The opening marker of a generated block."""
    return f"<!-- plan-experiment:begin {name} -->"


def end_marker(name: str) -> str:
    """The closing marker of a generated block."""
    return f"<!-- plan-experiment:end {name} -->"


def wrap_block(name: str, content: str) -> str:
    """Content between the markers of block ``name``."""
    return f"{begin_marker(name)}\n{content.rstrip()}\n{end_marker(name)}"


class SummaryFormatError(PlannerError):
    """The summary's generated-block markers were removed or duplicated by hand."""

    exit_code = 2


def replace_block(text: str, name: str, content: str, source: str = "experiment_summary.md") -> str:
    """Replace the inside of block ``name``; every byte outside it stays as it was."""
    begin, end = begin_marker(name), end_marker(name)
    if text.count(begin) != 1 or text.count(end) != 1:
        raise SummaryFormatError(
            f"{source}: expected one '{begin}' and one '{end}' marker, found "
            f"{text.count(begin)} and {text.count(end)}; restore the markers (the generated "
            "table sits between them) or re-render with `plan-experiment new --force`"
        )
    start = text.index(begin) + len(begin)
    stop = text.index(end)
    if stop < start:
        raise SummaryFormatError(f"{source}: the '{name}' markers are in the wrong order; put begin before end")
    return text[:start] + "\n" + content.rstrip() + "\n" + text[stop:]
