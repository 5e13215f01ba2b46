"""Commands the tool prints for people to paste: every word shell-quoted.

A name or path may hold ``$(...)``, quotes or spaces; pasted unquoted, the shell would run
or split it. Every printed command goes through :func:`command_line`.
"""

from __future__ import annotations

import shlex
from pathlib import Path


def command_line(*argv: str | Path) -> str:
    """``argv`` as one shell line that runs exactly these words."""
    return " ".join(shlex.quote(str(a)) for a in argv)
