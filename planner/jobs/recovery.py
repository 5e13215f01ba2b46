"""Recovery of a training job without a person: decisions and the run's ``recovery.json``.

Pure. The in-job supervisor (planner.jobs.train_supervisor) does the I/O: it runs
``tune run``, asks these functions what to do after a failure, and records the answers.

Terms: an *attempt* is one start of the job script by the scheduler (a requeued job
starts again under the same job id); a *try* is one ``tune run`` inside an attempt (an
out-of-memory retry is a new try in the same allocation).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

RECOVERY_FILE = "recovery.json"
#: What torchtune (torch) prints when CUDA runs out of memory.
OOM_MARKERS = ("torch.OutOfMemoryError", "CUDA out of memory")
#: Exit code of a job script that handed its job back to the scheduler (requeued itself).
REQUEUED_EXIT = 75


def is_out_of_memory(output: str) -> bool:
    """Whether a failed try's output shows a CUDA out-of-memory error."""
    return any(marker in output for marker in OOM_MARKERS)


def smaller_batch(batch: int, accumulation: int) -> tuple[int, int] | None:
    """The next per-device batch after an out-of-memory error, with the effective batch kept.

    The batch is halved (or, when it is odd, cut to its largest divisor at most half of
    it) and gradient accumulation grows by the same factor, so batch x accumulation, and
    with it the experiment, is unchanged.

    Returns:
        ``(batch, accumulation)``, or None when the batch is already 1.
    """
    if batch <= 1:
        return None
    smaller = next(d for d in range(batch // 2, 0, -1) if batch % d == 0)
    return smaller, accumulation * (batch // smaller)


#: Why the scheduler ended an earlier attempt, by the state sacct recorded for it.
_INTERRUPTIONS = {
    "NODE_FAIL": "node failure",
    "REQUEUED": "requeued",
    "PREEMPTED": "preempted",
    "TIMEOUT": "time limit",
    "BOOT_FAIL": "node boot failure",
    "CANCELLED": "cancelled",
}


def interruption(states: list[str]) -> str:
    """Why the previous attempt of a restarted job ended, from ``sacct -D`` states (oldest first).

    The last state is the running attempt's own; the one before it is the previous
    attempt's. Unknown or missing: "stopped by the scheduler".
    """
    if len(states) < 2:
        return "stopped by the scheduler"
    state = states[-2].split()[0] if states[-2].strip() else ""
    return f"{_INTERRUPTIONS[state]} ({state})" if state in _INTERRUPTIONS else "stopped by the scheduler"


def batch_text(batch: int, accumulation: int) -> str:
    """``8`` or ``4 x2`` (batch, times gradient accumulation when above 1)."""
    return f"{batch}" if accumulation == 1 else f"{batch} x{accumulation}"


@dataclass
class Attempt:
    """One start of the job script by the scheduler."""

    number: int
    job_id: str
    started: str
    ended: str | None = None
    outcome: str | None = None  # COMPLETED, FAILED, OUT_OF_MEMORY, REQUEUED, INTERRUPTED, GAVE_UP
    detail: str | None = None
    resumed_from: int | None = None  # epoch whose checkpoint the attempt started from
    tries: int = 0


@dataclass
class Deviation:
    """A change from the plan that a job made on its own."""

    time: str
    job_id: str
    reason: str  # out-of-memory
    batch_from: int
    accumulation_from: int
    batch_to: int
    accumulation_to: int


@dataclass
class RecoveryState:
    """A run's ``recovery.json``: what its jobs changed and how often they started."""

    planned_batch: int
    planned_accumulation: int
    batch: int
    accumulation: int
    attempts: list[Attempt] = field(default_factory=list)
    deviations: list[Deviation] = field(default_factory=list)

    @classmethod
    def planned(cls, batch: int, accumulation: int) -> "RecoveryState":
        """A fresh state at the plan's batch."""
        return cls(batch, accumulation, batch, accumulation)

    def attempts_of(self, job_id: str) -> list[Attempt]:
        """The attempts of one job (a requeued job keeps its id)."""
        return [a for a in self.attempts if a.job_id == job_id]

    def to_json(self) -> str:
        """One line of JSON (job-state.json embeds it)."""
        return json.dumps({"version": 1, **asdict(self)}, separators=(", ", ": ")) + "\n"

    @classmethod
    def from_json(cls, text: str) -> "RecoveryState":
        """Parse ``recovery.json``; ValueError when it is not one."""
        try:
            data = json.loads(text)
            return cls(
                planned_batch=int(data["planned_batch"]), planned_accumulation=int(data["planned_accumulation"]),
                batch=int(data["batch"]), accumulation=int(data["accumulation"]),
                attempts=[Attempt(**a) for a in data.get("attempts", [])],
                deviations=[Deviation(**d) for d in data.get("deviations", [])],
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"not a recovery record ({exc})") from exc

    @property
    def effective_batch(self) -> int:
        """Batch x gradient accumulation now (equal to the plan's by construction)."""
        return self.batch * self.accumulation


def deviation_text(state: RecoveryState) -> str | None:
    """``batch 8 -> 4 x2 after out-of-memory`` when the job changed the plan's batch."""
    if not state.deviations:
        return None
    before = batch_text(state.planned_batch, state.planned_accumulation)
    after = batch_text(state.batch, state.accumulation)
    times = len(state.deviations)
    return f"batch {before} -> {after} after out-of-memory" + (f" ({times} retries)" if times > 1 else "")


def attempts_text(state: RecoveryState, job_id: str | None) -> str | None:
    """``2 attempts (1: requeued at epoch 1; 2: completed)`` when a job started more than once."""
    attempts = state.attempts_of(job_id) if job_id else state.attempts
    if len(attempts) < 2:
        return None
    parts = [f"{a.number}: {(a.outcome or 'running').lower().replace('_', ' ')}" + (f" ({a.detail})" if a.detail else "")
             for a in attempts]
    return f"{len(attempts)} attempts ({'; '.join(parts)})"


def status_note(state: RecoveryState, job_id: str | None) -> str | None:
    """What the status table says about a run's recovery (None when nothing happened)."""
    parts = [p for p in (deviation_text(state), attempts_text(state, job_id)) if p]
    return "; ".join(parts) or None


def as_dict(state: RecoveryState) -> dict[str, Any]:
    """The state as plain data (for job-state.json and ``status --json``)."""
    return asdict(state)
