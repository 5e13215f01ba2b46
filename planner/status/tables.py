"""The two status tables of experiment_summary.md (seed 002's columns).

Both the first rendering (everything ``pending``) and every ``status`` refresh go through
these functions, so the tables always have the same shape.
"""

from __future__ import annotations

from dataclasses import dataclass

from planner.folder.markdown import md_cell, md_table
from planner.spec.runs import Plan

FINETUNE_BLOCK = "finetune-status"
EVAL_BLOCK = "eval-status"
REFRESH_BLOCK = "status-refresh"  # one line: when and by what the tables were last refreshed
NOT_REFRESHED = "Not refreshed yet: each job refreshes these tables as it ends, and `plan-experiment status` does on demand."
FINETUNE_HEADERS = ("Run Name", "Status", "Job ID", "Started", "Completed", "Notes")
EVAL_HEADERS = ("Run Name", "Task", "Epoch", "Status", "Job ID", "Completed", "Notes")


@dataclass
class FinetuneRow:
    """One row of the Fine-tuning table."""

    run: str
    status: str = "pending"
    job_id: str | None = None
    started: str | None = None
    completed: str | None = None
    notes: str | None = None


@dataclass
class EvalRow:
    """One row of the Evaluations table."""

    run: str
    task: str
    epoch: int | None
    status: str = "pending"
    job_id: str | None = None
    completed: str | None = None
    notes: str | None = None


def initial_rows(plan: Plan) -> tuple[list[FinetuneRow], list[EvalRow]]:
    """Rows of a plan that has not been submitted: every job pending."""
    ft = [FinetuneRow(run=r.name) for r in plan.finetune_runs]
    base = {r.name for r in plan.base_runs}
    ev = [
        EvalRow(run=e.run, task=e.task, epoch=e.epoch, notes="Base model" if e.run in base else None)
        for e in plan.evaluations
    ]
    return ft, ev


def finetune_table(rows: list[FinetuneRow]) -> str:
    """The Fine-tuning status table."""
    return md_table(
        FINETUNE_HEADERS,
        [(r.run, r.status, r.job_id, r.started, r.completed, r.notes) for r in rows],
    )


def eval_table(rows: list[EvalRow]) -> str:
    """The Evaluations status table."""
    return md_table(
        EVAL_HEADERS,
        [
            (r.run, r.task, "-" if r.epoch is None else r.epoch, r.status, r.job_id, r.completed, r.notes)
            for r in rows
        ],
    )


def refresh_line(when: str, by: str, stale_reason: str | None = None) -> str:
    """The line above the tables that says how current they are.

    Args:
        when: Local time of the refresh (as the tables print times).
        by: What refreshed them: ``job 123_4`` or a command in backticks.
        stale_reason: Why the scheduler could not be asked, when it could not.
    """
    line = f"Tables refreshed {when} by {by}."
    if stale_reason:
        line += f" The scheduler could not be asked ({stale_reason}): rows it did not answer are as they were."
    return md_cell(line)
