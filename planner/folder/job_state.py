"""job-state.json: a job's own record of itself, in its unit's folder.

Written inside the job (``write_state`` in ``templates/job_common.sh.j2``, which prints
exactly these fields) and, when a local evaluation's training never completed, by the
in-job runner through :meth:`JobStateFile.to_json`. Read through :meth:`JobStateFile.from_json`
only: by ``status`` when the scheduler cannot answer, by the local executor instead of
sacct, and by the estimator for wall times. Pure.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from planner.spec.errors import ConfigError
from planner.spec.units import parse_job_time

#: The file's name in a unit's folder.
JOB_STATE = "job-state.json"
#: The format jobs write; files of earlier jobs (no ``version``) are version 1.
JOB_STATE_VERSION = 1


class JobStateFile(BaseModel):
    """The fields of job-state.json; times are UTC with milliseconds (``...Z``)."""

    model_config = ConfigDict(extra="ignore")

    version: int = JOB_STATE_VERSION
    state: str
    job_id: str = ""
    started: str | None = None
    ended: str | None = None
    exit_code: int | None = None
    host: str | None = None
    reason: str | None = None
    # A training run's recovery.json (planner.jobs.recovery): batch changes and attempts.
    recovery: dict[str, Any] | None = None

    @field_validator("job_id", mode="before")
    @classmethod
    def _id_as_text(cls, value: object) -> object:
        return str(value) if isinstance(value, int) else value

    @property
    def started_at(self) -> datetime | None:
        """Start, as naive local time."""
        return parse_job_time(self.started)

    @property
    def ended_at(self) -> datetime | None:
        """End, as naive local time (None while running)."""
        return parse_job_time(self.ended)

    def wall_seconds(self) -> float | None:
        """``ended - started`` in seconds; None before the end or when not positive."""
        start, end = self.started_at, self.ended_at
        if start is None or end is None:
            return None
        seconds = (end - start).total_seconds()
        return seconds if seconds > 0 else None

    def to_json(self) -> str:
        """The file's text."""
        return self.model_dump_json() + "\n"

    @classmethod
    def from_json(cls, text: str | bytes, source: str) -> "JobStateFile":
        """Parse the file's text.

        Raises:
            ConfigError: one line naming ``source``, what is wrong and what to do.
        """
        try:
            return cls.model_validate_json(text)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err.get("loc", ())) or "the file"
            raise ConfigError(
                f"{source}: job state is damaged ({where}: {err['msg']}); the scheduler's answer is used "
                "instead: delete the file once the job has ended"
            ) from None
