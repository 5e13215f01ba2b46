"""Status of an experiment: journal + scheduler records + job files -> table rows.

Pure. The adapters ask sacct (one call), or squeue and the jobs' own ``job-state.json``
files when sacct fails, and hand the answers in here.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from planner.folder.journal import Journal
from planner.spec.runs import Plan
from planner.spec.states import FINAL_STATES, RETRYABLE_STATES
from planner.spec.units import clock, prediction_error_pct
from planner.status.tables import EvalRow, FinetuneRow
from planner.jobs.scheduler import JobInfo
from planner.jobs.recovery import RecoveryState, status_note


@dataclass
class UnitStatus:
    """The status of one unit (a fine-tune run or an evaluation)."""

    unit: str
    kind: str  # train | eval
    run: str
    task: str | None
    epoch: int | None
    state: str  # NOT_SUBMITTED, SUBMITTED, PENDING, RUNNING, COMPLETED, FAILED, ...
    job_id: str | None = None
    reason: str | None = None
    exit_code: int | None = None
    start: datetime | None = None
    end: datetime | None = None
    elapsed_s: int | None = None
    source: str | None = None
    raw_state: str | None = None
    note: str | None = None
    predicted_s: float | None = None
    log: str | None = None  # the file that holds a failed job's error (its slurm-*.out, else the scheduler's log)
    metrics: dict[str, float] | None = None  # numbers of an evaluation's results.json
    attempts: int | None = None  # starts of this job (a requeued job starts again under its id)
    recovery: str | None = None  # what the job changed on its own, and its attempts

    @property
    def final(self) -> bool:
        """True when the job ended (or nothing was submitted, which will not change by waiting)."""
        return self.state in FINAL_STATES

    @property
    def failed(self) -> bool:
        """True when the job ended in a failed state."""
        return self.state in RETRYABLE_STATES


@dataclass
class StatusReport:
    """The state of a whole experiment at one refresh."""

    units: list[UnitStatus]
    refreshed: datetime
    stale: bool = False
    stale_reason: str | None = None
    last_good_refresh: str | None = None
    warnings: list[str] = field(default_factory=list)
    experiment: str = ""  # the experiment's name
    path: str = ""  # its folder
    refreshed_by: str = "`plan-experiment status`"  # a command, or "job <id>" when a job refreshed as it ended
    previous_refresh: dict[str, str] | None = None  # {"at": ..., "by": ...} of the refresh before this one

    @property
    def submitted(self) -> list[UnitStatus]:
        """Units that have a job."""
        return [u for u in self.units if u.state != "NOT_SUBMITTED"]

    @property
    def all_final(self) -> bool:
        """True when every submitted job has ended and something was submitted."""
        return bool(self.submitted) and all(u.final for u in self.submitted)

    @property
    def any_failed(self) -> bool:
        """True when any job ended failed."""
        return any(u.failed for u in self.units)

    def counts(self) -> dict[str, int]:
        """Units per state."""
        out: dict[str, int] = {}
        for u in self.units:
            out[u.state] = out.get(u.state, 0) + 1
        return out

    def to_json(self) -> str:
        """Machine-readable report for ``status --json``."""
        def conv(value: Any) -> Any:
            return value.isoformat(timespec="seconds") if isinstance(value, datetime) else value

        units = [{k: conv(v) for k, v in asdict(u).items()} for u in self.units]
        return json.dumps(
            {
                "experiment": self.experiment,
                "path": self.path,
                "refreshed": conv(self.refreshed),
                "refreshed_by": self.refreshed_by,
                "previous_refresh": self.previous_refresh,
                "stale": self.stale,
                "stale_reason": self.stale_reason,
                "last_good_refresh": self.last_good_refresh,
                "all_final": self.all_final,
                "any_failed": self.any_failed,
                "counts": self.counts(),
                "warnings": self.warnings,
                "units": units,
            },
            indent=2,
            ensure_ascii=False,
        )


def build_report(
    plan: Plan,
    journal: Journal,
    jobs: dict[str, JobInfo],
    refreshed: datetime,
    results: dict[str, str] | None = None,
    predicted: dict[str, float] | None = None,
    recovery: dict[str, RecoveryState] | None = None,
) -> StatusReport:
    """Merge the journal with what the scheduler and job files said.

    Args:
        plan: Runs and evaluations.
        journal: Submissions.
        jobs: job id -> what is known of it.
        refreshed: When this refresh happened.
        results: evaluation key -> a short result note (e.g. accuracy) when results.json exists.
        predicted: run name -> predicted job wall time in seconds, as recorded at submit (for calibration notes).
        recovery: run name -> its recovery.json (out-of-memory retries, attempts).
    """
    latest = journal.latest()
    results = results or {}
    predicted = predicted or {}
    recovery = recovery or {}
    units: list[UnitStatus] = []
    for run in plan.finetune_runs:
        unit = _unit(run.name, "train", run.name, None, None, latest, jobs)
        unit.predicted_s = predicted.get(run.name)
        if run.name in recovery and unit.job_id:
            state = recovery[run.name]
            unit.attempts = len(state.attempts_of(unit.job_id)) or None
            unit.recovery = status_note(state, unit.job_id)
        units.append(unit)
    for ev in plan.evaluations:
        u = _unit(ev.key, "eval", ev.run, ev.task, ev.epoch, latest, jobs)
        if ev.key in results:
            u.note = results[ev.key]
        units.append(u)
    trained = {u.run: u for u in units if u.kind == "train"}
    for u in units:
        if u.state in ("COMPLETED", "RUNNING"):
            u.reason = None  # a pending reason (Dependency, Priority) says nothing once the job ran
        train = trained.get(u.run)
        if u.kind == "eval" and u.state == "CANCELLED" and train is not None and train.failed:
            u.reason = TRAINING_FAILED  # cancelled by Slurm because its afterok can never be met
    return StatusReport(units=units, refreshed=refreshed)


def _unit(unit: str, kind: str, run: str, task: str | None, epoch: int | None,
          latest: dict[str, Any], jobs: dict[str, JobInfo]) -> UnitStatus:
    status = UnitStatus(unit=unit, kind=kind, run=run, task=task, epoch=epoch, state="NOT_SUBMITTED")
    if unit not in latest:
        return status
    _, entry = latest[unit]
    status.job_id = entry.job_id
    info = jobs.get(entry.job_id)
    if info is None:
        # Submitted, but no source knows it yet (accounting lags a moment behind sbatch).
        status.state, status.source = "SUBMITTED", "journal"
        return status
    status.state = info.state
    status.reason = info.reason
    status.exit_code = info.exit_code
    status.start, status.end, status.elapsed_s = info.start, info.end, info.elapsed_s
    status.source = info.source
    status.raw_state = info.raw_state
    return status


TRAINING_FAILED = "training failed"


def dependency_failed(u: UnitStatus) -> bool:
    """True when the scheduler (not a user) cancelled a job because its dependency failed.

    Slurm's kill_invalid_depend writes a plain CANCELLED with reason Dependency; a user's
    scancel writes "CANCELLED by <uid>". The local executor writes DependencyNeverSatisfied.
    """
    if u.reason in ("DependencyNeverSatisfied", TRAINING_FAILED):
        return True
    return u.reason == "Dependency" and (u.raw_state or "CANCELLED").strip() == "CANCELLED"


def _when(value: datetime | None) -> str | None:
    return value.isoformat(" ", "seconds") if value else None


def _notes(u: UnitStatus, base: bool) -> str | None:
    parts: list[str] = []
    if base:
        parts.append("Base model")
    if u.state == "PENDING" and u.reason and u.reason not in ("None", "(null)"):
        parts.append(f"waiting: {u.reason}")
    if u.failed and u.exit_code not in (None, 0):
        parts.append(f"exit code {u.exit_code}")
    if u.state == "OUT_OF_MEMORY":
        # Slurm's OUT_OF_MEMORY is the host's memory limit (CUDA out-of-memory is retried
        # inside the job with a smaller batch): the same request runs out again.
        parts.append("host memory ran out: raise resources.mem (or slurm.mem in claude.local.md), then --retry-failed")
    if u.state == "TIMEOUT":
        parts.append("raise the time request (resources.time) or run `plan-experiment estimate`, then --retry-failed")
    if u.state == "CANCELLED" and u.kind == "eval":
        parts.append(TRAINING_FAILED if dependency_failed(u) else "cancelled")
    if u.kind == "eval" and u.start and u.final:
        # The evaluation table has no Started column (seed 002's layout): say it here.
        parts.append(f"started {_when(u.start)}")
    if u.elapsed_s and u.final:
        parts.append(f"elapsed {clock(u.elapsed_s)}")
        if u.predicted_s:
            err = prediction_error_pct(u.predicted_s, u.elapsed_s)
            parts.append(f"predicted {clock(u.predicted_s)} ({err:+.0f}%)")
    if u.note:
        parts.append(u.note)
    if u.recovery:
        parts.append(u.recovery)
    if u.source in ("squeue", "last refresh"):
        parts.append(f"from {u.source}")
    return "; ".join(parts) or None


def table_rows(report: StatusReport, plan: Plan) -> tuple[list[FinetuneRow], list[EvalRow]]:
    """Rows of the two status tables of experiment_summary.md."""
    base = {r.name for r in plan.base_runs}
    ft: list[FinetuneRow] = []
    ev: list[EvalRow] = []
    for u in report.units:
        status = "pending" if u.state == "NOT_SUBMITTED" else u.state.lower()
        if u.kind == "train":
            ft.append(FinetuneRow(u.run, status, u.job_id, _when(u.start), _when(u.end) if u.final else None, _notes(u, False)))
        else:
            ev.append(EvalRow(u.run, u.task or "", u.epoch, status, u.job_id, _when(u.end) if u.final else None,
                              _notes(u, u.run in base)))
    return ft, ev
