"""Process-level helpers shared by the workflows."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector for a burst of allocation.

    Planning 10,000 runs or analysing 10,000 evaluations allocates millions of small,
    acyclic objects (rows, dicts, strings); the collector then runs hundreds of times
    over a growing heap and finds nothing to free: a quarter of ``analyze``'s time
    (benchmarks/analyze_scale.py). Reference counting still frees everything at once;
    the collector resumes, as it was, on the way out.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
