"""``submit``: decide (planner.jobs.submission), submit through an executor, journal it.

``--dry-run`` runs this same function with a DryRun executor: the decisions, the arrays
and the sbatch text are those of a real submit; nothing is sent and nothing is written.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from planner.status import refresh as tracking
from planner.jobs import kinds
from planner.jobs.executors import DryRun
from planner.jobs.scheduler import JobRequest, QueryResult, Scheduler
from planner.folder.experiment import Experiment
from planner.plan.pipeline import effective_slurm
from planner.spec.runs import Evaluation, Run
from planner.jobs.submission import array_chunks, select
from planner.jobs.scheduler import job_name
from planner.jobs import slurm_query
from planner.jobs.reconcile import reconcile
from planner.spec.errors import PlannerError, SchedulerError, StateWriteError
from planner.folder.journal import Journal, Submission, TaskEntry
from planner.jobs.time_request import EVAL_SIGNAL_SECONDS, TimeRequest, is_explicit, signal_offset, train_time_request


@dataclass
class SubmitResult:
    """What a submit did (or, dry, would do)."""

    submissions: list[Submission] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    previews: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # unconfirmed submissions found again, or still unresolved


def slurm_request_base(exp: Experiment) -> dict[str, Any]:
    """The Slurm request recorded with the plan: local settings then the spec's resources."""
    return effective_slurm(exp.spec, exp.recorded_slurm(), None)


def run_time_requests(exp: Experiment, runs: list[Run], executor: Scheduler, partition: str | None) -> dict[str, TimeRequest]:
    """Each run's ``--time``: the rule of ``new`` (spec, claude.local.md, auto capped by MaxTime)."""
    estimates = exp.read_estimates()
    auto = {k: v.slurm_time for k, v in estimates.runs.items()} if estimates else {}
    spec_time, local_time = exp.spec.resources.time, exp.recorded_slurm().time
    max_time_s = None if is_explicit(spec_time, local_time) else executor.max_time_seconds(partition)
    stop = exp.spec.resources.stop_before_limit
    return {r.name: train_time_request(spec_time, local_time, auto.get(r.name), max_time_s, stop) for r in runs}


#: What the journal keeps of a run's estimate at submit time.
_PREDICTED_KEYS = ("job_seconds", "train_seconds", "slurm_time", "confidence")


def _predictions(exp: Experiment) -> dict[str, dict[str, Any]]:
    """Each run's estimate as it stands now, to be recorded with its submission."""
    estimates = exp.read_estimates()
    if estimates is None:
        return {}
    return {k: {key: getattr(v, key) for key in _PREDICTED_KEYS if getattr(v, key) is not None}
            for k, v in estimates.runs.items()}


def job_resources(base: dict[str, Any], kind: str) -> tuple[int, int, int | None]:
    """GPUs per node (GRES), nodes and CPUs per task of a training or evaluation job.

    A spec's ``gpus`` is the number of training processes per node. On GPU nodes each
    takes a GPU (``--gpus-per-node``); with ``slurm.cpu_only`` the nodes have none, so the
    job asks for no GRES and ``cpus_per_task`` CPUs per process instead (one task per
    node: torchrun starts the processes). Evaluations run one process on one node.
    """
    gpus, nodes, cpus = int(base["gpus"]), int(base["nodes"]), base.get("cpus_per_task")
    if kind == "eval":
        return (0 if base.get("cpu_only") or not gpus else 1), 1, cpus
    if base.get("cpu_only"):
        return 0, nodes, (int(cpus) * max(gpus, 1) if cpus else None)
    return gpus, (nodes if gpus else 1), cpus


def _request(exp: Experiment, base: dict[str, Any], name: str, time: str, dependency: str | None, kind: str) -> JobRequest:
    gpus, nodes, cpus = job_resources(base, kind)
    res = exp.spec.resources
    return JobRequest(
        name=name, time=time, gpus=gpus, nodes=nodes, cpus_per_task=cpus,
        mem=base.get("mem"), account=base.get("account"), partition=base.get("partition"),
        constraint=base.get("constraint"), qos=base.get("qos"), array_parallelism=int(base["array_parallelism"]),
        dependency=dependency,
        # Training jobs stop ahead of the limit and requeue themselves to resume (train_supervisor);
        # the warning always falls well inside the limit, whatever the limit.
        signal_s=signal_offset(time, res.stop_before_limit if kind == "train" else EVAL_SIGNAL_SECONDS),
        requeue=kind == "train",
    )


def submit(exp: Experiment, executor: Scheduler, only: set[str] | None, retry_failed: bool, now: datetime) -> SubmitResult:
    """Submit what is not yet pending, running or done; journal every submission atomically."""
    dry = isinstance(executor, DryRun)
    result = SubmitResult()
    lock = exp.lock(write=not dry)  # a dry run writes nothing, not even the lock file
    with lock:
        journal = exp.read_journal()
        # Looked up at call time, so tests can stand in for Slurm.
        changed, result.notes = reconcile(journal, lambda name: slurm_query.job_ids_by_name(name))
        if changed and not dry:
            _write_journal(exp, journal, "after matching unconfirmed submissions with Slurm", [])
        latest = journal.latest()
        # States come from each job's own scheduler; this one's answers go through it (a dry
        # run or a test's fake stands in for the real one of its kind).
        asked = {**kinds.schedulers(exp.internal / "submitit"), executor.kind: executor}
        got = tracking.collect(exp, journal, exp.read_cache(), schedulers=asked) if latest else QueryResult()
        states = {}
        for unit, (_, task) in latest.items():
            info = got.jobs.get(task.job_id)
            states[unit] = (task.job_id, info.state if info else "SUBMITTED")
        sel = select(exp.plan, states, only, retry_failed)
        result.skipped = sel.skipped
        if sel.empty:
            return result
        base = slurm_request_base(exp)
        times = run_time_requests(exp, sel.train, executor, base.get("partition")) if sel.train else {}
        predictions = _predictions(exp)
        max_size = executor.max_array_size()
        retry = retry_failed

        def send(kind: str, units: list[str], scripts: list[Path], request: JobRequest, wait_for: list[Path | None]) -> list[str]:
            # The intent goes to disk before sbatch and the ids right after: whatever fails in
            # between, the job name's tag lets the next submit or status find the jobs again.
            # Unique per submission (experiment, number, kind, the moment to the microsecond), and
            # the same for the same inputs, so a dry run with a fixed clock reads the same.
            seed = f"{exp.spec.name}|{journal.next_number()}|{kind}|{len(result.submissions)}|{now.isoformat()}"
            tag = hashlib.sha256(seed.encode()).hexdigest()[:10]
            request.name = f"{job_name(request.name)[:48]}-{tag}"
            sub = Submission(
                number=journal.next_number(), time=now.isoformat(timespec="seconds"), executor=executor.kind, kind=kind,  # type: ignore[arg-type]
                job_id="", dependency=request.dependency, parameters={k: v for k, v in vars(request).items() if v is not None},
                tasks=[TaskEntry(unit=u, job_id="", script=str(s), predicted=predictions.get(u) or None)
                       for u, s in zip(units, scripts)],
                retry=retry, tag=tag, confirmed=False,
            )
            if not dry:
                journal.submissions.append(sub)
                _write_journal(exp, journal, "before submitting", [])
            try:
                ids = _submit(executor, scripts, request, wait_for)
            except PlannerError as exc:
                if not dry and executor.kind == "local" and exc.__cause__ is None:
                    # The local executor's own refusal comes before any process starts, and a
                    # local job cannot be found again by name: the intent is withdrawn rather
                    # than left unconfirmed. (A wrapped error may follow started processes.)
                    journal.submissions.remove(sub)
                    _write_journal(exp, journal, "after the local executor refused", [])
                raise
            sub.confirm(ids)
            result.submissions.append(sub)
            if not dry:
                _write_journal(exp, journal, "after submitting", ids)
            return ids

        new_train: dict[str, str] = {}
        for start, stop in array_chunks(len(sel.train), max_size):
            runs: list[Run] = sel.train[start:stop]
            time = max((times[r.name] for r in runs), key=lambda q: q.seconds).time
            request = _request(exp, base, f"{exp.spec.name}-train", time, None, "train")
            scripts = [exp.run_dir(r.name) / "train.sh" for r in runs]
            ids = send("train", [r.name for r in runs], scripts, request, [None] * len(scripts))
            new_train.update({r.name: j for r, j in zip(runs, ids)})
        for group in sel.eval_groups:
            dep_job = new_train.get(group.after_run) if group.after_run and group.after_job is None else group.after_job
            dependency = f"afterok:{dep_job}" if dep_job and executor.kind == "slurm" else None
            wait = exp.run_dir(group.after_run) / "job-state.json" if group.after_run and executor.kind == "local" else None
            evals: list[Evaluation] = group.evaluations
            for start, stop in array_chunks(len(evals), max_size):
                chunk = evals[start:stop]
                request = _request(exp, base, f"{exp.spec.name}-eval", base["eval_time"], dependency, "eval")
                scripts = [exp.unit_dir(e.key) / "eval.sh" for e in chunk]
                send("eval", [e.key for e in chunk], scripts, request, [wait] * len(scripts))
        if dry:
            result.previews = list(executor.previews)  # type: ignore[attr-defined]
    return result


def _write_journal(exp: Experiment, journal: Journal, when: str, submitted: list[str]) -> None:
    """Write journal.json; a failure says which jobs were already sent and how they will be found."""
    try:
        exp.write_journal(journal)
    except OSError as exc:
        path = exp.path / "journal.json"
        if submitted:
            array = submitted[0].split("_")[0]
            raise StateWriteError(
                f"{path}: cannot record job {array} ({exc.strerror or exc}); it was submitted and runs. The journal "
                "holds the submission unconfirmed: free space, then `plan-experiment status` or `submit` finds the "
                "job by its name and records it (nothing is submitted twice)"
            ) from None
        raise StateWriteError(
            f"{path}: cannot write {when} ({exc.strerror or exc}); nothing more was submitted: free space or make "
            "the folder writable, then run submit again"
        ) from None


def _submit(executor: Scheduler, scripts: list[Path], request: JobRequest, wait_for: list[Path | None]) -> list[str]:
    if not isinstance(executor, DryRun):
        for script in scripts:
            # A retried unit must not be judged by its previous attempt's state file.
            old = script.parent / "job-state.json"
            if old.exists():
                old.replace(script.parent / "job-state.previous.json")
    try:
        return executor.submit(scripts, request, wait_for)
    except PlannerError:  # already says what to fix
        raise
    except Exception as exc:  # submitit raises its own errors with sbatch's stderr inside
        message = str(exc).strip().splitlines()
        raise SchedulerError(
            f"the scheduler refused the submission: {message[-1] if message else exc!r}; check the "
            "Slurm settings in claude.local.md (partition, account, time) and run with --dry-run to see the script"
        ) from exc
