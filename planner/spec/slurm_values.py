"""What Slurm accepts in each ``#SBATCH`` value we write: one table of patterns.

Every value that reaches an ``#SBATCH`` line (from claude.local.md, the spec's ``resources``
or the experiment folder's path) is checked here, at load time by the settings and spec
models and once more where the batch script is made. ``#SBATCH`` lines are comments to
the shell: a newline inside a value would end the comment and run the rest as a command,
and quoting cannot help there, so such a value must never get that far.
"""

from __future__ import annotations

import re
from collections.abc import Callable

_NAME = r"[A-Za-z0-9][A-Za-z0-9_.+-]*"
# Slurm time formats: MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS; ASCII digits only (Python's \d
# also takes other scripts' digits, which Slurm does not). \Z, not $: $ also matches before a trailing newline.
_TIME_SHAPE = re.compile(r"(?:([0-9]+)-([0-9]{1,2})((?::[0-9]{2}){0,2})|([0-9]+)((?::[0-9]{2}){0,2}))\Z")
_TIME_FIX = "use MM, HH:MM:SS or D-HH:MM:SS, e.g. 02:00:00"


def slurm_time_problem(value: str) -> str | None:
    """Why ``value`` is not a time limit Slurm reads as meant, or None: the one rule for every Slurm time we read.

    Slurm takes MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM and D-HH:MM:SS. Hours may run past 23
    (``100:00:00``) and minutes past 59 (``90``) where they lead, but minutes and seconds
    after a colon run 0-59 and hours after a day count 0-23: anything else is not what
    anyone means. A zero limit means "no limit" to Slurm, never what a plan asks for.
    """
    m = _TIME_SHAPE.match(value)
    if m is None:
        return f"not a Slurm time; {_TIME_FIX}"
    days, day_hours, day_rest, lead, rest = m.groups()
    tail = [int(p) for p in (day_rest if days is not None else rest).split(":")[1:]]
    if days is not None and int(day_hours) > 23:
        return f"hours after a day count run 0-23; {_TIME_FIX}"
    if any(p > 59 for p in tail):
        return f"minutes and seconds run 0-59; {_TIME_FIX}"
    if days is None and int(lead) == 0 and not any(tail):
        return f"a zero time limit; {_TIME_FIX}"
    return None


def is_slurm_time(value: str) -> bool:
    """Whether ``value`` passes :func:`slurm_time_problem`."""
    return slurm_time_problem(value) is None


# key -> (whether a whole value is one, what it looks like).
SBATCH_PATTERNS: dict[str, tuple[Callable[[str], object], str]] = {
    "account": (re.compile(rf"^{_NAME}$").fullmatch,
                "a Slurm account name such as mygroup (letters, digits, _ . + -)"),
    "partition": (re.compile(rf"^{_NAME}(,{_NAME})*$").fullmatch,
                  "a partition name, or several joined by commas, such as gpu"),
    "qos": (re.compile(rf"^{_NAME}$").fullmatch, "a QOS name such as normal"),
    "constraint": (re.compile(r"^[A-Za-z0-9_.+\-&|,\[\]*()!:]+$").fullmatch,
                   "a feature expression such as gpu80 or a100|h100 (no spaces, quotes or $)"),
    "mem": (re.compile(r"^[0-9]+[KMGTkmgt]?$").fullmatch,
            "a whole number with an optional unit K, M, G or T, such as 32G"),
    "time": (is_slurm_time, "a Slurm time: MM, HH:MM:SS or D-HH:MM:SS, such as 02:00:00"),
    "eval_time": (is_slurm_time, "a Slurm time: MM, HH:MM:SS or D-HH:MM:SS, such as 00:30:00"),
    # DRYRUN<n>: the placeholder ids of --dry-run.
    "dependency": (re.compile(r"^afterok:(DRYRUN)?[0-9]+(_[0-9]+)?(:(DRYRUN)?[0-9]+(_[0-9]+)?)*$").fullmatch,
                   "afterok:<job id>"),
}

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def sbatch_value_problem(key: str, value: str) -> str | None:
    """Why ``value`` cannot be written as ``#SBATCH --key=value``; None when it can."""
    entry = SBATCH_PATTERNS.get(key)
    if entry is None:
        return None if not _CONTROL.search(value) else "control characters (a newline) would end the #SBATCH line"
    check, looks_like = entry
    if check(value) and not _CONTROL.search(value):
        return None
    return f"Slurm expects {looks_like}"


def check_sbatch_value(key: str, value: str | None) -> str | None:
    """For pydantic validators: the value, or a ValueError saying what Slurm accepts."""
    if value is None:
        return None
    problem = sbatch_value_problem(key, value)
    if problem:
        raise ValueError(problem)
    return value


def path_problem(path: str) -> str | None:
    """Why a folder path cannot appear in a batch script (``#SBATCH --output``); None when it can."""
    if _CONTROL.search(path):
        return f"{path!r} has a newline or control character, which would end the #SBATCH --output line"
    return None
