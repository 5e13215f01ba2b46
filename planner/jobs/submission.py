"""What a ``submit`` sends: pure decisions from the plan, the journal and current states.

Rules (the idempotence a user relies on):

- A unit never submitted is submitted.
- A unit whose newest job is pending, running or completed is never submitted again.
- A unit whose newest job failed (FAILED, CANCELLED, TIMEOUT, OUT_OF_MEMORY, NODE_FAIL,
  PREEMPTED, ...) is resubmitted only with ``--retry-failed``.
- An evaluation waits for its own run's training (``afterok``), not for every run; it is
  submitted with its run when the run is (re)submitted, and held back while its run's
  training has failed and is not being retried.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from planner.spec.errors import ConfigError
from planner.spec.runs import Evaluation, Plan, Run
from planner.spec.states import ACTIVE_STATES, RETRYABLE_STATES
from planner.spec.validation import nearest



@dataclass
class EvalGroup:
    """Evaluations submitted together: same dependency (one array)."""

    evaluations: list[Evaluation]
    after_run: str | None  # the run whose training they wait for (None: no wait)
    after_job: str | None  # existing job id to wait for; None when the training is new


@dataclass
class Selection:
    """The decision of one submit."""

    train: list[Run] = field(default_factory=list)
    eval_groups: list[EvalGroup] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (unit, why)

    @property
    def empty(self) -> bool:
        """Nothing to submit."""
        return not self.train and not any(g.evaluations for g in self.eval_groups)


def check_only(plan: Plan, only: list[str]) -> set[str]:
    """Validate ``--only`` run names; every unknown name is reported with a suggestion."""
    names = [r.name for r in plan.runs]
    problems = []
    for name in only:
        if name not in names:
            guess = nearest(name, names)
            problems.append(f"--only {name!r}: no such run" + (f"; did you mean {guess!r}?" if guess else ""))
    if problems:
        raise ConfigError(f"{len(problems)} unknown run name(s); see the run names in experiment_summary.md", problems)
    return set(only)


def select(plan: Plan, states: dict[str, tuple[str, str]], only: set[str] | None, retry_failed: bool) -> Selection:
    """Decide what to submit.

    Args:
        plan: The experiment's runs and evaluations.
        states: unit -> (job id, normalised state) of its newest job; absent when never submitted.
        only: run names to restrict to, or None for all.
        retry_failed: resubmit units whose newest job failed.
    """
    sel = Selection()
    train_new: set[str] = set()
    for run in plan.finetune_runs:
        if only is not None and run.name not in only:
            continue
        decision = _decide(run.name, states, retry_failed)
        if decision is None:
            sel.train.append(run)
            train_new.add(run.name)
        else:
            sel.skipped.append((run.name, decision))
    groups: dict[tuple[str | None, str | None], list[Evaluation]] = {}
    for ev in plan.evaluations:
        if only is not None and ev.run not in only:
            continue
        run = plan.run(ev.run)
        retrain = run.name in train_new
        decision = _decide(ev.key, states, retry_failed or retrain)
        if decision is not None:
            sel.skipped.append((ev.key, decision))
            continue
        key: tuple[str | None, str | None]
        if run.is_base or retrain:
            key = (run.name if retrain else None, None)
        else:
            job, state = states.get(run.name, (None, None))
            if state == "COMPLETED":
                key = (None, None)
            elif state in ACTIVE_STATES:
                key = (run.name, job)
            else:
                why = "its training failed; fix it and use --retry-failed" if state else "its training was never submitted"
                sel.skipped.append((ev.key, why))
                continue
        groups.setdefault(key, []).append(ev)
    sel.eval_groups = [EvalGroup(evs, after_run=k[0], after_job=k[1]) for k, evs in groups.items()]
    return sel


def _decide(unit: str, states: dict[str, tuple[str, str]], retry: bool) -> str | None:
    """None to submit, else why not."""
    if unit not in states:
        return None
    job, state = states[unit]
    if state in ACTIVE_STATES:
        return f"already {state.lower()} as job {job}"
    if state == "COMPLETED":
        return f"completed as job {job}"
    if state in RETRYABLE_STATES:
        return None if retry else f"{state.lower()} as job {job}; use --retry-failed to resubmit"
    return f"state {state} as job {job}"


def array_chunks(count: int, max_array_size: int) -> list[tuple[int, int]]:
    """Split ``count`` tasks into arrays whose highest index stays below MaxArraySize.

    MaxArraySize caps the highest array *index* (ids 0..MaxArraySize-1), not the number of
    tasks, so each chunk holds at most MaxArraySize tasks indexed from 0.
    """
    if max_array_size < 1:
        raise ValueError("MaxArraySize must be at least 1")
    return [(start, min(start + max_array_size, count)) for start in range(0, count, max_array_size)]
