"""The Results block's small markdown as escaped HTML, for report.html. Pure.

The answer lines use a handful of constructs: ``**bold**``, ``*emphasis*``, inline code
in backtick fences of any length (:func:`planner.folder.markdown.md_code`), ``- `` and
``  - `` list items, and blank lines between paragraphs. Everything else is text: it is
HTML-escaped before any tag is added, so a condition named ``<script>`` stays text.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable

# A fence of n backticks closes at the next run of exactly n (CommonMark's rule).
_CODE = re.compile(r"(?<!`)(`+)(?!`)(.+?)(?<!`)\1(?!`)")
_BOLD = re.compile(r"\*\*(?=\S)(.+?)(?<=\S)\*\*")
_EM = re.compile(r"(?<![*\w])\*(?=[^\s*])(.+?)(?<=[^\s*])\*(?![*\w])")
_ITEM = re.compile(r"^( *)[-*] (.*)$")


def _emphasis(escaped: str) -> str:
    return _EM.sub(r"<em>\1</em>", _BOLD.sub(r"<strong>\1</strong>", escaped))


def inline_html(text: str) -> str:
    """One line of markdown as HTML: code spans verbatim (escaped), then bold and emphasis on the escaped rest."""
    out: list[str] = []
    pos = 0
    for m in _CODE.finditer(text):
        out.append(_emphasis(html.escape(text[pos:m.start()])))
        body = m.group(2)
        if len(body) > 1 and body.startswith(" ") and body.endswith(" ") and body.strip():
            body = body[1:-1]  # the padding md_code adds around a body that starts or ends with a backtick
        out.append(f"<code>{html.escape(body)}</code>")
        pos = m.end()
    out.append(_emphasis(html.escape(text[pos:])))
    return "".join(out)


def markdown_html(lines: Iterable[str]) -> str:
    """Lines of the small markdown as HTML: paragraphs and (nested) bullet lists.

    An item indented by two or more spaces more than the previous one nests under it.
    """
    out: list[str] = []
    depth: list[int] = []  # indent of each open list
    open_item: list[bool] = []

    def close_to(level: int) -> None:
        while len(depth) > level:
            if open_item[-1]:
                out.append("</li>")
            out.append("</ul>")
            depth.pop()
            open_item.pop()
            if open_item and open_item[-1]:
                out.append("</li>")
                open_item[-1] = False

    for raw in lines:
        # A newline inside one line (a level or a question that holds one) stays inside its item.
        line = re.sub(r"[\r\n]+", " ", raw).rstrip()
        m = _ITEM.match(line)
        if m is None:
            close_to(0)
            if line.strip():
                out.append(f"<p>{inline_html(line.strip())}</p>")
            continue
        indent, body = len(m.group(1)), m.group(2)
        while depth and indent < depth[-1]:
            close_to(len(depth) - 1)
        if not depth or indent > depth[-1]:
            out.append("<ul>")
            depth.append(indent)
            open_item.append(False)
        elif open_item[-1]:
            out.append("</li>")
        out.append(f"<li>{inline_html(body)}")
        open_item[-1] = True
    close_to(0)
    return "\n".join(out)


__all__ = ["inline_html", "markdown_html"]
