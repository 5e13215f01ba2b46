"""``plan-experiment estimate``: time, disk and batch size from prior ``slurm-*.out`` logs."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from planner.cli.common import make_console
from planner.estimate.pipeline import run_estimate, settings_of
from planner.folder.experiment import load_experiment
from planner.spec.local_settings import load_local_settings
from planner.status.refresh import predicted_seconds, refresh
from planner.spec.units import duration, prediction_error_pct, size


@click.command("estimate")
@click.argument("experiment", type=click.Path(path_type=Path, file_okay=False))
@click.option("--logs", "logs", multiple=True, type=click.Path(path_type=Path), help="More folders to search for slurm-*.out (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print the estimates as JSON.")
@click.option("--calibrate", is_flag=True, help="Compare predicted with actual elapsed time of finished runs.")
@click.option("--local-config", type=click.Path(path_type=Path), help="Local settings to use instead of those recorded with the plan.")
@click.option("--no-cache", is_flag=True, help="Parse every log again instead of using the scan cache.")
def command(experiment: Path, logs: tuple[Path, ...], as_json: bool, calibrate: bool, local_config: Path | None, no_cache: bool) -> None:
    """Re-estimate an experiment from prior runs and rewrite its Compute Estimates."""
    console = make_console()
    exp = load_experiment(experiment)
    settings = load_local_settings(local_config) if local_config else settings_of(exp)
    # Calibration compares with the prediction each job was submitted with (journal.json),
    # which the re-estimate below never changes: calling this twice prints the same.
    before = predicted_seconds(exp)
    rows: list[dict[str, Any]] = []
    if calibrate:
        report, _ = refresh(exp, datetime.now())
        for u in report.units:
            if u.kind == "train" and u.state == "COMPLETED" and u.elapsed_s and u.unit in before:
                err = prediction_error_pct(before[u.unit], u.elapsed_s)
                rows.append({"run": u.unit, "predicted_s": round(before[u.unit], 1), "actual_s": u.elapsed_s, "error_pct": round(err, 1)})
    out = run_estimate(exp, settings, list(logs), datetime.now, use_cache=not no_cache)
    est = out.estimates
    recorded = exp.read_journal().recorded_predictions()
    changed = [(r.run, recorded[r.run], r.job_seconds) for r in est.runs
               if r.run in recorded and abs(recorded[r.run] - r.job_seconds) >= 0.5]
    if as_json:
        written = exp.read_estimates()
        payload: dict[str, Any] = written.model_dump() if written else {}
        payload["priors_used"] = len(out.priors)
        payload["skipped_logs"] = [{"path": p, "reason": r} for p, r in out.scan.skipped]
        payload["skipped_folders"] = [{"path": p, "reason": r} for p, r in out.scan.skipped_folders]
        if calibrate:
            payload["calibration"] = rows
        payload["new_since_submit"] = [{"run": run, "submitted_job_seconds": round(old, 1), "new_job_seconds": round(new, 1)}
                                       for run, old, new in changed]
        click.echo(json.dumps(payload, indent=2))
        return
    console.print(f"searched {', '.join(out.scan.folders) or 'nothing'}: {len(out.priors)} usable prior run(s), "
                  f"{len(out.scan.skipped)} log(s) skipped"
                  + (f", {len(out.scan.skipped_folders)} folder(s) not searched" if out.scan.skipped_folders else ""),
                  markup=False, highlight=False)
    for path, reason in [*out.scan.skipped_folders, *out.scan.skipped][:10]:
        console.print(f"  skipped {path}: {reason}", markup=False, highlight=False)
    table = Table(title="Training estimates per run")
    for col in ("Run", "Steps/epoch", "Loop", "Job wall time", "Confidence", "Auto time", "Time request", "Basis"):
        table.add_column(col, overflow="fold")
    for r in est.runs:
        request = (r.time_request or "-") + (" (estimate longer!)" if r.over_request else "")
        table.add_row(r.run, str(r.steps_per_epoch or "-"), duration(r.train_seconds), duration(r.job_seconds),
                      r.confidence, r.slurm_time, request, f"{r.basis}; {r.job_basis}")
    console.print(table)
    console.print(f"Total training {duration(est.total_train_seconds)}; {est.eval_count} evaluations ~{duration(est.total_eval_seconds)}; "
                  f"{est.compute_hours(exp.spec.resources.gpus, exp.spec.resources.nodes)}; checkpoints ~{size(est.disk_total_bytes)} "
                  f"of {size(est.disk_free_bytes)} free")
    console.print(f"Batch size: {est.batch_size_note}")
    if changed:
        console.print(f"New figures for {len(changed)} run(s) already submitted (journal.json keeps what each was "
                      "submitted with; calibration and status compare with that):")
        for run, old, new in changed:
            console.print(f"  {run}: submitted with {duration(old)} job wall time, new estimate {duration(new)}",
                          markup=False, highlight=False)
    if calibrate:
        cal = Table(title="Calibration: predicted (at submit) vs actual job wall time")
        for col in ("Run", "Predicted", "Actual", "Error"):
            cal.add_column(col)
        for row in rows:
            cal.add_row(row["run"], duration(row["predicted_s"]), duration(row["actual_s"]), f"{row['error_pct']:+.0f}%")
        console.print(cal if rows else "no finished runs to calibrate against yet")
    console.print(f"Rewrote Compute Estimates in {exp.path / 'experiment_summary.md'} and appended to design-experiment.log")
