"""Write an experiment folder atomically: a temporary sibling folder, then one rename.

A failure at any point leaves either the old folder or nothing, never a half-written
experiment. ``--force`` keeps the replaced folder as a backup beside it rather than
deleting checkpoints and hand-written notes.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from datetime import datetime
from pathlib import Path

from planner.spec.errors import ExperimentExistsError


def ensure_absent(target: Path, force: bool) -> None:
    """Fail early, before any work, when the experiment exists and ``force`` is off."""
    if target.exists() and not force:
        raise ExperimentExistsError(
            f"experiment folder already exists: {target}; choose another name, or pass --force "
            "to replace it (the old folder is kept as a backup beside it)"
        )


def write_experiment(target: Path, files: dict[str, str], force: bool, now: datetime) -> Path | None:
    """Write ``files`` (relative path -> text) as the folder ``target``.

    Returns:
        The backup path of a replaced folder, or None.
    """
    ensure_absent(target, force)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent))
    try:
        for rel, text in files.items():
            path = tmp / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            if rel.endswith(".sh"):
                path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP)
        (tmp / ".plan-experiment").mkdir(exist_ok=True)
        backup = None
        if target.exists():
            backup = target.parent / f"{target.name}.replaced-{now:%Y%m%d-%H%M%S}"
            os.rename(target, backup)
        os.rename(tmp, target)
        return backup
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def atomic_write_text(path: Path, text: str, durable: bool = True) -> None:
    """Replace one file atomically (temporary file in the same folder, then rename).

    ``durable`` also flushes it to disk before the rename (journal, summary); caches skip it.
    """
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        if path.exists():
            os.chmod(tmp, stat.S_IMODE(path.stat().st_mode))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
