"""Generated blocks of the summary: a refresh rewrites them and nothing else."""

from __future__ import annotations

import pytest

from planner.folder.markdown import SummaryFormatError, md_cell, md_code, md_table, replace_block, wrap_block


def test_replace_block_keeps_every_other_byte() -> None:
    before = "# T\nmy note  \n\n" + wrap_block("x", "old") + "\n\nafter\r\nmore notes\n"
    after = replace_block(before, "x", "new\ncontent")
    assert after == "# T\nmy note  \n\n" + wrap_block("x", "new\ncontent") + "\n\nafter\r\nmore notes\n"
    assert replace_block(after, "x", "new\ncontent") == after


@pytest.mark.parametrize("text", ["no markers", wrap_block("x", "a") + wrap_block("x", "b")])
def test_missing_or_doubled_markers_are_reported(text: str) -> None:
    with pytest.raises(SummaryFormatError, match="restore the markers"):
        replace_block(text, "x", "new")


def test_cells_cannot_break_a_table() -> None:
    assert md_cell("a|b\nc") == "a\\|b c"
    assert md_cell(None) == "-"
    table = md_table(["A", "B"], [["x|y", "two\nlines"]])
    assert table.splitlines() == ["| A | B |", "|---|---|", "| x\\|y | two lines |"]
    assert md_code("a`b") == "``a`b``"
