"""The submission journal (journal.json): every submission of an experiment, append-only.

A *unit* is what a job does: a fine-tune run (its name) or an evaluation (``run/eval``).
The journal maps each unit to the jobs that ran it, newest last, so ``submit`` can be
idempotent and ``status`` knows which job ids to ask about.

One schema (the models below, versioned), one reader (:meth:`Journal.from_json`, called by
``folder.experiment``) and one writer (:meth:`Journal.to_json`). Pure.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from planner.spec.errors import ConfigError

UnitKind = Literal["train", "eval"]

#: The journal format this version writes; a newer one is refused, not misread.
JOURNAL_VERSION = 1

# Job ids reach sacct's argv and --dependency: digits, array suffixes, local-<pid>, DRYRUN<n>;
# empty while a submission is unconfirmed.
_JOB_ID = re.compile(r"[A-Za-z0-9_.-]*\Z")


def _job_id(value: Any) -> Any:
    # A number is what a hand edit leaves: the same id, repaired to text.
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, str) and not _JOB_ID.match(value):
        raise ValueError(f"{value!r} is not a job id")
    return value


class TaskEntry(BaseModel):
    """One unit inside a submission: which job (or array task) runs it.

    ``predicted`` is the estimate the job was submitted with (``job_seconds``,
    ``train_seconds``, ``slurm_time``, ``confidence``), kept so calibration compares
    what happened with what was predicted then, whatever later re-estimates say.
    """

    model_config = ConfigDict(extra="forbid")

    unit: str
    job_id: str
    script: str
    index: int | None = None
    predicted: dict[str, Any] | None = None

    @field_validator("job_id", mode="before")
    @classmethod
    def _job_id_text(cls, value: Any) -> Any:
        return _job_id(value)


class Submission(BaseModel):
    """One sbatch (or local launch): a job or a job array."""

    model_config = ConfigDict(extra="forbid")

    number: int
    time: str
    executor: str  # slurm | local
    kind: UnitKind
    job_id: str
    dependency: str | None
    parameters: dict[str, Any]
    tasks: list[TaskEntry]
    retry: bool = False
    # Written before sbatch with confirmed=False and empty job ids, then confirmed with the
    # ids: a crash (or a full disk) between the two leaves an intent whose jobs the
    # scheduler finds again by their job name, which ends in ``tag``.
    tag: str | None = None
    confirmed: bool = True

    @field_validator("job_id", mode="before")
    @classmethod
    def _job_id_text(cls, value: Any) -> Any:
        return _job_id(value)

    def confirm(self, job_ids: list[str]) -> None:
        """Record the job ids the scheduler gave (one per task, in order)."""
        self.job_id = job_ids[0].split("_")[0]
        for i, (task, job_id) in enumerate(zip(self.tasks, job_ids)):
            task.job_id = job_id
            task.index = i if len(job_ids) > 1 else None
        self.confirmed = True

    def confirm_array(self, array_id: str) -> None:
        """Confirm from the array id alone (what a scheduler query by name returns)."""
        self.confirm([f"{array_id}_{i}" for i in range(len(self.tasks))])


class JournalEvent(BaseModel):
    """Something a job did on its own (written by the training supervisor inside the job)."""

    model_config = ConfigDict(extra="forbid")

    time: str
    unit: str
    job_id: str
    kind: str  # out-of-memory-retry, out-of-memory, requeued, restarted, gave-up, requeue-failed
    text: str


class Journal(BaseModel):
    """All submissions of one experiment."""

    model_config = ConfigDict(extra="forbid")

    version: int = JOURNAL_VERSION
    experiment: str
    submissions: list[Submission] = []
    # What jobs did on their own (out-of-memory retries, requeues), oldest first.
    events: list[JournalEvent] = []

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

    def recorded_predictions(self) -> dict[str, float]:
        """The job wall time each unit's newest submission was predicted to take, in seconds.

        Recorded at submit time and never rewritten, so calibration compares with what
        was predicted then. Units submitted without a prediction are absent.
        """
        out: dict[str, float] = {}
        for unit, (_, task) in self.latest().items():
            recorded = task.predicted or {}
            figure = recorded.get("job_seconds") or recorded.get("train_seconds")
            if figure:
                out[unit] = float(figure)
        return out

    def job_ids(self) -> list[str]:
        """Every job id of the newest submission of each unit (unconfirmed intents have none yet)."""
        return sorted({task.job_id for _, task in self.latest().values() if task.job_id})

    def intents(self) -> list[Submission]:
        """Submissions written before sbatch whose job ids were never recorded."""
        return [s for s in self.submissions if not s.confirmed]

    def drop(self, sub: Submission) -> None:
        """Forget an intent whose jobs the scheduler never got."""
        self.submissions = [s for s in self.submissions if s is not sub]

    def to_json(self) -> str:
        """Serialise (stable key order, one submission per block)."""
        return self.model_dump_json(indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str, source: str) -> "Journal":
        """Parse journal.json text.

        Raises:
            ConfigError: one line naming ``source``, what is wrong and what to do.
        """
        try:
            journal = cls.model_validate_json(text)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err.get("loc", ())) or "the file"
            raise ConfigError(
                f"{source}: journal is damaged ({where}: {err['msg']}); restore it from a backup, "
                "or move it away to start over (the jobs it lists keep running but are no longer followed)"
            ) from None
        if journal.version > JOURNAL_VERSION:
            raise ConfigError(
                f"{source}: journal version {journal.version} was written by a newer plan-experiment; "
                f"this one reads version {JOURNAL_VERSION}: upgrade plan-experiment"
            )
        return journal
