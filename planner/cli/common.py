"""Helpers shared by the command modules (executor choice, terminal tables)."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from planner.jobs import slurm_query
from planner.jobs import kinds
from planner.jobs.scheduler import Scheduler
from planner.folder.experiment import Experiment
from planner.spec.errors import SchedulerError
from planner.spec.units import clock, prediction_error_pct
from planner.status.report import StatusReport

STATE_STYLE = {
    "COMPLETED": "green", "RUNNING": "cyan", "PENDING": "yellow", "SUBMITTED": "yellow",
    "NOT_SUBMITTED": "dim", "FAILED": "red", "CANCELLED": "red", "TIMEOUT": "red",
    "OUT_OF_MEMORY": "red", "NODE_FAIL": "red", "PREEMPTED": "red", "LOST": "red",
}


# Piped or redirected output has no width: rich would assume 80 columns and wrap table rows
# mid-cell, which breaks grep and log files. Such output gets lines as long as they need.
PIPED_WIDTH = 10_000


def make_console() -> Console:
    """The terminal's console, or one without a width limit when output goes to a file or pipe."""
    console = Console(soft_wrap=True)
    if not console.is_terminal:
        console = Console(soft_wrap=True, width=PIPED_WIDTH)
    return console


def make_executor(kind: str, exp: Experiment, dry_run: bool = False) -> Scheduler:
    """``auto`` picks Slurm where Slurm is installed and local processes only where there is none.

    On a login node whose controller is down, running training locally would be wrong, so
    ``auto`` stops there (exit 5) with the reason rather than fall back, even for a dry run
    (which executor it would pick is the question). An explicit ``--executor slurm`` dry
    run needs no Slurm at all: the sbatch script is rendered here, and a laptop may review
    what a cluster would be sent.

    Args:
        kind: ``auto``, ``slurm`` or ``local``.
        exp: The experiment; the schedulers keep their files in its internal folder.
        dry_run: Only previews will be asked of the scheduler, nothing submitted.
    """
    folder = exp.internal / "submitit"
    if kind == "auto":
        kind = "slurm" if slurm_query.slurm_installed() else "local"
        if kind == "slurm" and not slurm_query.slurm_available():
            raise SchedulerError(f"--executor auto: Slurm is installed here but cannot take jobs "
                                 f"({slurm_query.controller_problem()}); start or reach its controller, or pass "
                                 "--executor local to run on this machine")
    elif kind == "slurm" and not slurm_query.slurm_available():
        problem = slurm_query.controller_problem()
        if not dry_run:
            raise SchedulerError(f"--executor slurm: Slurm cannot take jobs ({problem}); "
                                 "use --executor local or start Slurm")
        click.echo(f"note: Slurm cannot take jobs here ({problem}); the sbatch scripts below are rendered "
                   "without it", err=True)
    return kinds.schedulers(folder)[kind]


def status_table(report: StatusReport) -> Table:
    """The terminal view of a status report (narrow enough for an 80-column terminal)."""
    table = Table(title=f"refreshed {report.refreshed:%Y-%m-%d %H:%M:%S}" + (" (may be stale)" if report.stale else ""))
    table.add_column("Run / evaluation", overflow="fold")
    table.add_column("State")
    table.add_column("Job ID", overflow="fold")
    table.add_column("Elapsed", justify="right")
    table.add_column("Predicted", justify="right")
    table.add_column("Notes", overflow="fold")
    for u in report.units:
        style = STATE_STYLE.get(u.state, "")
        notes = []
        if u.reason and u.state in ("PENDING", "CANCELLED", "LOST"):
            notes.append(u.reason)
        if u.failed and u.exit_code:
            notes.append(f"exit {u.exit_code}")
        if u.note:
            notes.append(u.note)
        if u.recovery:
            notes.append(u.recovery)
        predicted = "-"
        if u.predicted_s:
            predicted = clock(u.predicted_s)
            if u.elapsed_s and u.final:
                predicted += f" ({prediction_error_pct(u.predicted_s, u.elapsed_s):+.0f}%)"
        table.add_row(
            u.unit, f"[{style}]{u.state.lower()}[/{style}]" if style else u.state.lower(), u.job_id or "-",
            clock(u.elapsed_s) if u.elapsed_s else "-", predicted, "; ".join(notes) or "-",
        )
    return table


def refresh_summary_line(report: StatusReport) -> str:
    """When and by what the tables were refreshed: this refresh, and the one before it."""
    line = f"refreshed {report.refreshed.isoformat(' ', 'seconds')} by {report.refreshed_by}"
    if report.previous_refresh:
        line += f" (before that: {report.previous_refresh.get('at')} by {report.previous_refresh.get('by')})"
    return line


def print_report(console: Console, report: StatusReport) -> None:
    """Table, counts, staleness and warnings."""
    console.print(status_table(report))
    counts = ", ".join(f"{n} {s.lower()}" for s, n in sorted(report.counts().items()))
    console.print(f"{len(report.units)} units: {counts}")
    console.print(refresh_summary_line(report), markup=False)
    if report.stale:
        console.print(
            f"[yellow]status may be stale: {report.stale_reason}; last good refresh "
            f"{report.last_good_refresh or 'never'}[/yellow]"
        )
    for w in report.warnings:
        console.print(f"[yellow]warning:[/yellow] {w}")


def experiment_path(value: str) -> Path:
    """An experiment folder argument."""
    return Path(value).expanduser()
