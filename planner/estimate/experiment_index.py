"""Every experiment the user planned, wherever it was written: the priors estimates learn from.

``new`` registers each experiment folder it writes (``--out`` anywhere, the demo's, the
default experiments_dir) in a small index in the user's cache folder, beside the
prior-run scan cache. Estimates search the registered folders for finished runs, so
the next plan learns from every run the user made. Folders that no longer hold an
experiment (deleted, or left without their ``experiment.yaml``) are skipped and dropped
from the index whenever it is read, so it stays as the disk is; the read says which
were dropped and why (:class:`IndexRead`), and ``estimate`` and ``new`` log them.

The index is a JSON list of absolute paths, written atomically under a file lock (two
``new`` commands may finish together). An unreadable or damaged index is treated as
empty and rewritten: it is a cache, rebuilt by planning again, never the user's data.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from filelock import FileLock, Timeout

from planner.estimate.priors import cache_path

#: How long to wait for another command that is writing the index.
LOCK_TIMEOUT_S = 10.0


def index_path() -> Path:
    """Where the index lives: the folder of the prior-run cache (XDG cache dir)."""
    return cache_path().with_name("experiments.json")


def _read(path: Path) -> list[str]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return [p for p in data if isinstance(p, str)] if isinstance(data, list) else []


def _write(path: Path, folders: list[str]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(folders, indent=1) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        try:
            tmp.unlink()
        except OSError:
            pass


@dataclass(frozen=True)
class IndexRead:
    """What one read of the index found.

    Attributes:
        folders: experiment folders that still hold an experiment, oldest first.
        dropped: ``(folder, why)`` for each entry that no longer does, in index order.
        written: whether the index could be rewritten without them (False: a read-only or
            busy cache folder keeps them, to be dropped by a later read).
    """

    folders: list[Path] = field(default_factory=list)
    dropped: list[tuple[Path, str]] = field(default_factory=list)
    written: bool = True


def _gone(folder: str) -> str | None:
    """Why a registered folder is no experiment any more, or None while it is one."""
    if os.path.isfile(os.path.join(folder, "experiment.yaml")):
        return None
    return "it holds no experiment.yaml any more" if os.path.isdir(folder) else "the folder no longer exists"


def _sorted_out(known: list[str]) -> tuple[list[str], list[tuple[Path, str]]]:
    kept: list[str] = []
    dropped: list[tuple[Path, str]] = []
    for folder in dict.fromkeys(known):
        why = _gone(folder)
        if why is None:
            kept.append(folder)
        else:
            dropped.append((Path(folder), why))
    return kept, dropped


def _update(add: Path | None) -> IndexRead:
    """Read the index, drop folders that are gone, add ``add``, write it back if it changed."""
    path = index_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(path.with_name(path.name + ".lock")), timeout=LOCK_TIMEOUT_S)
        lock.acquire()
    except (OSError, Timeout):
        # A read-only or busy cache folder: estimates go on with what can be read.
        kept, dropped = _sorted_out(_read(path))
        return IndexRead([Path(p) for p in kept], dropped, written=False)
    try:
        known = _read(path)
        kept, dropped = _sorted_out(known)
        if add is not None:
            new = str(add.absolute())
            if new not in kept:
                kept.append(new)
        if kept != known:
            _write(path, kept)
        return IndexRead([Path(p) for p in kept], dropped)
    finally:
        lock.release()


def register(folder: Path) -> None:
    """Add an experiment folder that was just written to the index."""
    _update(folder)


def registered_report() -> IndexRead:
    """Experiment folders planned so far that still exist, and those dropped by this read."""
    return _update(None)


def registered() -> list[Path]:
    """Experiment folders planned so far that still exist, oldest first."""
    return registered_report().folders


def skipped_folders(read: IndexRead) -> list[tuple[Path, str]]:
    """The dropped folders of a read as a prior search reports them: ``(folder, why)``."""
    where = "dropped from the index" if read.written else "left in the index, which could not be rewritten"
    return [(folder, f"planned experiment: {why} ({where})") for folder, why in read.dropped]
