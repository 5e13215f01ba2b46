"""Every experiment the user planned, wherever it was written: the priors estimates learn from.

``new`` registers each experiment folder it writes (``--out`` anywhere, the demo's, the
default experiments_dir) in a small index in the user's cache folder, beside the
prior-run scan cache. Estimates search the registered folders for finished runs, so
the next plan learns from every run the user made. Folders that no longer hold an
experiment are dropped from the index whenever it is read, so it stays as the disk is.

The index is a JSON list of absolute paths, written atomically under a file lock (two
``new`` commands may finish together). An unreadable or damaged index is treated as
empty and rewritten: it is a cache, rebuilt by planning again, never the user's data.
"""

from __future__ import annotations

import json
import os
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


def _is_experiment(folder: str) -> bool:
    return os.path.isfile(os.path.join(folder, "experiment.yaml"))


def _update(add: Path | None) -> list[Path]:
    """Read the index, drop folders that are gone, add ``add``, write it back if it changed."""
    path = index_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(path.with_name(path.name + ".lock")), timeout=LOCK_TIMEOUT_S)
        lock.acquire()
    except (OSError, Timeout):
        # A read-only or busy cache folder: estimates go on with what can be read.
        return [Path(p) for p in _read(path) if _is_experiment(p)]
    try:
        known = _read(path)
        kept = [p for p in dict.fromkeys(known) if _is_experiment(p)]
        if add is not None:
            new = str(add.absolute())
            if new not in kept:
                kept.append(new)
        if kept != known:
            _write(path, kept)
        return [Path(p) for p in kept]
    finally:
        lock.release()


def register(folder: Path) -> None:
    """Add an experiment folder that was just written to the index."""
    _update(folder)


def registered() -> list[Path]:
    """Experiment folders planned so far that still exist, oldest first."""
    return _update(None)
