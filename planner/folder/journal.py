"""The submission journal (journal.json): every submission of an experiment, append-only.

A *unit* is what a job does: a fine-tune run (its name) or an evaluation (``run/eval``).
The journal maps each unit to the jobs that ran it, newest last, so ``submit`` can be
idempotent and ``status`` knows which job ids to ask about.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

UnitKind = Literal["train", "eval"]


@dataclass
class TaskEntry:
    """One unit inside a submission: which job (or array task) runs it."""

    unit: str
    job_id: str
    script: str
    index: int | None = None


@dataclass
class Submission:
    """One sbatch (or local launch): a job or a job array."""

    number: int
    time: str
    executor: str  # slurm | local
    kind: UnitKind
    job_id: str
    dependency: str | None
    parameters: dict[str, Any]
    tasks: list[TaskEntry]
    retry: bool = False


@dataclass
class Journal:
    """All submissions of one experiment."""

    experiment: str
    submissions: list[Submission] = field(default_factory=list)
    # What jobs did on their own (out-of-memory retries, requeues): {time, unit, job_id, kind, text}.
    events: list[dict[str, Any]] = field(default_factory=list)

    def latest(self) -> dict[str, tuple[Submission, TaskEntry]]:
        """The newest submission of each unit."""
        out: dict[str, tuple[Submission, TaskEntry]] = {}
        for sub in self.submissions:
            for task in sub.tasks:
                out[task.unit] = (sub, task)
        return out

    def next_number(self) -> int:
        """Number of the next submission."""
        return max((s.number for s in self.submissions), default=0) + 1

    def job_ids(self) -> list[str]:
        """Every job id of the newest submission of each unit."""
        return sorted({task.job_id for _, task in self.latest().values()})

    def to_json(self) -> str:
        """Serialise (stable key order, one submission per block)."""
        return json.dumps({"version": 1, **asdict(self)}, indent=2, ensure_ascii=False) + "\n"

    @classmethod
    def from_json(cls, text: str) -> "Journal":
        """Parse journal.json text."""
        data = json.loads(text)
        subs = [
            Submission(**{**s, "tasks": [TaskEntry(**t) for t in s["tasks"]]})
            for s in data.get("submissions", [])
        ]
        events = [e for e in data.get("events", []) if isinstance(e, dict)]
        return cls(experiment=data.get("experiment", ""), submissions=subs, events=events)
