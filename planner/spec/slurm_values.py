"""What Slurm accepts in each ``#SBATCH`` value we write: one table of patterns.

Every value that reaches an ``#SBATCH`` line (from claude.local.md, the spec's ``resources``
or the experiment folder's path) is checked here, at load time by the settings and spec
models and once more where the batch script is made. ``#SBATCH`` lines are comments to
the shell: a newline inside a value would end the comment and run the rest as a command,
and quoting cannot help there, so such a value must never get that far.
"""

from __future__ import annotations

import re

_NAME = r"[A-Za-z0-9][A-Za-z0-9_.+-]*"
# Slurm time formats: MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS (minutes and seconds below 60).
# \Z, not $: $ also matches before a trailing newline.
SLURM_TIME = re.compile(r"^(\d+-\d{1,2}(:[0-5]\d){0,2}|\d+(:[0-5]\d)?|\d{1,3}:[0-5]\d:[0-5]\d)\Z")

# key -> (pattern, what it looks like): the whole value must match.
SBATCH_PATTERNS: dict[str, tuple[re.Pattern[str], str]] = {
    "account": (re.compile(rf"^{_NAME}$"), "a Slurm account name such as mygroup (letters, digits, _ . + -)"),
    "partition": (re.compile(rf"^{_NAME}(,{_NAME})*$"), "a partition name, or several joined by commas, such as gpu"),
    "qos": (re.compile(rf"^{_NAME}$"), "a QOS name such as normal"),
    "constraint": (re.compile(r"^[A-Za-z0-9_.+\-&|,\[\]*()!:]+$"),
                   "a feature expression such as gpu80 or a100|h100 (no spaces, quotes or $)"),
    "mem": (re.compile(r"^[0-9]+[KMGTkmgt]?$"), "a whole number with an optional unit K, M, G or T, such as 32G"),
    "time": (SLURM_TIME, "a Slurm time: MM, HH:MM:SS or D-HH:MM:SS, such as 02:00:00"),
    "eval_time": (SLURM_TIME, "a Slurm time: MM, HH:MM:SS or D-HH:MM:SS, such as 00:30:00"),
    # DRYRUN<n>: the placeholder ids of --dry-run.
    "dependency": (re.compile(r"^afterok:(DRYRUN)?[0-9]+(_[0-9]+)?(:(DRYRUN)?[0-9]+(_[0-9]+)?)*$"), "afterok:<job id>"),
}

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def sbatch_value_problem(key: str, value: str) -> str | None:
    """Why ``value`` cannot be written as ``#SBATCH --key=value``; None when it can."""
    entry = SBATCH_PATTERNS.get(key)
    if entry is None:
        return None if not _CONTROL.search(value) else "control characters (a newline) would end the #SBATCH line"
    pattern, looks_like = entry
    if pattern.fullmatch(value) and not _CONTROL.search(value):
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
