"""The prior-run index: logs found under the search folders, as PriorRuns for the estimator.

Parsed logs are cached by (path, size, mtime) so a rescan reads only what changed; runs
planned by this tool are enriched from the files around their log (model size from
finetune.yaml's checkpoint, wall time and evaluation times from job-state.json).
"""

from __future__ import annotations

import json
import os
import shlex
from datetime import datetime
from pathlib import Path
from typing import Callable

import yaml

from planner.adapters.prior_runs import ScanResult, scan
from planner.core.designlog import DesignLog
from planner.core.estimate import PriorRun
from planner.core.logparse import LogRecord
from planner.core.recipes import RecipeError, model_shape_from_config
from planner.core.status import parse_job_time


def cache_path() -> Path:
    """Where parsed logs are cached between scans (shared by all experiments of a user)."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "plan-experiment" / "prior-runs.json"


def _job_seconds(job_dir: Path) -> float | None:
    try:
        data = json.loads((job_dir / "job-state.json").read_text())
        if data.get("state") != "COMPLETED":
            return None
        start, end = parse_job_time(data["started"]), parse_job_time(data["ended"])
        return (end - start).total_seconds() if start and end else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _model_of(run_dir: Path) -> tuple[str | None, int | None]:
    """Model folder name and parameter count of a run planned by us (finetune.yaml beside the log)."""
    try:
        cfg = yaml.safe_load((run_dir / "finetune.yaml").read_text())
        ckpt = Path(cfg["checkpointer"]["checkpoint_dir"])
        shape = model_shape_from_config(json.loads((ckpt / "config.json").read_text()))
        return ckpt.name, shape.param_count
    except (OSError, ValueError, KeyError, TypeError, RecipeError):
        return None, None


def prior_from_log(rec: LogRecord) -> PriorRun:
    """A PriorRun from a parsed log, enriched from the files around it when it is one of ours."""
    run_dir = Path(rec.path or ".").parent
    model, params = _model_of(run_dir)
    prior = PriorRun.from_record(rec, wall_seconds=_job_seconds(run_dir), param_count=params)
    if model:
        prior.model = model
    evals = run_dir / "eval"
    if evals.is_dir():
        prior.eval_seconds = [s for d in sorted(evals.iterdir()) if (s := _job_seconds(d)) is not None]
    return prior


def gather_priors(dirs: list[Path], log: DesignLog, now: Callable[[], datetime], use_cache: bool = True) -> tuple[ScanResult, list[PriorRun]]:
    """Scan ``dirs`` for slurm-*.out, log the search, return the usable prior runs."""
    dirs = [d for i, d in enumerate(dirs) if d.exists() and d not in dirs[:i]]
    result = scan(dirs, cache_path() if use_cache else None)
    usable = result.usable()
    names = ", ".join(Path(r.path or "?").parent.name for r in usable[:5]) + (" ..." if len(usable) > 5 else "")
    log.add(now(), "SEARCH_PRIOR_RUNS", "Looking for prior runs with training logs",
            command="find " + (" ".join(shlex.quote(str(d)) for d in dirs) or "(no folder exists)") + " -name 'slurm-*.out'",
            result=f"Found {len(result.records) + len(result.skipped)} logs: {len(usable)} usable ({names or 'none'}), "
                   f"{len(result.skipped)} skipped; {result.parsed} parsed, {result.cached} from cache in {result.seconds:.2f}s",
            explanation="Prior SLURM logs give measured speed, memory and checkpoint sizes for the estimates")
    for path, reason in result.skipped[:20]:
        log.add(now(), "SKIP_LOG", f"Not used: {path}", result=reason, explanation="Unreadable, empty, garbage or not a training log")
    return result, [prior_from_log(r) for r in usable]
