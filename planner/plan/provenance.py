"""Provenance of a plan: when, by which planner version, from which git commit."""

from __future__ import annotations

import getpass
import socket
import subprocess
from datetime import datetime
from pathlib import Path
from typing import Any

from planner import __version__


def git_state(cwd: Path) -> dict[str, Any]:
    """Commit and dirty flag of the repository holding ``cwd``; empty when it is none."""
    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if not commit:
        return {}
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"git_commit": commit, "git_dirty": bool(status), "git_root": git("rev-parse", "--show-toplevel")}


def provenance(now: datetime, local_settings_path: Path, local_settings: dict[str, Any], argv: list[str]) -> dict[str, Any]:
    """Everything experiment.yaml records about how it was planned."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = None
    return {
        "planner_version": __version__,
        "planned_at": now.isoformat(timespec="seconds"),
        "planned_by": user,
        "host": socket.gethostname(),
        "command": argv,
        "local_settings_file": str(local_settings_path),
        "local_settings": local_settings,
        **git_state(Path.cwd()),
    }
