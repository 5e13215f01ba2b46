"""``plan-experiment analyze``: answer the experiment's question from its results."""

from __future__ import annotations

import json
from collections import Counter
import math
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console
from rich.table import Table

from planner.folder.experiment import load_experiment
from planner.spec.errors import ConfigError, JobsFailedError

if TYPE_CHECKING:
    from planner.analyze.pipeline import Outcome

# planner.analyze is imported inside the functions below: its tables load pandas (half a
# second), which ``analyze --help`` and a bad option must not wait for.


def headline_table(outcome: Outcome) -> Table:
    """The headline table for the terminal (the base column and best-vs-last are in the summary and report)."""
    from planner.analyze.report import headline_table_rows

    table = Table(title=f"{outcome.analysis.metric} (epoch {outcome.analysis.epoch_choice})")
    for h in ("Condition", "Task", "Epoch", "mean [95 % CI]", "Δ [95 % CI] vs base", "p (adj.)", "Verdict"):
        table.add_column(h, overflow="fold")
    for row in headline_table_rows(outcome.analysis):
        table.add_row(*(str(row[i]) for i in (0, 1, 2, 3, 5, 7, 8)))
    return table


def _json_value(v: Any) -> Any:
    return None if isinstance(v, float) and math.isnan(v) else v


def outcome_json(outcome: Outcome) -> str:
    """The ``--json`` output: headline, flags, incomplete units and the files written."""
    a = outcome.analysis
    return json.dumps({
        "metric": a.metric, "epoch": a.epoch_choice, "folder": str(outcome.folder), "files": outcome.files,
        "headline": [{k: _json_value(v) for k, v in r.items()} for r in a.headline],
        "flags": dict(Counter(r["flag"] for r in a.headline if r["flag"] is not None)),
        "findings": [dict(zip(a.tables["findings"].columns, row)) for row in a.tables["findings"].rows],
        "alpha": a.thresholds.alpha, "correction": a.thresholds.correction,
        "config_mismatch": [r for r, m in zip(a.tables["runs"].column("run"), a.tables["runs"].column("config_mismatch"))
                            if m is True],
        "incomplete": a.incomplete, "warnings": outcome.warnings,
    }, indent=2, default=str)


@click.command("analyze")
@click.argument("experiment", type=click.Path(path_type=Path, file_okay=False))
@click.option("--metric", default="accuracy", show_default=True,
              help="Metric of results.json to analyse (a key of its 'metrics' object, or a top-level number).")
@click.option("--epoch", "epoch", type=click.Choice(["last", "best", "all"]), default="last", show_default=True,
              help="Epochs in the headline and the sweeps: the last evaluated, the best mean, or every one.")
@click.option("--mild-drop", type=float, default=5.0, show_default=True,
              help="Relative drop against the base model (percent) flagged as mild forgetting.")
@click.option("--severe-drop", type=float, default=20.0, show_default=True,
              help="Relative drop against the base model (percent) flagged as severe forgetting.")
@click.option("--alpha", type=float, default=None,
              help="Level of every finding (after the correction). Default: analysis.alpha of claude.local.md, else 0.05.")
@click.option("--correction", type=click.Choice(["holm", "bh"]), default=None,
              help="Multiple-comparison correction over the findings: holm (family-wise) or bh (false discovery "
                   "rate). Default: analysis.correction of claude.local.md, else holm.")
@click.option("--json", "as_json", is_flag=True, help="Print the headline and what was written as JSON.")
@click.option("--no-plots", is_flag=True, help="Write tables, report and Results block without plots.")
@click.option("--strict", is_flag=True, help="Exit 6 when a planned evaluation is missing or failed.")
def command(experiment: Path, metric: str, epoch: str, mild_drop: float, severe_drop: float, alpha: float | None,
            correction: str | None, as_json: bool, no_plots: bool, strict: bool) -> None:
    """Tables, statistics, plots and a report from the experiment's results."""
    if not 0 < mild_drop < severe_drop:
        raise ConfigError(f"--mild-drop {mild_drop:g} and --severe-drop {severe_drop:g}: need 0 < mild < severe, "
                          "e.g. --mild-drop 5 --severe-drop 20")
    from planner.analyze.pipeline import run_analysis
    from planner.analyze.tables import Thresholds

    exp = load_experiment(experiment)
    settings = exp.recorded_analysis()
    alpha = settings.alpha if alpha is None else alpha
    if not 0 < alpha < 1:
        raise ConfigError(f"--alpha {alpha:g}: need 0 < alpha < 1, e.g. --alpha 0.05")
    command_line = shlex.join(["plan-experiment", "analyze", *sys.argv[2:]]) if len(sys.argv) > 1 else "plan-experiment analyze"
    outcome = run_analysis(exp, metric=metric, epoch=epoch,  # type: ignore[arg-type]
                           thresholds=Thresholds(mild_drop, severe_drop, alpha,
                                                 correction or settings.correction),  # type: ignore[arg-type]
                           make_plots=not no_plots,
                           command=command_line)
    present = outcome.analysis.metrics_present
    if present and metric not in present:
        outcome.warnings.append(f"no results.json has the metric {metric!r}; pass --metric with one of "
                                f"{sorted(present)}")
    if as_json:
        click.echo(outcome_json(outcome))
    else:
        console = Console(soft_wrap=True)
        console.print(headline_table(outcome))
        if outcome.analysis.incomplete:
            console.print(f"incomplete: {len(outcome.analysis.incomplete)} unit(s), e.g. "
                          f"{outcome.analysis.incomplete[0]}", markup=False, highlight=False)
        console.print(f"Wrote {outcome.folder} ({len(outcome.files)} files) and the Results block of "
                      f"{exp.path / 'experiment_summary.md'}", markup=False, highlight=False)
    for w in outcome.warnings:
        click.echo(f"warning: {w}", err=True)
    missing = outcome.missing_or_failed
    if strict and missing:
        raise JobsFailedError(f"--strict: {len(missing)} planned evaluation(s) missing or failed: "
                              f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}; submit them "
                              "(`plan-experiment submit --retry-failed`) or run their eval.sh")
