"""``plan-experiment submit``: fine-tune arrays and evaluation jobs, through submitit."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import click

from planner.jobs.executors import DryRun
from planner.folder.experiment import load_experiment
from planner.jobs.submitting import submit
from planner.spec.commands import command_line
from planner.cli.common import make_executor
from planner.jobs.submission import check_only


@click.command("submit")
@click.argument("experiment", type=click.Path(path_type=Path, file_okay=False))
@click.option("--executor", type=click.Choice(["auto", "slurm", "local"]), default="auto", show_default=True,
              help="auto: Slurm where it is installed (exit 5 if its controller does not answer), local processes where there is no Slurm.")
@click.option("--dry-run", is_flag=True, help="Print the job scripts and what would be submitted; submit nothing.")
@click.option("--retry-failed", is_flag=True, help="Resubmit failed, cancelled, timed-out, out-of-memory or node-failed runs and their evaluations.")
@click.option("--only", "only", multiple=True, metavar="RUN", help="Only these runs (and their evaluations); repeatable.")
def command(experiment: Path, executor: str, dry_run: bool, retry_failed: bool, only: tuple[str, ...]) -> None:
    """Submit an experiment's fine-tune and evaluation jobs (idempotent)."""
    exp = load_experiment(experiment)
    only_set = check_only(exp.plan, list(only)) if only else None
    ex = make_executor(executor, exp, dry_run=dry_run)
    runner = DryRun(ex) if dry_run else ex
    result = submit(exp, runner, only_set, retry_failed, datetime.now())
    if dry_run:
        for text in result.previews:
            click.echo(text.rstrip("\n"))
            click.echo("-" * 72)
    verb = "would submit" if dry_run else "submitted"
    for sub in result.submissions:
        dep = f" after {sub.dependency}" if sub.dependency else ""
        units = ", ".join(t.unit for t in sub.tasks[:4]) + (f", ... ({len(sub.tasks)} in all)" if len(sub.tasks) > 4 else "")
        click.echo(f"{verb} {sub.kind} job {sub.job_id} on {sub.executor} ({len(sub.tasks)} task(s){dep}): {units}")
    for note in result.notes:
        click.echo(f"journal: {note}")
    for unit, why in result.skipped:
        click.echo(f"skipped {unit}: {why}")
    if not result.submissions:
        click.echo("nothing to submit")
    elif not dry_run:
        click.echo(f"follow with: {command_line('plan-experiment', 'status', exp.path, '--watch')}")
