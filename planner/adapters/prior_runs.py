"""Find and parse prior training logs (``slurm-*.out``), with an incremental cache.

The scan walks directories with ``os.scandir`` (no per-entry ``stat`` beyond what is
needed), parses each log with :func:`planner.core.logparse.parse_log_bytes`, and keeps
the records in a cache keyed by ``(path, size, mtime_ns)`` so a rescan only reads the
files that changed.

Cache format: a pickle of plain dicts and tuples (version-tagged, written atomically).
JSON was measured too; for 10,000 records pickle loads ~3x faster, and loading the
cache is most of what a rescan costs. The cache is private to the planner and lives
next to the experiment it serves, so it is trusted like the planner's own code; an
unreadable, foreign-version or damaged cache is ignored and rebuilt, never an error.
"""

from __future__ import annotations

import os
import pickle
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path

from planner.core.logparse import LogRecord, parse_log_bytes

#: Bump when LogRecord changes shape; older caches are then ignored.
CACHE_VERSION = 1

#: Parse in worker processes when at least this many files need parsing; below it,
#: process start-up (~50 ms) costs more than it saves.
PARALLEL_MIN_FILES = 400

#: Folders never worth descending into.
_SKIP_DIRS = {".git", "__pycache__", "node_modules", ".venv", ".cache"}

LOG_PATTERN = "slurm-*.out"


@dataclass
class ScanResult:
    """What a scan found.

    Attributes:
        records: path -> record, for every log that held torchtune training output.
        skipped: ``(path, reason)`` for logs that were empty, unreadable, garbage or
            not training logs.
        parsed: how many files were read and parsed this time.
        cached: how many records came from the cache unchanged.
        seconds: wall time of the scan.
    """

    records: dict[str, LogRecord] = field(default_factory=dict)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    parsed: int = 0
    cached: int = 0
    seconds: float = 0.0

    def usable(self) -> list[LogRecord]:
        """Records an estimate can use: some speed, token rate or checkpoint data."""
        return [
            r
            for r in self.records.values()
            if r.steady_it_per_s or r.tokens_per_second_median or r.checkpoints
        ]


def find_logs(dirs: list[Path], pattern: str = LOG_PATTERN) -> list[tuple[str, int, int]]:
    """List logs under ``dirs`` recursively.

    Args:
        dirs: folders to walk (missing ones are ignored).
        pattern: file name glob.

    Returns:
        ``(path, size, mtime_ns)`` for each matching regular file, sorted by path.
        Symlinked folders are not followed (they can loop on shared filesystems).
    """
    found: list[tuple[str, int, int]] = []
    stack = [str(d) for d in dirs]
    seen: set[str] = set()
    while stack:
        d = stack.pop()
        if d in seen:
            continue
        seen.add(d)
        try:
            it = os.scandir(d)
        except OSError:
            continue
        with it:
            for entry in it:
                name = entry.name
                try:
                    if entry.is_dir(follow_symlinks=False):
                        if name not in _SKIP_DIRS:
                            stack.append(entry.path)
                        continue
                    # Cheap name test first: only matching files cost a stat call.
                    if name.startswith("slurm-") and fnmatchcase(name, pattern) or (
                        pattern != LOG_PATTERN and fnmatchcase(name, pattern)
                    ):
                        st = entry.stat()
                        found.append((entry.path, st.st_size, st.st_mtime_ns))
                except OSError:
                    continue
    found.sort()
    return found


def _parse_path(path: str) -> tuple[str, LogRecord | None, str | None]:
    """Read and parse one file; never raises.

    Returns:
        ``(path, record, skip_reason)``: record None with a reason when skipped.
    """
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        return path, None, f"unreadable: {exc.strerror or exc}"
    rec = parse_log_bytes(data, path)
    if not data:
        return path, None, "empty file"
    if not rec.has_training_data:
        why = "; ".join(rec.problems) or "no torchtune training output found"
        return path, None, f"no torchtune training output ({why})"
    return path, rec, None


def _parse_many(paths: list[str]) -> list[tuple[str, LogRecord | None, str | None]]:
    return [_parse_path(p) for p in paths]


def _load_cache(cache_path: Path | None) -> dict[str, tuple[int, int, dict | None, str | None]]:
    if cache_path is None:
        return {}
    try:
        with open(cache_path, "rb") as fh:
            blob = pickle.load(fh)
    except (OSError, EOFError, pickle.UnpicklingError, AttributeError, ValueError,
            ImportError, IndexError, TypeError):
        return {}
    if not isinstance(blob, dict) or blob.get("version") != CACHE_VERSION:
        return {}
    entries = blob.get("entries")
    return entries if isinstance(entries, dict) else {}


def _save_cache(cache_path: Path, entries: dict) -> None:
    cache_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache_path.with_name(f".{cache_path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            pickle.dump({"version": CACHE_VERSION, "entries": entries}, fh,
                        protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, cache_path)  # atomic: a reader never sees half a cache
    except OSError:
        try:
            tmp.unlink()
        except OSError:
            pass


def scan(
    dirs: list[Path],
    cache_path: Path | None = None,
    *,
    workers: int | None = None,
) -> ScanResult:
    """Find ``slurm-*.out`` logs under ``dirs`` and parse the ones not cached.

    Args:
        dirs: folders to search recursively.
        cache_path: where to keep parsed records between scans (None: no cache).
        workers: processes for parsing; default: all CPUs when there is enough work.

    Returns:
        A :class:`ScanResult`. Garbage, empty or cut files never raise; they are in
        ``skipped`` with a reason (cut files that still hold training data are kept as
        records with ``state == "truncated"``).
    """
    t0 = time.perf_counter()
    result = ScanResult()
    old = _load_cache(cache_path)
    files = find_logs(dirs)
    entries: dict[str, tuple[int, int, dict | None, str | None]] = {}
    todo: list[tuple[str, int, int]] = []
    for path, size, mtime in files:
        hit = old.get(path)
        if hit is not None and hit[0] == size and hit[1] == mtime:
            entries[path] = hit
            _, _, rec_d, reason = hit
            if rec_d is not None:
                result.records[path] = LogRecord.from_dict(rec_d)
            else:
                result.skipped.append((path, reason or "skipped"))
            result.cached += 1
        else:
            todo.append((path, size, mtime))

    n_workers = workers if workers is not None else (os.cpu_count() or 1)
    paths = [p for p, _, _ in todo]
    if n_workers > 1 and len(paths) >= PARALLEL_MIN_FILES:
        # Contiguous chunks keep each worker's files together; results stay in order.
        size = max(1, len(paths) // (n_workers * 4))
        chunks = [paths[i : i + size] for i in range(0, len(paths), size)]
        with ProcessPoolExecutor(max_workers=n_workers) as pool:
            outcomes = [o for chunk in pool.map(_parse_many, chunks) for o in chunk]
    else:
        outcomes = _parse_many(paths)
    stats = {p: (s, m) for p, s, m in todo}
    for path, rec, reason in outcomes:
        s, m = stats[path]
        if rec is not None:
            result.records[path] = rec
            entries[path] = (s, m, rec.to_dict(with_config=False), None)
        else:
            result.skipped.append((path, reason or "skipped"))
            entries[path] = (s, m, None, reason)
    result.parsed = len(todo)
    if cache_path is not None and (todo or len(entries) != len(old)):
        _save_cache(cache_path, entries)
    result.seconds = time.perf_counter() - t0
    return result
