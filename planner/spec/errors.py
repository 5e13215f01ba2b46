"""Domain errors. The CLI maps each class to an exit code in one place (planner/cli/main.py).

Every message is meant to be printed as is: it names the problem, the offending value
and the fix, on one line. Errors that gather several problems keep them in ``problems``
so the user sees all of them at once instead of fixing one per run.
"""

from __future__ import annotations


class PlannerError(Exception):
    """Base class of every error the user can cause or fix."""

    exit_code = 1

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems: list[str] = list(problems or [])

    def lines(self) -> list[str]:
        """Return the message followed by each collected problem."""
        return [str(self)] + [f"  - {p}" for p in self.problems]


class ConfigError(PlannerError):
    """Bad local settings (claude.local.md) or a bad experiment spec."""

    exit_code = 2


class VerificationError(PlannerError):
    """A resource the plan needs (model, dataset) is missing or unusable."""

    exit_code = 3


class OutputError(PlannerError):
    """The experiment folder cannot be written (full disk, unwritable folder); nothing is left."""

    exit_code = 3


class ExperimentExistsError(PlannerError):
    """The experiment folder exists and ``--force`` was not given."""

    exit_code = 4


class SchedulerError(PlannerError):
    """The scheduler refused a submission or could not be queried."""

    exit_code = 5


class JobsFailedError(PlannerError):
    """At least one job ended in a failed state (used by ``status`` for its exit code)."""

    exit_code = 6
