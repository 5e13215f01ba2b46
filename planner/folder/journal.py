"""The submission journal (journal.json): every submission of an experiment, append-only.

A *unit* is what a job does: a fine-tune run (its name) or an evaluation (``run/eval``).
The journal maps each unit to the jobs that ran it, newest last, so ``submit`` can be
idempotent and ``status`` knows which job ids to ask about.
"""

from __future__ import annotations

import json
import re
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
    # Written before sbatch with confirmed=False and empty job ids, then confirmed with the
    # ids: a crash (or a full disk) between the two leaves an intent whose jobs the
    # scheduler finds again by their job name, which ends in ``tag``.
    tag: str | None = None
    confirmed: bool = True

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


@dataclass
class Journal:
    """All submissions of one experiment."""

    experiment: str
    submissions: list[Submission] = field(default_factory=list)

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
        return json.dumps({"version": 1, **asdict(self)}, indent=2, ensure_ascii=False) + "\n"

    @classmethod
    def from_json(cls, text: str) -> "Journal":
        """Parse journal.json text, checking its shape (job ids reach sacct and --dependency).

        Raises:
            ValueError: saying what is wrong and where (which submission, which key).
        """
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError(f"expected an object with a 'submissions' list, found {type(data).__name__}")
        raw = data.get("submissions", [])
        if not isinstance(raw, list):
            raise ValueError(f"'submissions' is a {type(raw).__name__}, not a list")
        subs = [_submission(i + 1, s) for i, s in enumerate(raw)]
        return cls(experiment=str(data.get("experiment", "")), submissions=subs)


_JOB_ID = re.compile(r"[A-Za-z0-9_.-]*\Z")


def _job_id(where: str, value: Any) -> str:
    # A number is what a hand edit leaves: the same id, repaired to text.
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str) or not _JOB_ID.match(value):
        raise ValueError(f"{where}: job_id {value!r} is not a job id")
    return value


def _submission(number: int, raw: Any) -> Submission:
    where = f"submission {number}"
    if not isinstance(raw, dict):
        raise ValueError(f"{where} is a {type(raw).__name__}, not an object")
    missing = {"number", "time", "executor", "kind", "job_id", "tasks"} - set(raw)
    if missing:
        raise ValueError(f"{where} lacks {', '.join(sorted(missing))}")
    tasks = raw["tasks"]
    if not isinstance(tasks, list) or not all(isinstance(t, dict) for t in tasks):
        raise ValueError(f"{where}: 'tasks' is not a list of objects")
    entries = []
    for t in tasks:
        if not isinstance(t.get("unit"), str) or not isinstance(t.get("script", ""), str):
            raise ValueError(f"{where}: a task has no unit name")
        index = t.get("index")
        entries.append(TaskEntry(unit=t["unit"], job_id=_job_id(f"{where}, task {t['unit']}", t.get("job_id")),
                                 script=str(t.get("script", "")), index=index if isinstance(index, int) else None))
    params: dict[str, Any] = raw["parameters"] if isinstance(raw.get("parameters"), dict) else {}
    if not isinstance(raw["number"], int) or raw["kind"] not in ("train", "eval") or not isinstance(raw["executor"], str):
        raise ValueError(f"{where}: number, kind (train or eval) or executor has the wrong type")
    extra = {k: raw[k] for k in ("retry", "tag", "confirmed", "dependency") if k in raw}
    return Submission(number=raw["number"], time=str(raw["time"]), executor=raw["executor"], kind=raw["kind"],
                      job_id=_job_id(where, raw["job_id"]), parameters=params, tasks=entries,
                      **{"dependency": None, **extra})
