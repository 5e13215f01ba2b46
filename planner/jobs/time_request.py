"""The ``--time`` a fine-tune job asks for: one rule, used by ``new``, ``estimate`` and ``submit``.

Precedence (documented in docs/spec.md):

1. the spec's ``resources.time`` when it is a Slurm time;
2. else, when the spec says nothing, ``slurm.time`` of ``claude.local.md`` when it is a Slurm time;
3. else (``auto``) the run's estimate with its safety margin, capped by the partition's
   MaxTime when Slurm can tell it.

An explicit value is never changed: the user may know better than the estimate, and a
request above MaxTime is Slurm's to refuse with its own message.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from planner.spec.units import slurm_time_seconds

AUTO = "auto"
# What auto asks for when no estimate exists at all (estimates.json missing a run).
FALLBACK_TIME = "01:00:00"

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


def is_explicit(spec_time: str | None, local_time: str) -> bool:
    """True when the spec or claude.local.md decides the time (no estimate, no cap)."""
    return spec_time not in (None, AUTO) or (spec_time is None and local_time != AUTO)


def train_time_request(spec_time: str | None, local_time: str, auto_time: str | None, max_time_s: int | None) -> TimeRequest:
    """Decide a fine-tune job's ``--time``.

    Args:
        spec_time: ``resources.time`` of the spec: None when absent, ``auto`` or a Slurm time.
        local_time: ``slurm.time`` of claude.local.md: ``auto`` or a Slurm time.
        auto_time: the estimate's Slurm time (estimate x 1.5, rounded up), None when there is none.
        max_time_s: the partition's MaxTime in seconds, None when unknown or unlimited.
    """
    if is_explicit(spec_time, local_time):
        if spec_time not in (None, AUTO):
            assert spec_time is not None
            return TimeRequest(spec_time, "resources.time in the spec")
        return TimeRequest(local_time, "slurm.time in claude.local.md")
    wanted = auto_time or FALLBACK_TIME
    if max_time_s is not None and slurm_time_seconds(wanted) > max_time_s:
        return TimeRequest(format_slurm_time(max_time_s), f"estimate {wanted}, capped by the partition's MaxTime", capped=True)
    return TimeRequest(wanted, "estimate" if auto_time else "no estimate: the default")


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
