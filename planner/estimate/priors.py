"""The prior-run index: logs found under the search folders, as PriorRuns for the estimator.

Parsed logs are cached by (path, size, mtime) so a rescan reads only what changed; runs
planned by this tool carry what the files around their log say (model size from
finetune.yaml's checkpoint, wall time and evaluation times from job-state.json,
checkpoint size from epoch_0/), read once and cached with the log
(:mod:`planner.estimate.run_folder`).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path

from planner.jobs import slurm_query
from planner.spec.device_choice import DeviceChoice
from planner.estimate.prior_scan import ScanResult, scan
from planner.jobs.sacct import JobRecord, sacct_argv
from planner.spec.states import FINAL_STATES
from planner.folder.compute import ComputeEstimates
from planner.folder.designlog import DesignLog
from planner.estimate.estimators import PriorRun
from planner.estimate.plan_estimate import chosen_priors, estimate_plan
from planner.spec.resources import Resources
from planner.spec.runs import Plan


def cache_path() -> Path:
    """Where parsed logs are cached between scans (shared by all experiments of a user)."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "plan-experiment" / "prior-runs.pickle"


def estimate_from_prior_runs(
    plan: Plan,
    resources: Resources,
    dirs: list[Path],
    log: DesignLog,
    now: Callable[[], datetime],
    device: DeviceChoice,
    use_cache: bool = True,
    gone: Sequence[tuple[Path, str]] = (),
    cores: int = 1,
) -> tuple[ScanResult, list[PriorRun], ComputeEstimates]:
    """The estimation ``new`` and ``estimate`` share: scan ``dirs`` for prior runs, ask
    Slurm the wall time of those the estimates rest on, estimate the plan.

    Args:
        device: the device the plan's jobs will run on (and the memory to size against).
        gone: search folders already known to be gone, and why (see :func:`gather_priors`).
        cores: CPU cores per process of a CPU job.

    Returns:
        The scan, the usable prior runs and the plan's estimates.
    """
    result, priors = gather_priors(dirs, log, now, use_cache, gone)
    scheduler_wall_times(chosen_priors(plan, resources, priors, device), log, now)
    return result, priors, estimate_plan(plan, resources, log, now, device, priors, cores=cores)


def gather_priors(dirs: list[Path], log: DesignLog, now: Callable[[], datetime], use_cache: bool = True,
                  gone: Sequence[tuple[Path, str]] = ()) -> tuple[ScanResult, list[PriorRun]]:
    """Scan ``dirs`` for slurm-*.out, log the search, return the usable prior runs.

    Args:
        dirs: folders to search; missing ones are skipped.
        log: the design log (SEARCH_PRIOR_RUNS, then SKIP_LOG and SKIP_FOLDER entries).
        now: clock for log entries.
        use_cache: use the user's scan cache.
        gone: folders the caller could not search, and why (planned experiments deleted
            since they were registered, a ``--logs`` folder that does not exist): logged
            and returned as ``skipped_folders``.

    Returns:
        The scan (``folders`` walked, ``skipped_folders`` with reasons) and the usable priors.
    """
    skipped = list(dict.fromkeys((str(d), why) for d, why in gone))
    # Other missing folders pass silently: experiments_dir before the first plan, a
    # scratch_dir not made yet are no news.
    dirs = [d for d in dict.fromkeys(dirs) if d.exists()]
    result = scan(dirs, cache_path() if use_cache else None)
    result.folders = [str(d) for d in dirs]
    result.skipped_folders = skipped
    usable = result.priors()
    names = ", ".join(Path(p.name).parent.name for p in usable[:5]) + (" ..." if len(usable) > 5 else "")
    log.add(now(), "SEARCH_PRIOR_RUNS", "Looking for prior runs with training logs",
            command="find " + (" ".join(shlex.quote(str(d)) for d in dirs[:6]) or "(no folder exists)")
                    + (f" ... ({len(dirs) - 6} more planned experiments)" if len(dirs) > 6 else "") + " -name 'slurm-*.out'",
            result=f"Found {len(result.records) + len(result.skipped)} logs: {len(usable)} usable ({names or 'none'}), "
                   f"{len(result.skipped)} skipped; {result.parsed} parsed, {result.cached} from cache in {result.seconds:.2f}s",
            explanation="Prior SLURM logs give measured speed, memory and checkpoint sizes for the estimates")
    for path, reason in result.skipped[:20]:
        log.add(now(), "SKIP_LOG", f"Not used: {path}", result=reason, explanation="Unreadable, empty, garbage or not a training log")
    for folder, reason in skipped[:20]:
        log.add(now(), "SKIP_FOLDER", f"Not searched: {folder}", result=reason,
                explanation="Searched for prior runs but gone: no estimate rests on it")
    return result, usable


#: A log named as sbatch names it by default (and as our jobs do): its job id.
_JOB_LOG_RE = re.compile(r"slurm-(\d+(?:_\d+)?)\.out")

#: How far a job's end may lie from its log's last write for the job to be that log's.
#: Job ids recur (other clusters, a reset controller), so an answer is checked.
END_SLACK_S = 15 * 60

#: Slurm's final states in the words of a log's state.
_LOG_STATES = {"COMPLETED": "completed", "OUT_OF_MEMORY": "oom"}


def scheduler_wall_times(
    priors: Sequence[PriorRun],
    log: DesignLog,
    now: Callable[[], datetime],
    query: Callable[[list[str], float], list[JobRecord]] = slurm_query.sacct,
    timeout_s: float = 10.0,
) -> int:
    """Wall time (and, for cut logs, how the job ended) of prior runs, from one sacct call.

    Asks only about priors with no wall time yet (no ``job-state.json`` beside them)
    whose log is named ``slurm-<jobid>.out``. An answer counts only if it is that log's
    job: it ended within :data:`END_SLACK_S` of the log's last write and ran at least as
    long as the log's epochs. Without sacct nothing is asked; a failing sacct is noted
    in the design log and the estimates go on without these wall times.

    Args:
        priors: the priors the estimates rest on (see ``estimating.chosen_priors``).
        log: the design log.
        now: clock for log entries.
        query: ``slurm_query.sacct`` or a stand-in with its signature.
        timeout_s: longest wait for sacct.

    Returns:
        How many priors got a wall time.
    """
    wanted: dict[str, list[tuple[PriorRun, float]]] = {}
    for prior in priors:
        m = _JOB_LOG_RE.fullmatch(os.path.basename(prior.name)) if prior.wall_seconds is None else None
        if m is None:
            continue
        try:
            written = os.stat(prior.name).st_mtime
        except OSError:
            continue
        wanted.setdefault(m.group(1), []).append((prior, written))
    if not wanted or (query is slurm_query.sacct and shutil.which("sacct") is None):
        return 0
    ids = sorted(wanted)
    argv = sacct_argv(ids)
    argv[1] = "--jobs=" + ",".join(ids[:3]) + (",..." if len(ids) > 3 else "")  # the log shows a few
    shown = shlex.join(argv)
    try:
        records = query(ids, timeout_s)
    except slurm_query.SchedulerQueryError as exc:
        log.add(now(), "QUERY_SACCT", "Wall time of prior runs from Slurm accounting", command=shown,
                result=f"not available: {str(exc).splitlines()[0][:200]}",
                explanation="The estimates go on without the start-up overhead of these runs")
        return 0
    filled = 0
    for rec in records:
        for prior, written in wanted.get(rec.job_id, ()):
            if rec.state not in FINAL_STATES or rec.end is None or not rec.elapsed_s:
                continue
            if abs((rec.end - datetime.fromtimestamp(written)).total_seconds()) > END_SLACK_S:
                continue  # another job that had the same id
            if rec.elapsed_s < sum(prior.epoch_seconds):
                continue
            prior.wall_seconds = float(rec.elapsed_s)
            if prior.state in ("unknown", "truncated"):
                prior.state = _LOG_STATES.get(rec.state, "failed")
            filled += 1
    log.add(now(), "QUERY_SACCT", "Wall time of prior runs from Slurm accounting", command=shown,
            result=f"{filled} of {sum(len(v) for v in wanted.values())} prior run(s) the estimates use got their wall time",
            explanation="Wall time minus the epochs' time is the start-up and save overhead a new run will have too")
    return filled
