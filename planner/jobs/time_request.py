"""The ``--time`` a fine-tune job asks for: one rule, used by ``new``, ``estimate`` and ``submit``.

Precedence (documented in docs/spec.md):

1. the spec's ``resources.time`` when it is a Slurm time;
2. else, when the spec says nothing, ``slurm.time`` of ``claude.local.md`` when it is a Slurm time;
3. else (``auto``) the run's estimate with its safety margin, capped by the partition's
   MaxTime when Slurm can tell it.

An explicit value is never changed: the user may know better than the estimate, and a
request above MaxTime is Slurm's to refuse with its own message. An auto request is never
shorter than :func:`auto_floor_seconds` (then capped by MaxTime all the same).

The warning a job gets ahead of its limit (``--signal=USR2@N``) is decided here too, from
the limit Slurm will hold (:func:`signal_offset`): every submit and dry run sends the same.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from planner.spec.units import slurm_time_seconds

AUTO = "auto"
# What auto asks for when no estimate exists at all (estimates.json missing a run).
FALLBACK_TIME = "01:00:00"
#: The shortest auto request: start-up alone can take minutes on a busy node.
AUTO_MIN_SECONDS = 15 * 60
#: The warning comes at most this share of the limit before it (a quarter): the rest of the
#: limit is the job's to work in. Slurm limits are whole minutes, so it is 15 s at least.
SIGNAL_SHARE = 0.25
#: What evaluation jobs are warned with (they only end on it): submitit's own default.
EVAL_SIGNAL_SECONDS = 90

_MAX_TIME = re.compile(r"\bMaxTime=(\S+)")
_NAME = re.compile(r"^PartitionName=(\S+)", re.MULTILINE)


@dataclass(frozen=True)
class TimeRequest:
    """The time a job asks for and where it came from."""

    time: str
    source: str  # "resources.time in the spec" | "slurm.time in claude.local.md" | "estimate" | "estimate, capped ..."
    capped: bool = False

    @property
    def seconds(self) -> int:
        """The request in seconds."""
        return slurm_time_seconds(self.time)


def format_slurm_time(seconds: int) -> str:
    """``HH:MM:SS``, or ``D-HH:MM:SS`` from one day on."""
    d, rem = divmod(int(seconds), 86400)
    h, rem = divmod(rem, 3600)
    m, s = divmod(rem, 60)
    return f"{d}-{h:02d}:{m:02d}:{s:02d}" if d else f"{h:02d}:{m:02d}:{s:02d}"


def slurm_limit_minutes(time: str) -> int:
    """The limit Slurm holds for a ``--time``, in whole minutes (at least one).

    The batch script asks for minutes, and seconds of a request are dropped:
    ``00:01:30`` is one minute. Every figure derived from the limit starts here.
    """
    return max(1, slurm_time_seconds(time) // 60)


def signal_offset(time: str, stop_before_limit: int) -> int:
    """Seconds before the limit at which Slurm warns the job (``--signal=USR2@N``).

    ``stop_before_limit`` as asked, unless that is more than a quarter of the limit Slurm
    holds: a warning due before the job has had three quarters of its time would stop the
    training as it starts (a one-minute limit with the default 120 s was warned at once).

    Args:
        time: the job's ``--time`` (a Slurm time).
        stop_before_limit: ``resources.stop_before_limit`` in seconds (0 is kept as asked).

    Returns:
        Seconds, never more than a quarter of the limit (15 s for a one-minute limit).
    """
    return min(int(stop_before_limit), int(slurm_limit_minutes(time) * 60 * SIGNAL_SHARE))


def signal_note(time: str, stop_before_limit: int) -> str:
    """How the warning of a ``--time`` was decided, for the summary and the design log."""
    offset = signal_offset(time, stop_before_limit)
    if offset == stop_before_limit:
        return f"--signal=USR2@{offset} (resources.stop_before_limit)"
    return (f"--signal=USR2@{offset} (resources.stop_before_limit {stop_before_limit} s is more than a quarter of "
            f"the {slurm_limit_minutes(time)}-minute limit)")


def auto_floor_seconds(stop_before_limit: int) -> int:
    """The shortest auto request: 15 minutes, or four times ``stop_before_limit`` when longer.

    Four times, so that the warning of an auto request is never cut to a quarter of its
    limit: the training gets all the time it was told to stop in.
    """
    return max(AUTO_MIN_SECONDS, 4 * int(stop_before_limit))


def is_explicit(spec_time: str | None, local_time: str) -> bool:
    """True when the spec or claude.local.md decides the time (no estimate, no cap)."""
    return spec_time not in (None, AUTO) or (spec_time is None and local_time != AUTO)


def train_time_request(spec_time: str | None, local_time: str, auto_time: str | None, max_time_s: int | None,
                       stop_before_limit: int = 0) -> TimeRequest:
    """Decide a fine-tune job's ``--time``.

    Args:
        spec_time: ``resources.time`` of the spec: None when absent, ``auto`` or a Slurm time.
        local_time: ``slurm.time`` of claude.local.md: ``auto`` or a Slurm time.
        auto_time: the estimate's Slurm time (estimate x 1.5, rounded up), None when there is none.
        max_time_s: the partition's MaxTime in seconds, None when unknown or unlimited.
        stop_before_limit: ``resources.stop_before_limit``; an auto request is at least
            :func:`auto_floor_seconds` of it (an estimates.json written by hand or by an older
            version may hold less).
    """
    if is_explicit(spec_time, local_time):
        if spec_time not in (None, AUTO):
            assert spec_time is not None
            return TimeRequest(spec_time, "resources.time in the spec")
        return TimeRequest(local_time, "slurm.time in claude.local.md")
    wanted = auto_time or FALLBACK_TIME
    source = "estimate" if auto_time else "no estimate: the default"
    floor = auto_floor_seconds(stop_before_limit)
    if slurm_time_seconds(wanted) < floor:
        source = f"estimate {wanted}, raised to the shortest auto request"
        wanted = format_slurm_time(floor)
    if max_time_s is not None and slurm_time_seconds(wanted) > max_time_s:
        # MaxTime wins over the floor: a request above it is refused or pends forever.
        return TimeRequest(format_slurm_time(max_time_s), f"estimate {wanted}, capped by the partition's MaxTime", capped=True)
    return TimeRequest(wanted, source)


def parse_partition_max_time(scontrol_show_partition: str, partition: str | None) -> int | None:
    """MaxTime of a partition in seconds from ``scontrol show partition`` output.

    Args:
        scontrol_show_partition: the whole output (every partition, blank-line separated).
        partition: the partition asked for; None for the cluster's default (``Default=YES``).

    Returns:
        Seconds, or None when the partition is absent, has no MaxTime or it is UNLIMITED.
    """
    blocks = [b for b in re.split(r"\n\s*\n", scontrol_show_partition) if _NAME.search(b)]
    for block in blocks:
        name = _NAME.search(block)
        assert name is not None
        chosen = name.group(1) == partition if partition else re.search(r"\bDefault=YES\b", block) is not None
        if not chosen:
            continue
        found = _MAX_TIME.search(block)
        if not found or found.group(1).upper() in {"UNLIMITED", "INFINITE", "NONE"}:
            return None
        try:
            return slurm_time_seconds(found.group(1))
        except ValueError:
            return None
    return None
