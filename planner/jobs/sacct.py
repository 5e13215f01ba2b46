"""Slurm accounting and queue output: the argv to ask for it, and parsers for what comes back.

Pure: text in, records out. The subprocess calls live in ``planner.jobs.slurm_query``.

Every query pins its output format (fields, delimiter, no header), so parsing never
depends on a site's ``SACCT_FORMAT``/``SQUEUE_FORMAT`` or on column widths. Both parsers
return one :class:`JobRecord` per *user-facing* job: a plain job (``"123"``) or one array
task (``"123_4"``); job steps (``.batch``, ``.extern``, ``.0``) are never records, and a
still-pending array range (``"123_[5-9%2]"``) becomes one PENDING record per task.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from planner.spec.states import JobState, is_final, normalise_state
from planner.spec.units import slurm_elapsed_seconds

SACCT_FIELDS: tuple[str, ...] = (
    "JobID",  # user-facing id: 123, 123_4, or a pending range 123_[5-9%2]
    "JobIDRaw",  # the scheduler's own id; an array task has its own (e.g. 131 for 123_4)
    "State",  # e.g. "COMPLETED", "CANCELLED by 0"
    "ExitCode",  # "<exit status>:<signal>"
    "Reason",  # why a job pends (or pended): Priority, Dependency, ...
    "Submit",
    "Start",
    "End",
    "ElapsedRaw",  # seconds, so no "1-02:03:04" parsing
    "NodeList",
    "JobName",  # last: a name containing the delimiter only lengthens the last field
)
"""sacct fields the parser expects, in this order (``--format``)."""

SQUEUE_FIELDS: tuple[tuple[str, str], ...] = (
    ("%i", "job_id"),  # 123, 123_4 (with --array every pending task gets its own line)
    ("%A", "raw_id"),  # own id of a started array task; the array's id while pending
    ("%F", "array_job_id"),
    ("%K", "array_task_id"),  # "N/A" for a job that is not an array task
    ("%T", "state"),
    ("%r", "reason"),
    ("%V", "submit"),
    ("%S", "start"),  # the *expected* start while pending: ignored then
    ("%e", "end"),  # the time limit while running: used only once the job has ended
    ("%M", "elapsed"),  # [days-][hours:]minutes:seconds
    ("%N", "node_list"),
    ("%j", "name"),  # last, for the same reason as in SACCT_FIELDS
)
"""squeue ``--format`` codes the parser expects, in this order, and what each becomes."""

DELIMITER = "|"
"""Field delimiter of both queries (sacct ``--parsable2`` uses ``|``)."""

DEFAULT_MAX_JOB_ID_CHARS = 4000
"""Longest ``--jobs`` list one query carries; longer lists are split (``chunk_job_ids``).

Far below the kernel's argv limit; it keeps each accounting query (one SQL statement in
slurmdbd) and each error message readable.
"""

_JOB_ID = re.compile(
    r"""^(?P<base>\d+)
        (?:_(?:(?P<task>\d+)|\[(?P<range>[^\]]*)\]))?  # array task or pending range
        (?P<het>\+\d+)?$                                # heterogeneous job component
    """,
    re.VERBOSE,
)
_NONE_WORDS = frozenset({"", "NONE", "UNKNOWN", "N/A", "INVALID", "(NULL)"})
_MAX_ARRAY_SIZE = re.compile(r"^\s*MaxArraySize\s*=\s*(\d+)\s*$", re.MULTILINE)


@dataclass(frozen=True)
class JobRecord:
    """One job, or one task of a job array, as the scheduler reports it.

    Attributes:
        job_id: The id users see and ``scancel`` takes: ``"123"`` or ``"123_4"``.
        raw_id: The scheduler's own id (sacct ``JobIDRaw``, squeue ``%A``); None for an
            array task that has not started (it has none of its own yet).
        array_job_id: ``"123"`` for an array task, None otherwise.
        array_task_id: ``4`` for ``"123_4"``, None otherwise.
        state: Normalised state, one of :data:`JOB_STATES`.
        raw_state: The state as Slurm wrote it, e.g. ``"CANCELLED by 0"``.
        reason: Why the job pends or pended (``"Dependency"``, ``"Priority"``), or None.
        exit_code: Exit status of the batch script; None where unknown (squeue).
        signal: Signal that ended it (0 for none); None where unknown (squeue).
        submit: Submit time, scheduler-local and naive, as Slurm prints it.
        start: Start time, or None before the job started.
        end: End time, or None before the job ended.
        elapsed_s: Run time in seconds so far (0 while pending), or None if unknown.
        node_list: Nodes the job ran on, or None.
        name: The job name.
    """

    job_id: str
    raw_id: str | None
    array_job_id: str | None
    array_task_id: int | None
    state: JobState
    raw_state: str
    reason: str | None
    exit_code: int | None
    signal: int | None
    submit: datetime | None
    start: datetime | None
    end: datetime | None
    elapsed_s: int | None
    node_list: str | None
    name: str

    @property
    def is_final(self) -> bool:
        """True when the job has ended and will not change state again."""
        return is_final(self.state)


def sacct_argv(job_ids: Sequence[str], starttime: str | None = None) -> list[str]:
    """Build the sacct command that reports the given jobs, one line per job or task.

    Args:
        job_ids: Ids as ``sbatch --parsable`` printed them (``"123"``) or task ids
            (``"123_4"``); an array's id reports every task of it. Must not be empty,
            since sacct without ``--jobs`` lists every job of the day instead.
        starttime: Passed as ``--starttime`` (e.g. ``"2025-01-31T10:00:00"``). sacct
            defaults to the epoch when ``--jobs`` is given; bounding it to the
            experiment's first submission excludes older jobs with a recycled id
            (ids restart at 1 when a cluster's state is wiped but its database is not).

    Returns:
        The argv, starting with ``"sacct"``.

    Raises:
        ValueError: If ``job_ids`` is empty.
    """
    if not job_ids:
        raise ValueError("sacct_argv needs at least one job id")
    argv = [
        "sacct",
        f"--jobs={','.join(job_ids)}",
        f"--format={','.join(SACCT_FIELDS)}",
        # --parsable2: "|"-delimited without a trailing "|"; no column widths to
        # truncate long ids or states ("CANCELLED by 1234567" fits).
        "--parsable2",
        "--noheader",
        # --allocations: one line per job allocation (the job, or each array task)
        # and none per step. The allocation line already carries the batch script's
        # exit code and the job's final state, so steps only add lines to skip, and
        # dropping them keeps the output (and slurmdbd's work) a third the size.
        "--allocations",
    ]
    if starttime is not None:
        argv.append(f"--starttime={starttime}")
    return argv


def squeue_argv(job_ids: Sequence[str]) -> list[str]:
    """Build the squeue command for the fallback path (no accounting, or sacct lag).

    squeue knows only jobs the controller still holds (pending, running, or ended less
    than ``MinJobAge`` ago) and has no exit codes; sacct is the primary source.

    Args:
        job_ids: As for :func:`sacct_argv`; must not be empty.

    Returns:
        The argv, starting with ``"squeue"``.

    Raises:
        ValueError: If ``job_ids`` is empty.
    """
    if not job_ids:
        raise ValueError("squeue_argv needs at least one job id")
    return [
        "squeue",
        f"--jobs={','.join(job_ids)}",
        # --array: one line per array task, pending ones included (123_7, not 123_[7-9]).
        "--array",
        # A job's final state, for as long as the controller remembers it.
        "--states=all",
        "--noheader",
        f"--format={DELIMITER.join(code for code, _ in SQUEUE_FIELDS)}",
    ]


def chunk_job_ids(ids: Iterable[str], max_chars: int = DEFAULT_MAX_JOB_ID_CHARS) -> list[list[str]]:
    """Split job ids into lists whose comma-joined form is at most ``max_chars`` long.

    Order is kept and duplicates are dropped. An id longer than ``max_chars`` on its own
    still gets a chunk of its own (it cannot be split).

    Args:
        ids: Job ids in the order they should be queried.
        max_chars: Longest ``",".join(chunk)``; must be positive.

    Returns:
        The chunks; empty when ``ids`` is empty.

    Raises:
        ValueError: If ``max_chars`` is not positive.
    """
    if max_chars <= 0:
        raise ValueError(f"max_chars must be positive, got {max_chars}")
    chunks: list[list[str]] = []
    current: list[str] = []
    length = 0
    seen: set[str] = set()
    for job_id in ids:
        if job_id in seen:
            continue
        seen.add(job_id)
        added = len(job_id) + (1 if current else 0)
        if current and length + added > max_chars:
            chunks.append(current)
            current, length = [], 0
            added = len(job_id)
        current.append(job_id)
        length += added
    if current:
        chunks.append(current)
    return chunks


def parse_sacct(text: str) -> list[JobRecord]:
    """Parse the output of :func:`sacct_argv` (also tolerates steps and a header).

    Step lines (``123.batch``, ``123_4.extern``, ``123.0``) are skipped; blank and
    garbled lines are skipped. A pending array range (``123_[2-4%2]``) becomes one
    PENDING record per task that has no line of its own. When the same id appears
    twice (outputs of several chunks concatenated), the later line wins.

    Args:
        text: sacct's stdout, ``|``-delimited in the order of :data:`SACCT_FIELDS`.

    Returns:
        Records in the order their ids first appear.
    """
    records: list[JobRecord] = []
    ranges: list[tuple[str, JobRecord]] = []
    for parts in _rows(text, len(SACCT_FIELDS)):
        # Unpacked by position (the order of SACCT_FIELDS): a dict per line costs more
        # than the rest of the parse when a refresh covers thousands of array tasks.
        job_id_s, raw_id, state_s, exit_s, reason_s, submit_s, start_s, end_s, elapsed_s, nodes_s, name_s = parts
        ident = _parse_job_id(job_id_s.strip())
        if ident is None:
            continue  # a step, a header or garbage
        base, task, task_range = ident
        exit_code, signal = _parse_exit_code(exit_s)
        node_list = _parse_node_list(nodes_s)
        start = _parse_time(start_s)
        if node_list is None:
            # Never got a node, so never started: Slurm stamps a job cancelled while
            # pending (e.g. by kill_invalid_depend) with Start = End, sometimes "None".
            start = None
        record = JobRecord(
            job_id=job_id_s.strip(),
            raw_id=_none_if_empty(raw_id),
            array_job_id=base if (task is not None or task_range is not None) else None,
            array_task_id=task,
            state=normalise_state(state_s),
            raw_state=state_s.strip(),
            reason=_none_if_empty(reason_s),
            exit_code=exit_code,
            signal=signal,
            submit=_parse_time(submit_s),
            start=start,
            end=_parse_time(end_s),
            elapsed_s=_parse_int(elapsed_s),
            node_list=node_list,
            name=name_s,
        )
        if task_range is not None:
            ranges.append((task_range, record))
        else:
            records.append(record)
    return _dedupe([*records, *_expand_ranges(ranges, records)])


def parse_squeue(text: str) -> list[JobRecord]:
    """Parse the output of :func:`squeue_argv`.

    squeue reports no exit codes: ``exit_code`` and ``signal`` are None. While a job
    pends, squeue's start time is a forecast and is not reported as ``start``; its end
    time is reported only for an ended job (for a running one it is the time limit).

    Args:
        text: squeue's stdout, ``|``-delimited in the order of :data:`SQUEUE_FIELDS`.

    Returns:
        Records in the order their ids first appear; a pending range that squeue
        printed as ``123_[2-4]`` (without ``--array``) is expanded per task.
    """
    records: list[JobRecord] = []
    ranges: list[tuple[str, JobRecord]] = []
    for parts in _rows(text, len(SQUEUE_FIELDS)):
        row = dict(zip((key for _, key in SQUEUE_FIELDS), parts, strict=True))
        ident = _parse_job_id(row["job_id"].strip())
        if ident is None:
            continue
        base, task, task_range = ident
        if task is None and task_range is None:
            # Without --array a task may still print as "123_4"; %K is the truth then.
            task = _parse_int(row["array_task_id"])
        is_array = task is not None or task_range is not None
        state = normalise_state(row["state"])
        started = state not in ("PENDING", "REQUEUED", "UNKNOWN")
        raw_id = _none_if_empty(row["raw_id"])
        if is_array and not started:
            raw_id = None  # %A of a pending task is the array's id, not its own
        record = JobRecord(
            job_id=row["job_id"].strip(),
            raw_id=raw_id,
            array_job_id=(_none_if_empty(row["array_job_id"]) or base) if is_array else None,
            array_task_id=task,
            state=state,
            raw_state=row["state"].strip(),
            reason=_none_if_empty(row["reason"]),
            exit_code=None,
            signal=None,
            submit=_parse_time(row["submit"]),
            start=_parse_time(row["start"]) if started else None,
            end=_parse_time(row["end"]) if is_final(state) else None,
            elapsed_s=slurm_elapsed_seconds(row["elapsed"]),
            node_list=_parse_node_list(row["node_list"]),
            name=row["name"],
        )
        if task_range is not None:
            ranges.append((task_range, record))
        else:
            records.append(record)
    return _dedupe([*records, *_expand_ranges(ranges, records)])


def parse_max_array_size(scontrol_show_config: str) -> int:
    """Read ``MaxArraySize`` from ``scontrol show config`` output.

    Array task ids must be below this value (ids 0..MaxArraySize-1).

    Args:
        scontrol_show_config: The command's stdout.

    Returns:
        The configured MaxArraySize.

    Raises:
        ValueError: If the text has no MaxArraySize line.
    """
    match = _MAX_ARRAY_SIZE.search(scontrol_show_config)
    if match is None:
        raise ValueError("no 'MaxArraySize = <n>' line in the scontrol show config output")
    return int(match.group(1))


def expand_task_range(spec: str) -> list[int]:
    """Expand a Slurm array index expression such as ``"0-4,7,10-20:5%2"``.

    Args:
        spec: The part between the brackets of ``123_[...]``; a ``%N`` throttle is
            ignored.

    Returns:
        Task ids in ascending order without duplicates.

    Raises:
        ValueError: If the expression is malformed.
    """
    spec = spec.split("%", 1)[0].strip()
    if not spec:
        raise ValueError("empty array range")
    tasks: set[int] = set()
    for part in spec.split(","):
        match = re.fullmatch(r"\s*(\d+)(?:-(\d+)(?::(\d+))?)?\s*", part)
        if match is None:
            raise ValueError(f"bad array range part {part!r}")
        first = int(match.group(1))
        last = int(match.group(2)) if match.group(2) is not None else first
        step = int(match.group(3)) if match.group(3) is not None else 1
        if last < first or step <= 0:
            raise ValueError(f"bad array range part {part!r}")
        tasks.update(range(first, last + 1, step))
    return sorted(tasks)


# --- helpers ----------------------------------------------------------------------


def _rows(text: str, n: int) -> Iterable[list[str]]:
    """Split delimited output into rows of exactly ``n`` fields; shorter lines are skipped.

    Only the last field (the job name) can contain the delimiter, so it takes the rest.
    """
    for line in text.splitlines():
        parts = line.rstrip("\r\n").split(DELIMITER)
        if len(parts) < n:
            continue
        yield parts[: n - 1] + [DELIMITER.join(parts[n - 1 :])]


def _parse_job_id(job_id: str) -> tuple[str, int | None, str | None] | None:
    """Split ``123``, ``123_4`` or ``123_[5-9]`` into (base, task, range); None for steps."""
    match = _JOB_ID.match(job_id)
    if match is None:
        return None
    task = match.group("task")
    return (
        match.group("base") + (match.group("het") or ""),
        int(task) if task is not None else None,
        match.group("range"),
    )


def _expand_ranges(ranges: list[tuple[str, JobRecord]], seen: list[JobRecord]) -> list[JobRecord]:
    """One PENDING record per task of each range that has no record of its own.

    sacct keeps printing an array's original range (``123_[0-2%2]``) on the pending
    remainder while some tasks already run under their own ids, so tasks that already
    have a line are left out rather than reported twice.
    """
    have = {r.job_id for r in seen}
    out: list[JobRecord] = []
    for spec, meta in ranges:
        try:
            tasks = expand_task_range(spec)
        except ValueError:
            continue  # unreadable range: treat like any garbled line
        base = meta.array_job_id or meta.job_id.split("_", 1)[0]
        for task in tasks:
            job_id = f"{base}_{task}"
            if job_id in have:
                continue
            have.add(job_id)
            out.append(
                JobRecord(
                    job_id=job_id,
                    raw_id=None,
                    array_job_id=base,
                    array_task_id=task,
                    state=meta.state,
                    raw_state=meta.raw_state,
                    reason=meta.reason,
                    exit_code=meta.exit_code,
                    signal=meta.signal,
                    submit=meta.submit,
                    start=meta.start,
                    end=meta.end,
                    elapsed_s=meta.elapsed_s,
                    node_list=None,
                    name=meta.name,
                )
            )
    return out


def _dedupe(records: list[JobRecord]) -> list[JobRecord]:
    """Keep the last record per job id, in the order ids first appear."""
    by_id: dict[str, JobRecord] = {}
    for record in records:
        by_id[record.job_id] = record  # dicts keep first-insertion order on update
    return list(by_id.values())


def _none_if_empty(value: str) -> str | None:
    value = value.strip()
    return None if value.upper() in _NONE_WORDS else value


def _parse_node_list(value: str) -> str | None:
    value = value.strip()
    # sacct prints "None assigned" for a job that never got a node.
    if value.upper() in _NONE_WORDS or value.lower() == "none assigned":
        return None
    return value


def _parse_int(value: str) -> int | None:
    value = value.strip()
    return int(value) if value.isdigit() else None


def _parse_exit_code(value: str) -> tuple[int | None, int | None]:
    """``"3:0"`` -> (3, 0); anything unreadable -> (None, None)."""
    status, sep, signal = value.strip().partition(":")
    if not sep or not status.isdigit() or not signal.isdigit():
        return None, None
    return int(status), int(signal)


def _parse_time(value: str) -> datetime | None:
    """Slurm's ``2025-01-31T10:00:00`` (naive, scheduler-local); None for Unknown/None/N/A."""
    value = value.strip()
    if value.upper() in _NONE_WORDS:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


