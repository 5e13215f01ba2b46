"""The in-job tokenizer hook under its old import path (see ``planner.core``).

A package rather than a module file so that version control follows the old module to
its new home, ``planner.torchtune``.
"""

from __future__ import annotations

from planner.torchtune.hook import prompted_tokenizer

__all__ = ["prompted_tokenizer"]
