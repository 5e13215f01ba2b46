"""``plan-experiment demo``: the shipped capitalization experiment, end to end.

Plan (tiny model, 2 LoRA ranks + base control) -> submit -> train -> evaluate -> status
with every job final -> analyze (tables, forgetting against the base model, plots, the
Results block): on Slurm where it is installed, else on this machine.
"""

from __future__ import annotations

import shutil
import sys
import time
from datetime import datetime
from pathlib import Path

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from planner import paths
from planner.folder.experiment import load_experiment
from planner.spec.local_settings import load_local_settings
from planner.plan.pipeline import abandon, prepare, write
from planner.jobs.submitting import submit
from planner.status.refresh import refresh
from planner.spec.commands import command_line
from planner.cli.analyze import headline_table
from planner.cli.common import make_console, make_executor, print_report
from planner.spec.errors import ConfigError, JobsFailedError, PlannerError
from planner.spec.spec import load_spec_text

EXAMPLE = paths.EXAMPLES_DIR / "capitalization"


@click.command("demo")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=Path("demo-output"), show_default=True,
              help="Folder the demo experiment is written into (replaced on each run).")
@click.option("--executor", type=click.Choice(["auto", "slurm", "local"]), default="auto", show_default=True)
@click.option("--timeout", "timeout_s", type=float, default=900, show_default=True, help="Give up after this many seconds.")
def command(out_dir: Path, executor: str, timeout_s: float) -> None:
    """Plan, submit, train, evaluate, report and analyze the shipped demo experiment."""
    console = make_console()
    spec_path = EXAMPLE / "experiment.yaml"
    if not spec_path.is_file():
        # The example's model and data are not package data: an installed wheel has no demo.
        raise ConfigError(f"the demo needs a checkout of plan-experiment ({spec_path} is missing); "
                          "clone the repository and run `bash scripts/demo.sh` there")
    settings_path = EXAMPLE / "claude.local.md"
    settings = load_local_settings(settings_path)
    spec = load_spec_text(spec_path.read_text(encoding="utf-8"), str(spec_path))
    target = (out_dir / spec.name).absolute()
    if target.exists():
        shutil.rmtree(target)  # the demo starts clean every time; it is not user data
    console.print(f"[bold]1/5 plan[/bold] {spec_path} -> {target}")
    prepared = prepare(spec, spec_path.parent, settings, settings_path, out_dir, False, ["plan-experiment", *sys.argv[1:]], datetime.now)
    try:
        write(prepared, False, datetime.now())
    finally:
        abandon(prepared)
    exp = load_experiment(target)
    ex = make_executor(executor, exp)
    console.print(f"[bold]2/5 submit[/bold] on the {ex.kind} executor")
    result = submit(exp, ex, None, False, datetime.now())
    for sub in result.submissions:
        console.print(f"  {sub.kind} job {sub.job_id}: {len(sub.tasks)} task(s)" + (f" after {sub.dependency}" if sub.dependency else ""))
    console.print("[bold]3/5 train and evaluate[/bold]")
    deadline = time.monotonic() + timeout_s
    report, _ = refresh(exp, datetime.now(), by="`plan-experiment demo`")
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console) as bar:
        task = bar.add_task("jobs final", total=len(report.units))
        while not report.all_final:
            if time.monotonic() > deadline:
                raise PlannerError(f"demo: jobs not final after {timeout_s:.0f} s; see `{command_line('plan-experiment', 'status', target)}`")
            time.sleep(2)
            report, _ = refresh(exp, datetime.now(), by="`plan-experiment demo`")
            running = sum(1 for u in report.units if u.state == "RUNNING")
            bar.update(task, completed=sum(1 for u in report.units if u.final), description=f"jobs final ({running} running)")
    console.print("[bold]4/5 status[/bold]")
    print_report(console, report)
    for u in report.units:
        if u.kind == "eval" and u.note:
            console.print(f"  {u.unit:45s} {u.note}", markup=False, highlight=False)
    if report.any_failed:
        raise JobsFailedError("demo: some jobs failed; see the table above and the slurm-*.out files in their folders")
    console.print("[bold]5/5 analyze[/bold]")
    from planner.analyze.pipeline import run_analysis  # pandas: loaded only once jobs are done

    outcome = run_analysis(exp, command=command_line("plan-experiment", "analyze", target))
    console.print(headline_table(outcome))
    for w in outcome.warnings:
        console.print(f"warning: {w}", markup=False, highlight=False)
    console.print(f"Report: {outcome.folder / 'report.html'}", markup=False, highlight=False)
    console.print(f"Summary: {target / 'experiment_summary.md'}", markup=False, highlight=False)
