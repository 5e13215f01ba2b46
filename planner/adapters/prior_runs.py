"""Find and parse prior training logs (``slurm-*.out``), with an incremental cache.

The scan walks directories with ``os.scandir`` (no per-entry ``stat`` beyond what is
needed), parses each log with :func:`planner.core.logparse.parse_log_bytes`, and keeps
the records in a cache keyed by ``(path, size, mtime_ns)`` so a rescan only reads the
files that changed.

Large logs are read sparsely: the head (config dump, memory stats), the tail (last
epoch, checkpoint saves, errors, W&B summary) and a few windows in between, aligned on
progress-bar updates. Bars are most of a log's bytes and every update says the same
kind of thing, so reading them all buys nothing but I/O.

Each parsed log is kept two ways: a :class:`PriorRun` summary (what estimates use)
and the whole record pickled to bytes. Estimates read the
summaries; records are unpickled only when someone asks for one. That keeps both
the worker-to-parent traffic and a rescan's cache load to a few bytes per log.

Cache format: pickle frames in one file, a full snapshot followed by appended delta
frames (changed and removed paths); a rescan that finds 1% changed appends a small
frame instead of rewriting 10,000 records, and the file is compacted when deltas grow.
JSON was measured too: for 10,000 records it loads ~2-3x slower than pickle, and
loading the cache is most of what a rescan costs. The cache is private to the planner
and lives next to the experiment it serves, so it is trusted like the planner's own
code; an unreadable, foreign-version or damaged cache is ignored and rebuilt, never an
error. Records in a scan never carry ``config_text`` (cached or not, for consistency
and size); parse the file directly when the full config is needed.
"""

from __future__ import annotations

import gc
import json
import os
import pickle
import time
from concurrent.futures import ProcessPoolExecutor
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path

from planner.core.estimate import PriorRun
from planner.core.logparse import LogRecord, parse_log_bytes
from planner.core.status import parse_job_time

#: Bump when LogRecord changes shape; older caches are then ignored.
CACHE_VERSION = 6

#: Files up to this size are read whole; larger ones sparsely (head, windows, tail).
FULL_READ_MAX = 256 * 1024
HEAD_BYTES = 64 * 1024
TAIL_BYTES = 96 * 1024
WINDOWS = 4
WINDOW_BYTES = 4 * 1024

#: Rewrite the whole cache instead of appending a delta past this many delta frames,
#: or when a delta would hold more than this fraction of the entries.
MAX_DELTA_FRAMES = 20
MAX_DELTA_FRACTION = 0.25

#: Parse in worker processes when at least this many files need parsing; below it,
#: process start-up (~50 ms) costs more than it saves.
PARALLEL_MIN_FILES = 400

#: Folders never worth descending into.
_SKIP_DIRS = {".git", "__pycache__", "node_modules", ".venv", ".cache"}

LOG_PATTERN = "slurm-*.out"


_PRIOR_FIELDS = tuple(PriorRun.__dataclass_fields__)
_ITS, _TPS, _CKPT = (_PRIOR_FIELDS.index(f) for f in ("it_per_s", "tokens_per_s", "checkpoint_gib_per_epoch"))


def _summary(rec: LogRecord) -> tuple:
    """What estimates need from a record: a PriorRun's field values, in order.

    A plain tuple loads from the cache several times faster than PriorRun objects
    (no per-object attribute dict to rebuild), and the cache load is most of a rescan.
    """
    prior = PriorRun.from_record(rec)
    return tuple(getattr(prior, f) for f in _PRIOR_FIELDS)


class LazyRecords(Mapping[str, LogRecord]):
    """path -> LogRecord, unpickled on first access (most scans never need them all)."""

    def __init__(self) -> None:
        self._blobs: dict[str, bytes] = {}
        self._done: dict[str, LogRecord] = {}

    def _add(self, path: str, blob: bytes, rec: LogRecord | None = None) -> None:
        self._blobs[path] = blob
        if rec is not None:
            self._done[path] = rec
        else:
            self._done.pop(path, None)

    def __getitem__(self, path: str) -> LogRecord:
        rec = self._done.get(path)
        if rec is None:
            rec = LogRecord.from_tuple(pickle.loads(self._blobs[path]))
            self._done[path] = rec
        return rec

    def __iter__(self) -> Iterator[str]:
        return iter(self._blobs)

    def __len__(self) -> int:
        return len(self._blobs)


@dataclass
class ScanResult:
    """What a scan found.

    Attributes:
        records: path -> record, for every log that held torchtune training output
            (a lazy mapping: records are decoded when accessed).
        summaries: path -> summary of every record: :class:`PriorRun` field values in
            declaration order (see :meth:`priors`).
        skipped: ``(path, reason)`` for logs that were empty, unreadable, garbage or
            not training logs.
        parsed: how many files were read and parsed this time.
        cached: how many files' results came from the cache unchanged.
        seconds: wall time of the scan.
    """

    records: LazyRecords = field(default_factory=LazyRecords)
    summaries: dict[str, tuple] = field(default_factory=dict)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    parsed: int = 0
    cached: int = 0
    seconds: float = 0.0

    def priors(self, *, with_run_files: bool = False) -> list[PriorRun]:
        """Prior-run summaries an estimate can use (speed, token rate or checkpoint size).

        Taken from the summaries alone (no record is decoded), so it stays fast for
        10,000 logs.

        Args:
            with_run_files: also read what lies next to each log: ``job-state.json``
                (wall time, so estimates can include start-up overhead) and the
                ``epoch_0`` folder (measured checkpoint size). Costs file reads per log.
        """
        out = [
            PriorRun(*t) for t in self.summaries.values()
            if t[_ITS] or t[_TPS] or t[_CKPT] is not None
        ]
        if with_run_files:
            for prior in out:
                run_dir = Path(prior.name).parent
                prior.wall_seconds = job_wall_seconds(run_dir / "job-state.json")
                size = folder_gib(run_dir / "epoch_0")
                if size:
                    prior.checkpoint_gib_per_epoch = size
        return out

    def usable(self) -> list[LogRecord]:
        """Full records of the logs :meth:`priors` would use (decodes each one)."""
        keep = {p.name for p in self.priors()}
        return [self.records[p] for p in self.records if p in keep]


def job_wall_seconds(state_file: Path) -> float | None:
    """Wall time of a finished job from the ``job-state.json`` that train.sh writes.

    Returns:
        ``ended - started`` in seconds, or None when the file is missing, unreadable,
        or the job has not ended.
    """
    try:
        state = json.loads(state_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(state, dict):
        return None
    started, ended = parse_job_time(state.get("started")), parse_job_time(state.get("ended"))
    if started is None or ended is None:
        return None
    seconds = (ended - started).total_seconds()
    return seconds if seconds > 0 else None


def folder_gib(folder: Path) -> float | None:
    """Total size of the files in a folder tree, in GiB (None when it does not exist)."""
    total = 0
    stack = [str(folder)]
    found = False
    while stack:
        try:
            it = os.scandir(stack.pop())
        except OSError:
            continue
        found = True
        with it:
            for entry in it:
                try:
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(entry.path)
                    elif entry.is_file(follow_symlinks=False):
                        total += entry.stat().st_size
                except OSError:
                    continue
    return total / 1024**3 if found else None


def find_logs(
    dirs: list[Path],
    pattern: str = LOG_PATTERN,
    dir_cache: dict[str, tuple[int, list[str], list[str]]] | None = None,
) -> list[tuple[str, int, int]]:
    """List logs under ``dirs`` recursively.

    Args:
        dirs: folders to walk (missing ones are ignored).
        pattern: file name glob.
        dir_cache: folder -> ``(mtime_ns, subfolders, log names)`` from an earlier
            walk; updated in place. A folder whose mtime is unchanged has the same
            entries, so it is not listed again (its logs are still stat'ed, since
            appending to a file does not touch the folder).

    Returns:
        ``(path, size, mtime_ns)`` for each matching regular file, sorted by path.
        Symlinked folders are not followed (they can loop on shared filesystems).
    """
    found: list[tuple[str, int, int]] = []
    append = found.append
    # Symlinked folders are never followed, so the walk cannot loop; a root nested in
    # another root is walked twice, and its logs are de-duplicated at the end.
    stack = list(dict.fromkeys(str(d) for d in dirs))
    cache = dir_cache if dir_cache is not None else {}
    stat = os.stat
    sep = os.sep
    while stack:
        d = stack.pop()
        try:
            d_mtime = stat(d).st_mtime_ns
        except OSError:
            cache.pop(d, None)
            continue
        hit = cache.get(d)
        if hit is not None and hit[0] == d_mtime:
            stack.extend(hit[1])
            prefix = d + sep
            for name in hit[2]:
                path = prefix + name
                try:
                    st = stat(path)
                except OSError:
                    continue
                append((path, st.st_size, st.st_mtime_ns))
            continue
        subdirs: list[str] = []
        names: list[str] = []
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
                            subdirs.append(entry.path)
                        continue
                    # Cheap name test first: only matching files cost a stat call.
                    if fnmatchcase(name, pattern) and entry.is_file(follow_symlinks=False):
                        st = entry.stat()
                        names.append(name)
                        found.append((entry.path, st.st_size, st.st_mtime_ns))
                except OSError:
                    continue
        cache[d] = (d_mtime, subdirs, names)
        stack.extend(subdirs)
    if len(dirs) > 1:
        found = list(dict.fromkeys(found))
    found.sort()
    return found


def read_log(path: str, size: int | None = None) -> bytes:
    """Read a log, sparsely when it is large.

    Args:
        path: the file.
        size: its size if already known (saves a stat).

    Returns:
        The whole file, or for files over :data:`FULL_READ_MAX`: head, a few windows
        trimmed to whole progress-bar updates, and tail, joined by newlines.

    Raises:
        OSError: when the file cannot be read.
    """
    # A raw descriptor: io.open builds FileIO and BufferedReader objects, which is a
    # measurable share of the cost per file when there are 10,000 small ones.
    fd = os.open(path, os.O_RDONLY)
    try:
        if size is None:
            size = os.fstat(fd).st_size
        if size <= FULL_READ_MAX:
            # Ask for one byte more than the stat said, so a log still being written
            # is read to its current end; loop because read() may return less.
            chunks = []
            want = size + 1
            while chunk := os.read(fd, want):
                chunks.append(chunk)
                want = 65536
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)
        parts = [os.pread(fd, HEAD_BYTES, 0)]
        middle = size - HEAD_BYTES - TAIL_BYTES
        for k in range(1, WINDOWS + 1):
            chunk = os.pread(fd, WINDOW_BYTES, HEAD_BYTES + middle * k // (WINDOWS + 1))
            start, end = chunk.find(b"\r"), chunk.rfind(b"\r")
            if 0 <= start < end:
                parts.append(chunk[start:end])  # whole updates only
        tail = os.pread(fd, TAIL_BYTES, size - TAIL_BYTES)
        # Start the tail at a line or update boundary, not mid-update.
        cuts = [i for i in (tail.find(b"\n"), tail.find(b"\r")) if i >= 0]
        parts.append(tail[min(cuts):] if cuts else tail)
        return b"\n".join(parts)
    finally:
        os.close(fd)


def _parse_path(path: str, size: int | None = None) -> tuple[str, tuple | None, bytes | None, str | None]:
    """Read and parse one file; never raises.

    Returns:
        ``(path, summary, record_blob, skip_reason)``; summary and blob are None with a
        reason when the file is skipped.
    """
    try:
        data = read_log(path, size)
    except OSError as exc:
        return path, None, None, f"unreadable: {exc.strerror or exc}"
    if not data:
        return path, None, None, "empty file"
    rec = parse_log_bytes(data, path)
    rec.config_text = None  # see the module docstring
    if not rec.has_training_data:
        why = "; ".join(rec.problems) or "no torchtune training output found"
        return path, None, None, f"no torchtune training output ({why})"
    return path, _summary(rec), pickle.dumps(rec.to_tuple(), protocol=pickle.HIGHEST_PROTOCOL), None


def _parse_many(items: list[tuple[str, int]]) -> list[tuple[str, tuple | None, bytes | None, str | None]]:
    return [_parse_path(p, s) for p, s in items]


_Entry = tuple  # (size, mtime_ns, summary | None, record blob | None, skip reason | None)


def _load_cache(cache_path: Path | None) -> tuple[dict[str, _Entry], dict[str, tuple], int]:
    """Entries, folder listings and the number of delta frames read."""
    if cache_path is None:
        return {}, {}, 0
    entries: dict[str, _Entry] = {}
    dirs: dict[str, tuple] = {}
    frames = 0
    try:
        with open(cache_path, "rb") as fh:
            head = pickle.load(fh)
            if not isinstance(head, dict) or head.get("version") != CACHE_VERSION:
                return {}, {}, 0
            entries = head.get("entries") or {}
            dirs = head.get("dirs") or {}
            while True:
                try:
                    delta = pickle.load(fh)
                except EOFError:
                    break
                entries.update(delta.get("changed") or {})
                for gone in delta.get("removed") or ():
                    entries.pop(gone, None)
                dirs = delta.get("dirs", dirs)
                frames += 1
    except (OSError, EOFError, pickle.UnpicklingError, AttributeError, ValueError,
            ImportError, IndexError, TypeError, KeyError):
        return {}, {}, 0
    return entries, dirs, frames


def _write_atomic(cache_path: Path, entries: dict[str, _Entry], dirs: dict[str, tuple]) -> None:
    cache_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache_path.with_name(f".{cache_path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            pickle.dump({"version": CACHE_VERSION, "entries": entries, "dirs": dirs}, fh,
                        protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, cache_path)  # atomic: a reader never sees half a cache
    except OSError:
        try:
            tmp.unlink()
        except OSError:
            pass


def _save_cache(cache_path: Path, entries: dict[str, _Entry], changed: dict[str, _Entry],
                removed: list[str], dirs: dict[str, tuple], dirs_changed: bool, frames: int,
                had_cache: bool) -> None:
    small = len(changed) + len(removed) <= MAX_DELTA_FRACTION * max(1, len(entries))
    if had_cache and small and frames < MAX_DELTA_FRAMES:
        try:
            # One write() of a whole frame: a concurrent reader sees the old file, or
            # the old file plus a complete frame, or a torn frame it discards.
            frame: dict = {"changed": changed, "removed": removed}
            if dirs_changed:
                frame["dirs"] = dirs  # listings are small next to records: store whole
            blob = pickle.dumps(frame, protocol=pickle.HIGHEST_PROTOCOL)
            with open(cache_path, "ab") as fh:
                fh.write(blob)
            return
        except OSError:
            pass
    _write_atomic(cache_path, entries, dirs)


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
    # The scan allocates hundreds of thousands of small tuples and lists (cache load,
    # records) and frees almost none: generational GC passes over them are pure
    # overhead, measured at up to a third of a rescan. Paused for the scan only.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _scan(dirs, cache_path, workers)
    finally:
        if gc_was_enabled:
            gc.enable()


def _scan(dirs: list[Path], cache_path: Path | None, workers: int | None) -> ScanResult:
    t0 = time.perf_counter()
    result = ScanResult()
    old, dir_cache, frames = _load_cache(cache_path)
    dirs_before = dict(dir_cache)
    files = find_logs(dirs, dir_cache=dir_cache)
    entries: dict[str, _Entry] = {}
    todo: list[tuple[str, int, int]] = []
    records = result.records
    summaries = result.summaries
    skipped = result.skipped
    for path, size, mtime in files:
        hit = old.get(path)
        if hit is not None and hit[0] == size and hit[1] == mtime:
            entries[path] = hit
            if hit[2] is not None:
                summaries[path] = hit[2]
                records._add(path, hit[3])
            else:
                skipped.append((path, hit[4] or "skipped"))
        else:
            todo.append((path, size, mtime))
    result.cached = len(entries)

    n_workers = workers if workers is not None else (os.cpu_count() or 1)
    items = [(p, s) for p, s, _ in todo]
    if n_workers > 1 and len(items) >= PARALLEL_MIN_FILES:
        # Contiguous chunks keep each worker's files together; results stay in order.
        size = max(1, len(items) // (n_workers * 4))
        chunks = [items[i : i + size] for i in range(0, len(items), size)]
        with ProcessPoolExecutor(max_workers=n_workers) as pool:
            outcomes = [o for chunk in pool.map(_parse_many, chunks) for o in chunk]
    else:
        outcomes = _parse_many(items)
    changed: dict[str, _Entry] = {}
    for (path, summ, blob, reason), (_, s, m) in zip(outcomes, todo):
        if summ is not None and blob is not None:
            summaries[path] = summ
            records._add(path, blob)
        else:
            skipped.append((path, reason or "skipped"))
        changed[path] = entries[path] = (s, m, summ, blob, reason)
    result.parsed = len(todo)
    removed = [p for p in old if p not in entries]
    dirs_changed = dir_cache != dirs_before
    if cache_path is not None and (changed or removed or dirs_changed or not old):
        _save_cache(cache_path, entries, changed, removed, dir_cache, dirs_changed, frames,
                    had_cache=bool(old))
    result.seconds = time.perf_counter() - t0
    return result
