"""``plan-experiment status``: job states, refreshed into experiment_summary.md."""

from __future__ import annotations

import shlex
import time
from datetime import datetime
from pathlib import Path

import click
from rich.console import Console
from rich.live import Live

from planner.folder.experiment import load_experiment
from planner.status.refresh import refresh
from planner.cli.common import print_report, refresh_summary_line, status_table
from planner.spec.errors import JobsFailedError


@click.command("status")
@click.argument("experiment", type=click.Path(path_type=Path, file_okay=False))
@click.option("--watch", is_flag=True, help="Refresh until every submitted job is final.")
@click.option("--interval", type=float, default=10.0, show_default=True, help="Seconds between refreshes with --watch.")
@click.option("--timeout", "timeout_s", type=float, default=None, help="Give up watching after this many seconds.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--no-write", is_flag=True, help="Do not rewrite the status tables of experiment_summary.md.")
def command(experiment: Path, watch: bool, interval: float, timeout_s: float | None, as_json: bool, no_write: bool) -> None:
    """Show job states and refresh the status tables. Exit 6 if any job failed."""
    console = Console(soft_wrap=True)
    exp = load_experiment(experiment)
    report, _ = refresh(exp, datetime.now(), write_summary=not no_write)
    if watch and not report.submitted:
        click.echo(f"nothing submitted yet: run `plan-experiment submit {shlex.quote(str(exp.path))}` first", err=True)
        watch = False
    if watch:
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
            counts = ", ".join(f"{n} {s.lower()}" for s, n in sorted(report.counts().items()))
            console.print(f"{len(report.units)} units: {counts}")
            console.print(refresh_summary_line(report), markup=False)
    if report.any_failed:
        failed = [u.unit for u in report.units if u.failed]
        raise JobsFailedError(
            f"{len(failed)} job(s) failed: {', '.join(failed[:5])}{' ...' if len(failed) > 5 else ''}; read the "
            "slurm-*.out in their folders, fix the cause, then `plan-experiment submit --retry-failed`"
        )
