"""Hostile names reach report.html, experiment_summary.md and every CSV only as text.

A factor level (a system prompt), a model name, the question and a results.json field
carry ``<script>``, ``|``, newlines and ``=cmd``. report.html must hold no tag they
opened, markdown table rows must stay one row each, and no CSV cell may start like a
spreadsheet formula. The small markdown converter is tested on its own too.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from analyze_support import analyze_cli, make_experiment, results_block, write_result

from planner.analyze.escape import inline_html, markdown_html
from planner.folder.markdown import md_code

EVIL = "<script>document.body.setAttribute('data-pwned','1')</script>"
EVIL_IMG = "<img src=x onerror=\"document.body.setAttribute('data-pwned','2')\">"
HOSTILE = {
    "name": "hostile",
    "question": f"Does {EVIL} | hold?\n=cmd",
    "models": ["org/m<i>|x"],
    "dataset": {"path": "data.json"},
    "factors": {"system_prompt": [EVIL, "=cmd|x\ny " + EVIL_IMG], "lora_rank": [4, 16]},
    "replicates": {"seeds": [1, 2]},
    "base_model_controls": True,
    "controls": {"epochs": 1},
    "evaluation": {"tasks": [{"name": "qa", "script": "tasks/qa/eval.py"}], "epochs": "last"},
}


def plant(exp: Path) -> Path:
    """A hostile experiment, analysed; returns its analysis folder."""
    planned = make_experiment(exp, HOSTILE)
    for i, ev in enumerate(planned.evaluations):
        path = write_result(exp, ev.run, ev.name, [j < 40 + 5 * (i % 4) for j in range(100)], epoch=ev.epoch)
        results = json.loads(path.read_text(encoding="utf-8"))
        if ev.epoch is not None:
            results["adapter_sha256"] = '=HYPERLINK("http://x","y")'
        path.write_text(json.dumps(results), encoding="utf-8")
    proc = analyze_cli(exp)
    assert proc.returncode == 0, proc.stderr
    return exp / "analysis"


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return plant(tmp_path_factory.mktemp("hostile") / "hostile")


def test_report_html_holds_no_tag_a_name_opened(hostile: Path) -> None:
    page = (hostile / "report.html").read_text(encoding="utf-8")
    assert "<script" not in page and "<img src=x" not in page and "<i>" not in page
    assert "&lt;script&gt;" in page and "m&lt;i&gt;|x" in page
    # Attributes too: every alt and href is quoted and holds no raw quote or angle bracket.
    for attr in ("alt", "href"):
        for value in page.split(f'{attr}="')[1:]:
            assert "<" not in value.split('"', 1)[0]


def test_summary_table_rows_stay_one_row_and_tags_stay_text(hostile: Path) -> None:
    block = results_block((hostile.parent / "experiment_summary.md").read_text(encoding="utf-8"))
    rows = [ln for ln in block.splitlines() if ln.startswith("| ")]
    header = rows[0]
    assert all(r.count("|") - r.count("\\|") == header.count("|") for r in rows), rows
    assert not any("<i>" in r or "<script" in r for r in rows)
    assert any("m&lt;i>\\|x_sys1_rank4" in r for r in rows)


def test_summary_answer_lines_keep_names_in_code_spans(hostile: Path) -> None:
    block = results_block((hostile.parent / "experiment_summary.md").read_text(encoding="utf-8"))
    outside = "".join(part for i, part in enumerate(block.split("`")) if i % 2 == 0)
    assert "<script" not in outside and "<img" not in outside


def test_no_csv_cell_starts_like_a_formula(hostile: Path) -> None:
    seen_quoted = 0
    for path in sorted(hostile.glob("*.csv")):
        with path.open(newline="", encoding="utf-8") as handle:
            for row in csv.reader(handle):
                for cell in row:
                    assert not cell.startswith(("=", "+", "@", "\t", "\r")), (path.name, cell)
                    # A minus sign only as a number's sign.
                    if cell.startswith("-"):
                        float(cell)
                    seen_quoted += cell.startswith("'=")
    assert seen_quoted > 0  # the planted =HYPERLINK and =cmd levels were written, quoted


def test_markdown_converter_escapes_before_it_adds_tags() -> None:
    assert inline_html(f"**bold** {md_code(EVIL)} and *em* <b>") == (
        "<strong>bold</strong> <code>&lt;script&gt;document.body.setAttribute(&#x27;data-pwned&#x27;,&#x27;1&#x27;)"
        "&lt;/script&gt;</code> and <em>em</em> &lt;b&gt;")
    assert inline_html(md_code("a`b")) == "<code>a`b</code>"
    assert inline_html(md_code("`x`")) == "<code>`x`</code>"
    assert inline_html("2 * 3 * 4") == "2 * 3 * 4"
    assert markdown_html(["- a\n- b"]) == "<ul>\n<li>a - b\n</li>\n</ul>"  # one item, as it was one line
    html = markdown_html(["**Q:** x", "", "- `a`:", "  - one", "  - two", "- b", "", "tail"])
    assert html == ("<p><strong>Q:</strong> x</p>\n<ul>\n<li><code>a</code>:\n<ul>\n<li>one\n</li>\n<li>two\n</li>\n"
                    "</ul>\n</li>\n<li>b\n</li>\n</ul>\n<p>tail</p>")


def test_csv_writer_writes_what_the_csv_module_writes_once_text_is_guarded_and_reads_back() -> None:
    import io
    import random

    from planner.analyze.tables import _FORMULA_START, csv_body

    pieces = ["a", "b c", ",", '"', "\n", "\r", "\r\n", "=", "+", "-", "@", "\t", "é", " ", "'", "x|y", "🙂", "1e-5"]
    values: list[object] = [None, True, False, 0, -3, 12345678901234567890, 0.1, -1.5e-07, 1e300, float("nan"),
                            float("inf"), float("-inf"), ""]
    rnd = random.Random(7)
    for _ in range(400):
        rows = [[rnd.choice(values) if rnd.random() < 0.4 else "".join(rnd.choices(pieces, k=rnd.randint(1, 5)))
                 for _ in range(rnd.randint(1, 6))] for _ in range(rnd.randint(0, 5))]
        buf = io.StringIO()
        guarded = [[("'" + v) if isinstance(v, str) and v.startswith(_FORMULA_START) else v for v in row] for row in rows]
        csv.writer(buf, lineterminator="\n").writerows(guarded)
        if not any(isinstance(v, str) and "\r" in v for row in rows for v in row):
            assert csv_body(rows) == buf.getvalue().encode(), rows
        # A carriage return is always quoted (the csv module leaves it bare when lines end in '\n'; many
        # readers would end the row there): read back, every field is as it was.
        assert list(csv.reader(io.StringIO(csv_body(rows).decode(), newline=""))) == [
            ["" if v is None else str(v) for v in row] for row in guarded]
