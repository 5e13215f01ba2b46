"""The prior-run scan's cache: pickle frames in one file, a snapshot then appended deltas.

Edge: reads and writes the cache file. An unreadable, foreign-version or damaged cache
is ignored and rebuilt, never an error (the format is described in
:mod:`planner.estimate.prior_scan`).
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

#: A folder's cached listing (see :mod:`planner.estimate.prior_scan`).
Listing = tuple

#: Bump when LogRecord, PriorRun or the folder listing change shape; older caches are
#: then ignored.
CACHE_VERSION = 20


#: Rewrite the whole cache instead of appending a delta past this many delta frames,
#: or when a delta would hold more than this fraction of the entries.
MAX_DELTA_FRAMES = 20


MAX_DELTA_FRACTION = 0.25


def load_cache(cache_path: Path | None) -> tuple[dict[str, Listing], int]:
    """Folder listings (with their logs' entries) and the number of delta frames read."""
    if cache_path is None:
        return {}, 0
    frames = 0
    try:
        with open(cache_path, "rb") as fh:
            head = pickle.load(fh)
            if not isinstance(head, dict) or head.get("version") != CACHE_VERSION:
                return {}, 0
            dirs: dict[str, Listing] = head["dirs"]
            while True:
                try:
                    delta = pickle.load(fh)
                except EOFError:
                    break
                for d, listing in delta.items():
                    if listing is None:
                        dirs.pop(d, None)
                    else:
                        dirs[d] = listing
                frames += 1
    except (OSError, EOFError, pickle.UnpicklingError, AttributeError, ValueError,
            ImportError, IndexError, TypeError, KeyError):
        return {}, 0
    return dirs, frames


def _write_atomic(cache_path: Path, dirs: dict[str, Listing]) -> None:
    cache_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache_path.with_name(f".{cache_path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            pickle.dump({"version": CACHE_VERSION, "dirs": dirs}, fh, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, cache_path)  # atomic: a reader never sees half a cache
    except OSError:
        try:
            tmp.unlink()
        except OSError:
            pass


def save_cache(cache_path: Path, dirs: dict[str, Listing], touched: set[str], frames: int) -> None:
    """Append a delta frame of the touched listings, or rewrite the cache when deltas grow."""
    if frames >= 0 and frames < MAX_DELTA_FRAMES and len(touched) <= MAX_DELTA_FRACTION * max(1, len(dirs)):
        try:
            # One write() of a whole frame: a concurrent reader sees the old file, or
            # the old file plus a complete frame, or a torn frame it discards.
            blob = pickle.dumps({d: dirs.get(d) for d in touched}, protocol=pickle.HIGHEST_PROTOCOL)
            with open(cache_path, "ab") as fh:
                fh.write(blob)
            return
        except OSError:
            pass
    _write_atomic(cache_path, dirs)
