"""``plan-experiment status``: job states, refreshed into experiment_summary.md."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

import click

from planner.folder.experiment import load_experiment
from planner.status.refresh import refresh
from planner.spec.commands import command_line
from planner.cli.common import make_console, print_report, refresh_summary_line, status_table
from planner.spec.errors import JobsFailedError
from planner.status.report import StatusReport


def _counts(report: StatusReport) -> str:
    return ", ".join(f"{n} {s.lower()}" for s, n in sorted(report.counts().items()))


@click.command("status")
@click.argument("experiment", type=click.Path(path_type=Path, file_okay=False))
@click.option("--watch", is_flag=True, help="Refresh until every submitted job is final.")
@click.option("--interval", type=float, default=10.0, show_default=True, help="Seconds between refreshes with --watch.")
@click.option("--timeout", "timeout_s", type=float, default=None, help="Give up watching after this many seconds.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--no-write", is_flag=True, help="Write nothing (summary, cache, journal, lock): for read-only folders.")
def command(experiment: Path, watch: bool, interval: float, timeout_s: float | None, as_json: bool, no_write: bool) -> None:
    """Show job states and refresh the status tables. Exit 6 if any job failed."""
    console = make_console()
    exp = load_experiment(experiment)
    report, _ = refresh(exp, datetime.now(), write_summary=not no_write)
    if watch and not report.submitted:
        click.echo(f"nothing submitted yet: run `{command_line('plan-experiment', 'submit', exp.path)}` first", err=True)
        watch = False
    if watch and not console.is_terminal:
        # Into a file or pipe: no live redrawing (it leaves the cursor mid-line); one line per
        # refresh, then the final table below.
        deadline = time.monotonic() + timeout_s if timeout_s else None
        while not report.all_final and (deadline is None or time.monotonic() < deadline):
            if not as_json:
                click.echo(f"{report.refreshed:%H:%M:%S} {_counts(report)}")
            time.sleep(interval)
            report, _ = refresh(exp, datetime.now(), write_summary=not no_write)
        watch = False
    if watch:
        from rich.live import Live  # only a terminal that is watched redraws

        deadline = time.monotonic() + timeout_s if timeout_s else None
        with Live(status_table(report), console=console, refresh_per_second=1, transient=as_json) as live:
            while not report.all_final and (deadline is None or time.monotonic() < deadline):
                time.sleep(interval)
                report, _ = refresh(exp, datetime.now(), write_summary=not no_write)
                live.update(status_table(report))
    if as_json:
        click.echo(report.to_json())
    else:
        if not watch:
            print_report(console, report)
        else:
            console.print(f"{len(report.units)} units: {_counts(report)}")
            console.print(refresh_summary_line(report), markup=False)
    if report.any_failed:
        failed = [u for u in report.units if u.failed]
        logs = [u.log for u in failed if u.log]
        where = f"read {logs[0]}" + (f" (and {len(logs) - 1} more logs)" if len(logs) > 1 else "") if logs else \
            "no job wrote a log (they never started): ask `sacct -j <job id>` why"
        raise JobsFailedError(
            f"{len(failed)} job(s) failed: {', '.join(u.unit for u in failed[:5])}{' ...' if len(failed) > 5 else ''}; "
            f"{where}; fix the cause, then `{command_line('plan-experiment', 'submit', exp.path, '--retry-failed')}`"
        )
