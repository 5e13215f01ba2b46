"""Reading a training log from disk: whole when small, sparsely (head, windows, tail) when large.

Edge: one raw descriptor per file; see :mod:`planner.estimate.prior_scan` for why.
"""

from __future__ import annotations

import os

#: Files up to this size are read whole; larger ones sparsely (head, windows, tail).
FULL_READ_MAX = 256 * 1024


HEAD_BYTES = 64 * 1024


TAIL_BYTES = 96 * 1024


WINDOWS = 4


WINDOW_BYTES = 4 * 1024


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
