"""``plan-experiment new``: plan an experiment, from a spec file or the interactive wizard."""

from __future__ import annotations

import sys
from datetime import date, datetime
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from planner.cli.common import make_console
from planner.spec.local_settings import find_local_settings, load_local_settings
from planner.plan.pipeline import PreparedExperiment, abandon, prepare, write
from planner.plan.prompts import Prompter, run_wizard
from planner.spec.errors import ConfigError, PlannerError
from planner.plan.render import plural
from planner.spec.units import duration, size
from planner.spec.spec import parse_spec
from planner.spec.loading import decode_text, load_yaml
from planner.plan.verify import raw_resource_problems
from planner import paths
from planner.spec.commands import command_line


def show_plan(console: Console, prepared: PreparedExperiment) -> None:
    """Print the plan a user approves: runs, evaluations, estimates, prerequisites."""
    plan, est = prepared.plan, prepared.estimates
    table = Table(title=f"{prepared.spec.name}: {plural(len(plan.finetune_runs), 'fine-tune run')} + {plural(len(plan.base_runs), 'control')}")
    table.add_column("Run")
    table.add_column("Type")
    table.add_column("Factors")
    table.add_column("Est. loop", justify="right")
    table.add_column("Est. job", justify="right")
    for run in plan.runs[:50]:
        e = est.for_run(run.name)
        factors = ", ".join(f"{k}={v}" for k, v in run.factors.items())
        table.add_row(run.name, run.kind, factors or "-", duration(e.train_seconds) if e else "-",
                      duration(e.job_seconds) if e else "-")
    console.print(table)
    if len(plan.runs) > 50:
        console.print(f"... and {len(plan.runs) - 50} more runs")
    mark = " (preliminary)" if est.preliminary else " (modelled)" if est.modelled else ""
    console.print(
        f"Evaluations: {len(plan.evaluations)}.  Training: {duration(est.total_train_seconds)} of loops, "
        f"{duration(est.total_job_seconds)} of job wall time{mark}.  "
        f"Compute: {est.compute_hours(prepared.spec.resources.gpus, prepared.spec.resources.nodes)}.  "
        f"Checkpoints: ~{size(est.disk_total_bytes)} of {size(est.disk_free_bytes)} free."
    )
    for item in prepared.resources.prerequisites:
        console.print(f"[yellow]prerequisite:[/yellow] {item}")
    for item in prepared.resources.warnings:
        console.print(f"[yellow]warning:[/yellow] {item}")
    console.print(f"Folder: {prepared.target}")


@click.command("new")
@click.option("--spec", "spec_path", type=click.Path(path_type=Path), help="Experiment spec (experiment.yaml); without it, the wizard asks.")
@click.option("--yes", "-y", is_flag=True, help="Write without asking for approval.")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), help="Parent folder of the experiment (overrides experiments_dir).")
@click.option("--force", is_flag=True, help="Replace an existing experiment folder (the old one is kept as a backup).")
@click.option("--local-config", type=click.Path(path_type=Path), help="claude.local.md to use (else $PLAN_EXPERIMENT_LOCAL, ./claude.local.md, or the one beside the spec).")
def command(spec_path: Path | None, yes: bool, out_dir: Path | None, force: bool, local_config: Path | None) -> None:
    """Plan an experiment: verify resources, estimate, and write the experiment folder."""
    console = make_console()
    raw: bytes | None = None
    if spec_path is not None:
        # Read first: a folder, a symlink loop or a missing file is named before anything else.
        try:
            raw = spec_path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"--spec {spec_path}: cannot read ({exc.strerror}); give the path of an experiment.yaml")
    near = spec_path.resolve().parent if spec_path else None
    settings_path = find_local_settings(local_config, near)
    settings = load_local_settings(settings_path)
    if spec_path is not None and raw is not None:
        spec_dir = spec_path.resolve().parent
        data = load_yaml(decode_text(raw, str(spec_path)), str(spec_path), settings.limits.max_spec_values)
        try:
            spec = parse_spec(data, str(spec_path))
        except ConfigError as exc:
            # Report the models, dataset and scripts it names too, so one run shows every problem.
            more = raw_resource_problems(data, settings, spec_dir, paths.PROJECT_ROOT)
            if not more:
                raise
            raise ConfigError(
                f"{exc}, and {len(more)} with the models, dataset or scripts it names", exc.problems + more
            ) from None
    else:
        if not sys.stdin.isatty() and yes:
            raise ConfigError("--yes without --spec: the wizard needs a terminal; pass --spec FILE for scripts")
        data = run_wizard(Prompter(console), settings, date.today())
        spec = parse_spec(data, "wizard answers")
        spec_dir = Path.cwd()
    prepared = prepare(spec, spec_dir, settings, settings_path, out_dir, force, ["plan-experiment", *sys.argv[1:]], datetime.now)
    try:
        for stale in prepared.removed_partials:
            console.print(f"Removed {stale}: left by an earlier `new` that was killed while writing")
        show_plan(console, prepared)
        if not yes:
            if not Prompter(console).confirm("Write this experiment?", True):
                raise PlannerError("not approved: nothing was written")
        backup = write(prepared, force, datetime.now())
    finally:
        abandon(prepared)  # declined, interrupted or failed: the staged folder goes (after write: nothing to do)
    if backup is not None:
        console.print(f"Replaced the old folder; it is kept at {backup}", markup=False, highlight=False)
    console.print(f"Wrote {prepared.target}", markup=False, highlight=False)
    console.print(f"Next: {command_line('plan-experiment', 'submit', prepared.target)}", markup=False, highlight=False)
