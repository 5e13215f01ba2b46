"""Follow an experiment: ask the scheduler once, merge, and refresh the summary's tables.

One ``sacct`` call per refresh covers every unfinished job: array tasks are asked for by
their array's id, and jobs already known to be final are answered from the cache. When
sacct fails, squeue and the jobs' own ``job-state.json`` files stand in, and the report
says it may be stale, with the time of the last good refresh.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from planner.jobs import slurm_query
from planner.jobs.executors import info_from_job_file, local_pid_alive, read_job_file
from planner.folder.experiment import Experiment
from planner.folder.journal import Journal
from planner.folder.markdown import SummaryFormatError
from planner.jobs.sacct import JobRecord
from planner.status.report import FINAL, JobInfo, StatusReport, build_report, table_rows
from planner.status.tables import EVAL_BLOCK, FINETUNE_BLOCK, eval_table, finetune_table
from planner.jobs.recovery import RECOVERY_FILE, RecoveryState


@dataclass
class Collected:
    """What one refresh learned about the jobs."""

    jobs: dict[str, JobInfo]
    scheduler_calls: int = 0
    stale: bool = False
    stale_reason: str | None = None


def _info(rec: JobRecord, source: str) -> JobInfo:
    return JobInfo(state=rec.state, reason=rec.reason, exit_code=rec.exit_code, start=rec.start, end=rec.end,
                   elapsed_s=rec.elapsed_s, source=source, raw_state=rec.raw_state)


def _cached(data: dict) -> JobInfo:
    def dt(v: str | None) -> datetime | None:
        return datetime.fromisoformat(v) if v else None

    return JobInfo(state=data["state"], reason=data.get("reason"), exit_code=data.get("exit_code"),
                   start=dt(data.get("start")), end=dt(data.get("end")), elapsed_s=data.get("elapsed_s"),
                   source=data.get("source", "sacct"), raw_state=data.get("raw_state"))


def collect(exp: Experiment, journal: Journal, cache: dict, timeout_s: float = 30.0) -> Collected:
    """Learn the state of the newest job of every unit."""
    latest = journal.latest()
    final_cache = {k: _cached(v) for k, v in cache.get("final", {}).items()}
    out = Collected(jobs={})
    slurm_ids: dict[str, str] = {}  # job id -> unit (its folder is only needed on the fallback path)
    for unit, (sub, task) in latest.items():
        if task.job_id in final_cache:
            out.jobs[task.job_id] = final_cache[task.job_id]
            continue
        if sub.executor == "local":
            data = read_job_file(exp.unit_dir(unit))
            alive = local_pid_alive(task.job_id)
            if data is not None:
                out.jobs[task.job_id] = info_from_job_file(data, alive)
            elif alive:
                out.jobs[task.job_id] = JobInfo(state="PENDING", reason="waiting for a local slot or its training", source="job file")
            else:
                out.jobs[task.job_id] = JobInfo(state="LOST", reason="process ended without a job-state.json", source="job file")
            continue
        slurm_ids[task.job_id] = unit
    if not slurm_ids:
        return out
    query = sorted({jid.split("_")[0] for jid in slurm_ids})  # an array is asked for by its id
    try:
        out.scheduler_calls += 1
        records = slurm_query.sacct(query, timeout_s)
        for rec in records:
            if rec.job_id in slurm_ids:
                out.jobs[rec.job_id] = _info(rec, "sacct")
        _requeued_by_slurm(out, slurm_ids, timeout_s)
        missing = sorted({jid.split("_")[0] for jid in slurm_ids if jid not in out.jobs})
        if missing:
            # Accounting lags sbatch by a second or more: ask the controller about just those.
            try:
                out.scheduler_calls += 1
                for rec in slurm_query.squeue(missing, timeout_s):
                    if rec.job_id in slurm_ids and rec.job_id not in out.jobs:
                        out.jobs[rec.job_id] = _info(rec, "squeue")
            except slurm_query.SchedulerQueryError:
                pass
        return out
    except slurm_query.SchedulerQueryError as exc:
        out.stale = True
        out.stale_reason = str(exc).splitlines()[0]
    try:
        out.scheduler_calls += 1
        for rec in slurm_query.squeue(query, timeout_s):
            if rec.job_id in slurm_ids:
                out.jobs[rec.job_id] = _info(rec, "squeue")
    except slurm_query.SchedulerQueryError:
        pass
    for job_id, unit in slurm_ids.items():
        if job_id in out.jobs:
            continue
        data = read_job_file(exp.unit_dir(unit))
        if data is not None and str(data.get("job_id")) == job_id:
            out.jobs[job_id] = info_from_job_file(data, None)
    return out


#: Ends after which Slurm may requeue a job (--requeue) under the same id.
_REQUEUE_STATES = frozenset({"NODE_FAIL", "PREEMPTED", "BOOT_FAIL"})


def _requeued_by_slurm(out: Collected, slurm_ids: dict[str, str], timeout_s: float) -> None:
    """Replace a node failure or preemption that Slurm has requeued by the job's new state.

    Accounting reports the attempt that ended until the requeued one starts; the controller
    holds the job again (PENDING), and the run must not be shown, or cached, as ended.
    """
    ended = {jid: info for jid, info in out.jobs.items() if jid in slurm_ids and info.state in _REQUEUE_STATES}
    if not ended:
        return
    try:
        out.scheduler_calls += 1
        records = slurm_query.squeue(sorted({jid.split("_")[0] for jid in ended}), timeout_s)
    except slurm_query.SchedulerQueryError:
        return
    for rec in records:
        if rec.job_id in ended and rec.state not in FINAL:
            info = _info(rec, "squeue")
            info.reason = f"requeued after {ended[rec.job_id].state}" + (f" ({rec.reason})" if rec.reason else "")
            out.jobs[rec.job_id] = info


def _cache_entry(info: JobInfo) -> dict:
    # Built by hand: dataclasses.asdict deep-copies and costs more than the sacct call it caches.
    return {"state": info.state, "reason": info.reason, "exit_code": info.exit_code,
            "start": info.start.isoformat() if info.start else None, "end": info.end.isoformat() if info.end else None,
            "elapsed_s": info.elapsed_s, "source": info.source, "raw_state": info.raw_state}


def result_notes(exp: Experiment) -> dict[str, str]:
    """A short note per evaluation that wrote results.json (exact match and n)."""
    notes: dict[str, str] = {}
    for ev in exp.plan.evaluations:
        path = exp.unit_dir(ev.key) / "results.json"
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        metric = next((k for k in ("exact_match", "accuracy") if isinstance(data.get(k), (int, float))), None)
        if metric:
            notes[ev.key] = f"{metric}={data[metric]:.3f} (n={data.get('n', '?')})"
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


def predicted_seconds(exp: Experiment) -> dict[str, float]:
    """Predicted training seconds per run, from estimates.json."""
    runs = exp.read_estimates().get("runs", {})
    return {k: float(v["train_seconds"]) for k, v in runs.items() if "train_seconds" in v}


def refresh(exp: Experiment, now: datetime, write_summary: bool = True, timeout_s: float = 30.0) -> tuple[StatusReport, int]:
    """One refresh: collect, build the report, rewrite the status blocks, update the cache.

    Returns:
        The report and the number of scheduler calls made.
    """
    with exp.lock():
        journal = exp.read_journal()
        cache = exp.read_cache()
        got = collect(exp, journal, cache, timeout_s)
        report = build_report(exp.plan, journal, got.jobs, now, result_notes(exp), predicted_seconds(exp),
                              recovery_states(exp))
        report.stale, report.stale_reason = got.stale, got.stale_reason
        if not got.stale:
            cache["last_good_refresh"] = now.isoformat(timespec="seconds")
        report.last_good_refresh = cache.get("last_good_refresh")
        cache["final"] = {
            jid: _cache_entry(info) for jid, info in got.jobs.items()
            if info.state in FINAL and info.source in ("sacct", "job file")
        }
        if write_summary:
            ft, ev = table_rows(report, exp.plan)
            try:
                exp.update_summary_blocks({FINETUNE_BLOCK: finetune_table(ft), EVAL_BLOCK: eval_table(ev)})
            except SummaryFormatError as exc:
                report.warnings.append(str(exc))
        exp.write_cache(cache)
    return report, got.scheduler_calls
