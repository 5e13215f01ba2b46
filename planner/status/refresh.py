"""Follow an experiment: ask the scheduler once, merge, and refresh the summary's tables.

Each job's own scheduler (:class:`~planner.jobs.scheduler.Scheduler`, by the kind the
journal recorded) is asked once per refresh about every unfinished job; jobs already known
to be final are answered from the cache. When a scheduler's answer may be stale (Slurm's
accounting is down), the report says so, with the time of the last good refresh, and
only final states from accounting or the jobs' own files are cached. Rows no source
answered then keep the state the last refresh saw.

Jobs refresh the tables themselves as they end (:mod:`planner.status.job_refresh`), and
accounting lags behind a job that has not exited yet: the Slurm scheduler answers such a
job from its own final ``job-state.json``. Those answers are *provisional* and not
cached: the scheduler's final word (TIMEOUT, CANCELLED) replaces them later.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
from pathlib import Path

from planner.jobs import kinds, slurm_query
from planner.jobs.executors import read_job_state
from planner.jobs.reconcile import reconcile
from planner.folder.experiment import Experiment
from planner.folder.journal import Journal
from planner.folder.markdown import SummaryFormatError
from planner.spec.errors import ConfigError
from planner.jobs.scheduler import JobInfo, QueryResult, Scheduler
from planner.spec.states import FINAL_STATES
from planner.status.report import StatusReport, build_report, table_rows
from planner.status.tables import EVAL_BLOCK, FINETUNE_BLOCK, REFRESH_BLOCK, eval_table, finetune_table, refresh_line

#: What the summary names as the refresher when a user runs ``status``.
STATUS_COMMAND = "`plan-experiment status`"
from planner.jobs.recovery import RECOVERY_FILE, RecoveryState


def _cached(data: dict) -> JobInfo:
    def dt(v: str | None) -> datetime | None:
        return datetime.fromisoformat(v) if v else None

    return JobInfo(state=data["state"], reason=data.get("reason"), exit_code=data.get("exit_code"),
                   start=dt(data.get("start")), end=dt(data.get("end")), elapsed_s=data.get("elapsed_s"),
                   source=data.get("source", "sacct"), raw_state=data.get("raw_state"))


def collect(exp: Experiment, journal: Journal, cache: dict, timeout_s: float = 30.0,
            schedulers: Mapping[str, Scheduler] | None = None) -> QueryResult:
    """Learn the state of the newest job of every unit, asking each job's own scheduler once.

    A final state already known is taken from the cache, but only for the submission it
    was learnt for: a scheduler that reuses a job id for a new submission (ids recycle
    when a cluster's job counter restarts) is asked again.
    """
    schedulers = schedulers if schedulers is not None else kinds.schedulers(exp.internal / "submitit")
    final_cache = cache.get("final", {})
    out = QueryResult()
    asks: dict[str, dict[str, Path]] = {}  # scheduler kind -> job id -> the unit's folder
    for unit, (sub, task) in journal.latest().items():
        if not task.job_id:  # an unconfirmed submission Slurm could not be asked about yet
            continue
        known = final_cache.get(task.job_id)
        # Entries cached before submissions were recorded with them are trusted as before.
        if known is not None and known.get("submission", sub.number) == sub.number:
            out.jobs[task.job_id] = _cached(known)
        else:
            asks.setdefault(sub.executor, {})[task.job_id] = exp.unit_dir(unit)
    for kind, jobs in sorted(asks.items()):
        scheduler = schedulers.get(kind)
        if scheduler is None:
            out.warnings.append(f"journal names scheduler {kind!r}, which this plan-experiment does not know; "
                                f"its {len(jobs)} job(s) are shown as submitted")
            continue
        got = scheduler.query(jobs, timeout_s)
        out.jobs.update(got.jobs)
        out.provisional |= got.provisional
        out.calls += got.calls
        out.warnings += got.warnings
        if got.stale:
            out.stale, out.stale_reason = True, got.stale_reason
            last = cache.get("last", {})
            for job_id in jobs:
                if job_id not in out.jobs and job_id in last:
                    # Nobody could answer: keep the row as the last refresh saw it, saying so.
                    out.jobs[job_id] = replace(_cached(last[job_id]), source="last refresh")
    return out


def _cache_entry(info: JobInfo, submission: int) -> dict:
    # Built by hand: dataclasses.asdict deep-copies and costs more than the sacct call it caches.
    return {"submission": submission, "state": info.state, "reason": info.reason, "exit_code": info.exit_code,
            "start": info.start.isoformat() if info.start else None, "end": info.end.isoformat() if info.end else None,
            "elapsed_s": info.elapsed_s, "source": info.source, "raw_state": info.raw_state}


def result_metrics(exp: Experiment) -> dict[str, dict[str, float]]:
    """The numbers of each evaluation's results.json (exact_match, n, ...), by evaluation key."""
    out: dict[str, dict[str, float]] = {}
    for ev in exp.plan.evaluations:
        path = exp.unit_dir(ev.key) / "results.json"
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(data, dict):
            numbers = {k: v for k, v in data.items()
                       if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}
            if numbers:
                out[ev.key] = numbers
    return out


def result_notes(exp: Experiment, metrics: dict[str, dict[str, float]] | None = None) -> dict[str, str]:
    """A short note per evaluation that wrote results.json (exact match and n)."""
    notes: dict[str, str] = {}
    for key, data in (result_metrics(exp) if metrics is None else metrics).items():
        metric = next((k for k in ("exact_match", "accuracy") if k in data), None)
        if metric:
            n = data.get("n")
            notes[key] = f"{metric}={data[metric]:.3f} (n={'?' if n is None else f'{n:g}'})"
    return notes


def recovery_states(exp: Experiment) -> dict[str, RecoveryState]:
    """Each fine-tune run's recovery.json (written by its jobs), where one exists and parses."""
    out: dict[str, RecoveryState] = {}
    for run in exp.plan.finetune_runs:
        try:
            out[run.name] = RecoveryState.from_json((exp.run_dir(run.name) / RECOVERY_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
    return out


def predicted_seconds(exp: Experiment, journal: Journal | None = None) -> dict[str, float]:
    """Predicted job wall time per run, as recorded when it was submitted.

    The journal keeps the estimate each job was submitted with; re-estimating later
    rewrites estimates.json but never these. Runs not yet submitted, or submitted
    before predictions were journalled, take estimates.json's figure (its job wall
    time, else its training time).
    """
    estimates = exp.read_estimates()
    out = {k: v.job_seconds or v.train_seconds for k, v in estimates.runs.items()} if estimates else {}
    out.update((journal if journal is not None else exp.read_journal()).recorded_predictions())
    return out


def explain_failures(exp: Experiment, report: StatusReport) -> None:
    """For each failed job: the script's own exit code, and the file that holds its error.

    The scheduler sees the exit code of the process that ran the script (1 whenever the
    script failed); the script records its own code in job-state.json. A job that died
    before its script started its log (a failing environment line, say) has no
    slurm-<id>.out: its error is in the scheduler's output file under .plan-experiment/.
    """
    for u in report.units:
        if not u.failed or not u.job_id:
            continue
        folder = exp.unit_dir(u.unit)
        try:
            state = read_job_state(folder)
        except ConfigError:
            state = None  # already a warning of the query
        if state is not None and state.job_id == u.job_id and state.exit_code not in (None, 0):
            u.exit_code = state.exit_code
        u.log = _error_log(exp, folder, u.job_id)


def _error_log(exp: Experiment, folder: Path, job_id: str) -> str | None:
    own = folder / f"slurm-{job_id}.out"
    if own.is_file() and own.stat().st_size > 0:
        return str(own)
    # submitit names its files <array>_<task>_<rank>_log.out (arrays) or <job>_<rank>_log.out.
    candidates = sorted((exp.internal / "submitit").glob(f"*/{job_id}_*log.out"))
    candidates += sorted((exp.internal / "local").glob(f"*/{job_id.removeprefix('local-')}_*log.*"))
    found = [c for c in candidates if c.is_file() and c.stat().st_size > 0]
    return str(found[0]) if found else None


def refresh(exp: Experiment, now: datetime, write_summary: bool = True, timeout_s: float = 30.0,
            schedulers: Mapping[str, Scheduler] | None = None, by: str = STATUS_COMMAND) -> tuple[StatusReport, int]:
    """One refresh under the experiment's lock (none with ``write_summary=False``); see :func:`refresh_locked`."""
    with exp.lock(write=write_summary):
        return refresh_locked(exp, now, write_summary, timeout_s, schedulers, by)


def refresh_locked(exp: Experiment, now: datetime, write_summary: bool = True, timeout_s: float = 30.0,
                   schedulers: Mapping[str, Scheduler] | None = None,
                   by: str = STATUS_COMMAND) -> tuple[StatusReport, int]:
    """One refresh: collect, build the report, rewrite the status blocks, update the cache.

    The caller holds the experiment's lock when it writes: everything is read after it was
    taken, so a refresh never writes a state older than what the one before it wrote.
    ``write_summary=False`` (``status --no-write``) writes nothing at all (not the summary,
    the cache or the journal) and needs no lock.

    Args:
        exp: The experiment.
        now: Time of the refresh (local, naive, as the tables print it).
        write_summary: Rewrite the status blocks of experiment_summary.md, the cache and the journal.
        timeout_s: Longest wait for each scheduler command.
        schedulers: Scheduler by kind (the real ones by default).
        by: What refreshes, for the summary's refresh line: a command or ``job <id>``.

    Returns:
        The report and the number of scheduler calls made.

    Raises:
        OSError: the summary or the cache could not be written (a read-only folder).
    """
    journal = exp.read_journal()
    changed, notes = reconcile(journal, lambda name: slurm_query.job_ids_by_name(name))
    if changed and write_summary:
        exp.write_journal(journal)
    cache = exp.read_cache()
    got = collect(exp, journal, cache, timeout_s, schedulers)
    metrics = result_metrics(exp)
    report = build_report(exp.plan, journal, got.jobs, now, result_notes(exp, metrics), predicted_seconds(exp, journal),
                          recovery_states(exp))
    report.experiment, report.path = exp.spec.name, str(exp.path)
    for u in report.units:
        u.metrics = metrics.get(u.unit)
    explain_failures(exp, report)
    report.warnings.extend(notes)
    report.stale, report.stale_reason = got.stale, got.stale_reason
    report.warnings += got.warnings
    report.refreshed_by = by
    report.previous_refresh = cache.get("last_refresh")
    if not got.stale:
        cache["last_good_refresh"] = now.isoformat(timespec="seconds")
    report.last_good_refresh = cache.get("last_good_refresh")
    numbers = {task.job_id: sub.number for sub, task in journal.latest().values()}
    cache["final"] = {
        jid: _cache_entry(info, numbers[jid]) for jid, info in got.jobs.items()
        if info.state in FINAL_STATES and info.source in ("sacct", "job file") and jid in numbers
        and jid not in got.provisional
    }
    cache["last"] = {jid: _cache_entry(info, numbers[jid]) for jid, info in got.jobs.items()
                     if info.state not in FINAL_STATES and jid in numbers}
    if not write_summary:
        return report, got.calls
    # Before any submit the tables are the plan's own: nothing to refresh, nothing rewritten.
    if report.submitted:
        cache["last_refresh"] = {"at": now.isoformat(" ", "seconds"), "by": by}
        ft, ev = table_rows(report, exp.plan)
        line = refresh_line(now.isoformat(" ", "seconds"), by, got.stale_reason if got.stale else None)
        try:
            exp.update_summary_blocks({REFRESH_BLOCK: line, FINETUNE_BLOCK: finetune_table(ft), EVAL_BLOCK: eval_table(ev)},
                                      optional=frozenset({REFRESH_BLOCK}))
        except SummaryFormatError as exc:
            report.warnings.append(str(exc))
    exp.write_cache(cache)
    return report, got.calls
