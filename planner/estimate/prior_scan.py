"""Find and parse prior training logs (``slurm-*.out``), with an incremental cache.

The scan walks folders with ``os.scandir``, parses each log with
:func:`planner.estimate.logparse.parse_log_bytes`, reads what the run folder around it says
(:mod:`planner.estimate.run_folder`), and caches the result keyed by the log's
``(path, size, mtime_ns)`` and its folder's fingerprint, so a rescan reads only what
changed. Folder listings are cached by the folder's mtime, so a rescan lists only
folders that changed and otherwise costs one ``stat`` per folder and per log.

Large logs are read sparsely: the head (config dump, memory stats), the tail (last
epoch, checkpoint saves, errors, W&B summary) and a few windows in between, aligned on
progress-bar updates. Bars are most of a log's bytes and every update says the same
kind of thing, so reading them all buys nothing but I/O.

What is cached per log is its :class:`PriorRun` summary, as a plain tuple (what
estimates use; a tuple loads several times faster than an object), or why it was
skipped. Whole records are not cached: :attr:`ScanResult.records` parses a log again
when one is asked for, which estimates never do; that keeps the cache, and so a
rescan's load, to a fifth of the size.

Cache format: pickle frames in one file, a full snapshot followed by appended delta
frames (changed and removed paths); a rescan that finds 1% changed appends a small
frame instead of rewriting 10,000 entries, and the file is compacted when deltas grow.
JSON was measured too: for 10,000 entries it loads ~2-3x slower than pickle, and
loading the cache is a large part of a rescan. The cache is private to the planner (in
the user's cache folder) and trusted like the planner's own code; an unreadable,
foreign-version or damaged cache is ignored and rebuilt, never an error. One cache
serves every scan of a user: logs outside the folders a scan walks are kept.
"""

from __future__ import annotations

import gc
import os
import time
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path

from planner.estimate.run_folder import DIR_FLAGS, FILE_FLAGS, FINETUNE, JOB_STATE, RunFacts, run_facts
from planner.estimate.estimators import PriorRun
from planner.estimate.log_reading import read_log
from planner.estimate.logparse import LogRecord, parse_log_bytes
from planner.estimate.scan_cache import load_cache, save_cache


#: Parse in worker processes when at least this many files need parsing; below it,
#: process start-up (~50 ms) costs more than it saves.
PARALLEL_MIN_FILES = 400

#: A folder changed less than this long ago may change again within the same tick of
#: the filesystem's clock (coarse: a few ms locally, a second or more on some network
#: filesystems, plus clock skew between nodes) without its mtime moving. Its listing is
#: cached as :data:`RACY` and read again next time, and the run facts of logs in it are
#: not trusted either (git does the same for "racily clean" index entries).
RACY_NS = 10 * 1_000_000_000
RACY = -1
#: Last element of the fingerprint of a run whose evaluations had all ended.
FINAL = "final"

#: Folders never worth descending into, besides hidden ones (``.git``, ``.venv``, the
#: datasets cache in each run folder) and torchtune's checkpoint folders (``epoch_N``,
#: ``recipe_state``): a run folder holds more of those than logs, and every folder
#: walked costs a ``stat`` on every rescan.
_SKIP_DIRS = {"__pycache__", "node_modules", "recipe_state"}


def _skip_dir(name: str) -> bool:
    return name[0] == "." or name in _SKIP_DIRS or (name[:6] == "epoch_" and name[6:].isdigit())

LOG_PATTERN = "slurm-*.out"

#: A log found by :func:`find_logs`: ``(path, size, mtime_ns, folder fingerprint,
#: run-file flags)``. The fingerprint changes when the run files beside the log may
#: have (0 when there are none); the flags say which exist.
LogFile = tuple[str, int, int, object, int]


_PRIOR_FIELDS = tuple(PriorRun.__dataclass_fields__)
_ITS, _TPS, _CKPT = (_PRIOR_FIELDS.index(f) for f in ("it_per_s", "tokens_per_s", "checkpoint_gib_per_epoch"))


def _summary(rec: LogRecord, facts: RunFacts) -> tuple:
    """What estimates need from a record and its run folder: PriorRun field values, in order.

    A plain tuple loads from the cache several times faster than PriorRun objects
    (pickle rebuilds those through a call per object), and the cache load is a large
    part of a rescan.
    """
    prior = PriorRun.from_record(rec, wall_seconds=facts.wall_seconds, param_count=facts.param_count,
                                 epoch_dir_gib=facts.epoch_gib)
    if facts.model:
        prior.model = facts.model
    prior.eval_seconds = list(facts.eval_seconds)
    return tuple(getattr(prior, f) for f in _PRIOR_FIELDS)


class LazyRecords(Mapping[str, LogRecord]):
    """path -> LogRecord of the logs with training data, parsed again on first access.

    Estimates need only the summaries, so the cache keeps no records: a rescan then
    loads a fifth of the bytes. A record asked for is read from the file as it is now
    (a log that vanished since the scan gives a record that says so).
    """

    def __init__(self, summaries: Mapping[str, tuple]) -> None:
        self._paths = summaries
        self._done: dict[str, LogRecord] = {}

    def __getitem__(self, path: str) -> LogRecord:
        rec = self._done.get(path)
        if rec is None:
            if path not in self._paths:
                raise KeyError(path)
            try:
                rec = parse_log_bytes(read_log(path), path)
            except OSError as exc:
                rec = LogRecord(path=path, problems=[f"unreadable since the scan: {exc.strerror or exc}"])
            rec.config_text = None  # as for every record of a scan: see the module docstring
            self._done[path] = rec
        return rec

    def __iter__(self) -> Iterator[str]:
        return iter(self._paths)

    def __len__(self) -> int:
        return len(self._paths)


@dataclass
class ScanResult:
    """What a scan found.

    Attributes:
        records: path -> record, for every log that held torchtune training output
            (a lazy mapping: a record is parsed from its file again when accessed).
        summaries: path -> summary of every record: :class:`PriorRun` field values in
            declaration order (see :meth:`priors`).
        skipped: ``(path, reason)`` for logs that were empty, unreadable, garbage or
            not training logs.
        folders: the folders walked.
        skipped_folders: ``(folder, reason)`` for search folders not walked (missing, or
            a planned experiment deleted since).
        parsed: how many files were read and parsed this time.
        cached: how many files' results came from the cache unchanged.
        seconds: wall time of the scan.
    """

    summaries: dict[str, tuple] = field(default_factory=dict)
    records: LazyRecords = field(init=False)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    folders: list[str] = field(default_factory=list)
    skipped_folders: list[tuple[str, str]] = field(default_factory=list)
    parsed: int = 0
    cached: int = 0
    seconds: float = 0.0

    def __post_init__(self) -> None:
        self.records = LazyRecords(self.summaries)

    def priors(self) -> list[PriorRun]:
        """Prior-run summaries an estimate can use (speed, token rate or checkpoint size).

        Taken from the summaries alone (no record is decoded, no file opened), so it
        stays fast for 10,000 logs. Runs planned by this tool carry what their folder
        said (:func:`planner.estimate.run_folder.run_facts`): model size, wall time,
        measured checkpoint size, evaluation times.
        """
        return [
            PriorRun(*t) for t in self.summaries.values()
            if t[_ITS] or t[_TPS] or t[_CKPT] is not None
        ]

    def usable(self) -> list[LogRecord]:
        """Full records of the logs :meth:`priors` would use (parses each one again)."""
        keep = {p.name for p in self.priors()}
        return [self.records[p] for p in self.records if p in keep]


#: A log in a cached folder listing: ``(path, size, mtime_ns, folder fingerprint,
#: summary | None, skip reason | None)``; size -1 until the log has been read. The path
#: is the same string object as the summary's name, so the cache stores it once.
_Log = tuple

#: A cached folder listing: ``(mtime_ns | RACY, subfolders, logs, run-file flags,
#: watched subfolders)``. Subfolders and logs are sorted by name, so every walk of the
#: same tree meets logs in the same order (estimates break ties by that order).
_Listing = tuple


def find_logs(dirs: list[Path], pattern: str = LOG_PATTERN) -> list[LogFile]:
    """List logs under ``dirs`` recursively, sorted by path (no cache involved).

    Returns:
        A :data:`LogFile` for each matching regular file. Symlinked folders are not
        followed: they can loop on shared filesystems.
    """
    todo: list[LogFile] = []
    _walk(dirs, pattern, {}, {}, [], todo, set())
    return sorted(todo)


def _walk(dirs: list[Path], pattern: str, cache: dict[str, _Listing], summaries: dict[str, tuple],
          skipped: list[tuple[str, str]], todo: list[LogFile], touched: set[str]) -> int:
    """Walk ``dirs``, taking what the cached listings still vouch for.

    A folder whose mtime is unchanged has the same entries, so it is not listed again;
    its logs are still stat'ed (appending to a file does not touch its folder). A log
    whose size, mtime and folder fingerprint match its cached entry contributes its
    cached summary (or skip reason); any other goes to ``todo``.

    Args:
        dirs: folders to walk (missing ones are ignored).
        pattern: log file name glob.
        cache: folder -> :data:`_Listing`, updated in place.
        summaries: filled with path -> summary of the logs still valid.
        skipped: filled with ``(path, reason)`` of logs still known to be unusable.
        todo: filled with the logs to read and parse.
        touched: filled with the folders whose cached listing changed or went.

    Returns:
        How many logs came from the cache.
    """
    stat = os.stat
    now_ns = time.time_ns()
    racy = _racy_marker(now_ns)
    cached = 0
    # Roots in the order given (popped from the end); a root nested in another is
    # walked once.
    stack = list(reversed(dict.fromkeys(str(d) for d in dirs)))
    seen: set[str] | None = set() if len(stack) > 1 else None
    while stack:
        d = stack.pop()
        if seen is not None:
            if d in seen:
                continue
            seen.add(d)
        try:
            d_mtime = stat(d).st_mtime_ns
        except OSError:
            touched.update(_forget(cache, [d]))
            continue
        listing = cache.get(d)
        if listing is None or listing[0] != d_mtime:
            fresh = _list_dir(d, d_mtime if now_ns - d_mtime > RACY_NS else RACY, pattern, listing)
            if fresh is None:
                continue
            if listing is not None:  # folders gone since the last walk: drop their listings
                touched.update(_forget(cache, set(listing[1]).difference(fresh[1])))
            if fresh != listing:
                touched.add(d)
            listing = cache[d] = fresh
        l_mtime, subdirs, logs, flags, watch = listing
        if subdirs:
            stack.extend(reversed(subdirs))
        if not logs:
            continue
        # A folder with run files is one run: its changes (a new job-state.json)
        # concern the log. A folder without is a pile of logs (sbatch's default
        # submit folder): a new log there must not invalidate the others.
        fp = (l_mtime if l_mtime != RACY else racy) if flags else 0
        if watch and fp != racy:
            old_fp = logs[0][3]
            final = type(old_fp) is tuple and old_fp[-1] == FINAL
            fp = _eval_fingerprint(watch, fp, cache, touched, now_ns, racy, final)
        for path, size, mtime, old_fp, summary, reason in logs:
            try:
                st = stat(path)
            except OSError:
                continue  # gone: its folder's mtime moved, so the next walk lists it again
            if st.st_size == size and st.st_mtime_ns == mtime and old_fp == fp:
                cached += 1
                if summary is not None:
                    summaries[path] = summary
                else:
                    skipped.append((path, reason or "skipped"))
            else:
                todo.append((path, st.st_size, st.st_mtime_ns, fp, flags))
    return cached


def _list_dir(d: str, d_mtime: int, pattern: str, old: _Listing | None) -> _Listing | None:
    """One folder's listing as the walk caches it.

    Args:
        d: the folder.
        d_mtime: its mtime, or :data:`RACY` when it changed too recently to trust.
        pattern: log file name glob.
        old: its previous listing: logs still there keep their cached entries.

    Returns:
        A :data:`_Listing`, or None when the folder cannot be read. The flags say which
        run files (:mod:`planner.estimate.run_folder`) sit beside the logs; the
        watched subfolder (``eval``) is the one whose changes (an evaluation that
        finished) must invalidate the logs' cached run facts; in a run folder it is
        not walked for logs (they are the evaluations'), nor is torchtune's metric
        ``logs/`` folder of a run planned by this tool. ``epoch_0`` is not
        watched: its size is read with the log, and checkpoints deleted later do not
        change what the run wrote.
    """
    subdirs: list[str] = []
    paths: list[str] = []
    flags = 0
    eval_dir = metrics_dir = None
    try:
        it = os.scandir(d)
    except OSError:
        return None
    with it:
        for entry in it:
            name = entry.name
            try:
                if entry.is_dir(follow_symlinks=False):
                    if name in DIR_FLAGS:
                        flags |= DIR_FLAGS[name]
                    if not _skip_dir(name):
                        subdirs.append(entry.path)
                        if name == "eval":
                            eval_dir = entry.path
                        elif name == "logs":
                            metrics_dir = entry.path
                    continue
                if name in FILE_FLAGS:
                    flags |= FILE_FLAGS[name]
                elif fnmatchcase(name, pattern) and entry.is_file(follow_symlinks=False):
                    paths.append(entry.path)
            except OSError:
                continue
    if not paths:
        return (d_mtime, tuple(sorted(subdirs)), (), 0, ())
    watch: tuple[str, ...] = ()
    if eval_dir is not None and flags & (JOB_STATE | FINETUNE):
        # A run folder's evaluations: watched for the fingerprint, not walked for logs.
        subdirs.remove(eval_dir)
        watch = (eval_dir,)
    if metrics_dir is not None and flags & FINETUNE:
        subdirs.remove(metrics_dir)  # torchtune's metric logs of a run we planned: never a slurm log
    known = {log[0]: log for log in old[2]} if old is not None else {}
    logs = tuple(known.get(p) or (p, -1, -1, None, None, None) for p in sorted(paths))
    return (d_mtime, tuple(sorted(subdirs)), logs, flags, watch)


def _forget(cache: dict[str, _Listing], folders: Iterable[str]) -> list[str]:
    """Drop the cached listings of ``folders`` and everything below them; return those dropped."""
    stack = list(folders)
    dropped = []
    while stack:
        d = stack.pop()
        listing = cache.pop(d, None)
        if listing is not None:
            dropped.append(d)
            stack.extend(listing[1])
            stack.extend(listing[4])
    return dropped


def _racy_marker(now_ns: int) -> tuple[str, int]:
    """A fingerprint no later walk will match: for folders changed too recently to trust."""
    return ("racy", now_ns)


def _stored_fingerprint(fp: object, evals_pending: bool, racy: tuple[str, int]) -> object:
    """The fingerprint to keep for a log once its run's evaluations have been read.

    A run whose evaluations have all ended is fingerprinted by its ``eval/`` folder
    alone from then on (the short form of :func:`_eval_fingerprint`); one still waiting
    for an evaluation by every evaluation's folder. Other fingerprints are kept as
    they are.
    """
    if type(fp) is not tuple or fp[0] == racy[0]:
        return fp
    if not evals_pending:
        return (fp[0], fp[1], FINAL)
    # The walk took the short form but an evaluation is pending again (one was added
    # and has not ended): make the next walk take the long form.
    return racy if fp[-1] == FINAL else fp


def _eval_fingerprint(folders: tuple[str, ...], base: object, cache: dict[str, _Listing], touched: set[str],
                      now_ns: int, racy: tuple, final: bool = False) -> object:
    """A run folder's fingerprint extended by its ``eval/`` folder and each evaluation's.

    A finished evaluation writes its ``job-state.json`` in its own folder, which moves
    that folder's mtime and nothing above it. The logs in there are the evaluations'
    own, never training logs, so they are not collected: only the folders' mtimes
    matter. Any of them changed within :data:`RACY_NS` gives ``racy``.

    With ``final`` (every evaluation had ended when the run was last read), only the
    ``eval/`` folder itself is stat'ed: a new evaluation adds a folder there. An
    evaluation run again after it had ended is then not seen until the run folder
    changes; the time it took before stands for it.
    """
    stat = os.stat
    out: list = [base]
    if final:
        try:
            mtime = stat(folders[0]).st_mtime_ns
        except OSError:
            return racy
        return racy if now_ns - mtime <= RACY_NS else (base, mtime, FINAL)
    for folder in folders:
        try:
            mtime = stat(folder).st_mtime_ns
        except OSError:
            return racy
        listing = cache.get(folder)
        if listing is None or listing[0] != mtime:
            listing = _list_dir(folder, mtime, "", None)  # "" matches no file: folders only
            if listing is None:
                return racy
            cache[folder] = listing
            touched.add(folder)
        out.append(mtime)
        for sub in listing[1]:
            try:
                out.append(stat(sub).st_mtime_ns)
            except OSError:
                return racy
    return racy if any(now_ns - m <= RACY_NS for m in out) else tuple(out)


def _parse_path(path: str, size: int | None = None, flags: int = 0,
                shapes: dict[str, int | None] | None = None) -> tuple[str, tuple | None, str | None, bool]:
    """Read and parse one file, and the run files its folder listing showed; never raises.

    Returns:
        ``(path, summary, skip_reason, evals_pending)``; summary is None with a reason
        when the file is skipped.
    """
    try:
        data = read_log(path, size)
    except OSError as exc:
        return path, None, f"unreadable: {exc.strerror or exc}", False
    if not data:
        return path, None, "empty file", False
    rec = parse_log_bytes(data, path)
    if not rec.has_training_data:
        why = "; ".join(rec.problems) or "no torchtune training output found"
        return path, None, f"no torchtune training output ({why})", False
    facts = run_facts(os.path.dirname(path), flags, rec.checkpoint_dir, shapes)
    return path, _summary(rec, facts), None, facts.evals_pending


def _parse_many(items: list[tuple[str, int, int]]) -> list[tuple[str, tuple | None, str | None, bool]]:
    shapes: dict[str, int | None] = {}  # a sweep's runs share a few models: read each config.json once
    return [_parse_path(p, s, f, shapes) for p, s, f in items]


def scan(
    dirs: list[Path],
    cache_path: Path | None = None,
    *,
    workers: int | None = None,
) -> ScanResult:
    """Find ``slurm-*.out`` logs under ``dirs`` and parse the ones not cached.

    Args:
        dirs: folders to search recursively.
        cache_path: where to keep parsed logs between scans (None: no cache).
        workers: processes for parsing; default: all CPUs when there is enough work.

    Returns:
        A :class:`ScanResult`. Garbage, empty or cut files never raise; they are in
        ``skipped`` with a reason (cut files that still hold training data are kept as
        records with ``state == "truncated"``).
    """
    # The scan allocates hundreds of thousands of small tuples and lists (cache load,
    # listings) and frees almost none: generational GC passes over them are pure
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
    cache, frames = load_cache(cache_path)
    had_cache = bool(cache)
    todo: list[LogFile] = []
    touched: set[str] = set()
    result.cached = _walk(dirs, LOG_PATTERN, cache, result.summaries, result.skipped, todo, touched)

    n_workers = workers if workers is not None else (os.cpu_count() or 1)
    items = [(p, s, f) for p, s, _, _, f in todo]
    if n_workers > 1 and len(items) >= PARALLEL_MIN_FILES:
        # Contiguous chunks keep each worker's files together; results stay in order.
        size = max(1, len(items) // (n_workers * 4))
        chunks = [items[i : i + size] for i in range(0, len(items), size)]
        with ProcessPoolExecutor(max_workers=n_workers) as pool:
            outcomes = [o for chunk in pool.map(_parse_many, chunks) for o in chunk]
    else:
        outcomes = _parse_many(items)
    updates: dict[str, dict[str, _Log]] = {}
    racy = _racy_marker(time.time_ns())
    sep = os.sep
    for (path, summary, reason, pending), (_, size, mtime, fp, _) in zip(outcomes, todo):
        fp = _stored_fingerprint(fp, pending, racy)
        if summary is not None:
            result.summaries[path] = summary
        else:
            result.skipped.append((path, reason or "skipped"))
        updates.setdefault(path.rsplit(sep, 1)[0], {})[path] = (path, size, mtime, fp, summary, reason)
    for d, logs in updates.items():
        listing = cache[d]
        cache[d] = (listing[0], listing[1], tuple(logs.get(log[0], log) for log in listing[2]), listing[3], listing[4])
        touched.add(d)
    result.parsed = len(todo)
    if cache_path is not None and (touched or not had_cache):
        save_cache(cache_path, cache, touched, frames if had_cache else -1)
    result.seconds = time.perf_counter() - t0
    return result
