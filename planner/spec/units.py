"""Units: durations, sizes and Slurm times, as the planner reads and writes them.

Every conversion between seconds or bytes and text lives here, so a summary, a log line
and a Slurm request never disagree about what "1.5 h" or "01:30:00" means. Pure.
"""

from __future__ import annotations

import math
import re
from datetime import datetime


def duration(seconds: float | None) -> str:
    """Human duration: 45 s, 8 min, 1.5 h, 2.1 days."""
    if seconds is None:
        return "-"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def size(num_bytes: float | None) -> str:
    """Human size in binary units: 655 KiB, 2.3 GiB."""
    if num_bytes is None:
        return "unknown"
    value = float(num_bytes)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit in ("B", "KiB") else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def parse_job_time(text: str | None) -> datetime | None:
    """A job-state.json time (UTC, ``...Z``, with or without fractions) as naive local time."""
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone().replace(tzinfo=None)
    except ValueError:
        return None


def clock(seconds: float) -> str:
    """Seconds as H:MM:SS, the way sacct shows elapsed time."""
    s = int(round(seconds))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}:{m:02d}:{sec:02d}"


def slurm_time_seconds(text: str) -> int:
    """Seconds of a Slurm time string (MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS)."""
    days = 0
    if "-" in text:
        d, text = text.split("-", 1)
        days = int(d)
        parts = [int(p) for p in text.split(":")]
        while len(parts) < 3:
            parts.append(0)
        h, m, s = parts
    else:
        parts = [int(p) for p in text.split(":")]
        if len(parts) == 1:
            h, m, s = 0, parts[0], 0
        elif len(parts) == 2:
            h, m, s = 0, parts[0], parts[1]
        else:
            h, m, s = parts
    return ((days * 24 + h) * 60 + m) * 60 + s


def format_duration(seconds: float) -> str:
    """Round *up* to a planning-friendly unit: ``45 s``, ``8 min``, ``2 h 5 min``, ``1 d 3 h``.

    Rounding up keeps the seed's arithmetic (461 s per epoch is "8 min") and errs on
    the side of more time.
    """
    if seconds < 90:
        return f"{math.ceil(seconds)} s"
    minutes = math.ceil(seconds / 60)
    if minutes < 90:
        return f"{minutes} min"
    h, m = divmod(minutes, 60)
    if h < 48:
        return f"{h} h {m} min" if m else f"{h} h"
    d, h = divmod(h, 24)
    return f"{d} d {h} h" if h else f"{d} d"


def slurm_time(estimate_seconds: float, margin: float = 0.5, minimum_s: float = 15 * 60) -> str:
    """A Slurm ``--time`` for an estimate: margin added, rounded up, formatted.

    Granularity grows with the figure so requests look deliberate and schedule well:
    5 minutes up to an hour, 15 up to 6 hours, 30 up to a day, then whole hours.

    Args:
        estimate_seconds: the estimate.
        margin: safety margin as a fraction (0.5: +50%).
        minimum_s: never ask for less (start-up alone can take minutes on a busy node).

    Returns:
        ``HH:MM:SS``, or ``D-HH:MM:SS`` from one day on.
    """
    t = max(float(estimate_seconds) * (1.0 + margin), minimum_s)
    for limit, step in ((3600, 300), (6 * 3600, 900), (86400, 1800), (math.inf, 3600)):
        if t <= limit:
            t = math.ceil(t / step) * step
            break
    total = int(t)
    d, rem = divmod(total, 86400)
    h, rem = divmod(rem, 3600)
    m, s = divmod(rem, 60)
    return f"{d}-{h:02d}:{m:02d}:{s:02d}" if d else f"{h:02d}:{m:02d}:{s:02d}"


def tqdm_seconds(s: str | None) -> float | None:
    """tqdm's ``[D d ][H:]MM:SS`` to seconds."""
    if not s or "?" in s:
        return None
    days = 0
    if "d " in s:
        d, s = s.split("d ", 1)
        days = int(d) if d.isdigit() else 0
    total = 0
    for part in s.split(":"):
        if not part.isdigit():
            return None
        total = total * 60 + int(part)
    return float(total + days * 86400)


_ELAPSED = re.compile(r"^(?:(?:(\d+)-)?(\d+):)?(\d+):(\d+)$")


def slurm_elapsed_seconds(value: str) -> int | None:
    """squeue's ``[days-][hours:]minutes:seconds`` -> seconds."""
    match = _ELAPSED.match(value.strip())
    if match is None:
        return None
    days, hours, minutes, seconds = (int(g) if g else 0 for g in match.groups())
    return ((days * 24 + hours) * 60 + minutes) * 60 + seconds


def prediction_error_pct(predicted_s: float, actual_s: float) -> float:
    """How far a job's actual time was from its prediction, in percent of the prediction.

    ``+20`` means the job ran 20 % longer than predicted. The one formula behind the
    status notes, the status table and ``estimate --calibrate``.
    """
    return (actual_s - predicted_s) / predicted_s * 100
