"""The prior-run index: logs found under the search folders, as PriorRuns for the estimator.

Parsed logs are cached by (path, size, mtime) so a rescan reads only what changed; runs
planned by this tool carry what the files around their log say (model size from
finetune.yaml's checkpoint, wall time and evaluation times from job-state.json,
checkpoint size from epoch_0/), read once and cached with the log
(:mod:`planner.adapters.run_folder`).
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from planner.adapters.prior_runs import ScanResult, scan
from planner.core.designlog import DesignLog
from planner.core.estimate import PriorRun


def cache_path() -> Path:
    """Where parsed logs are cached between scans (shared by all experiments of a user)."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "plan-experiment" / "prior-runs.pickle"


def gather_priors(dirs: list[Path], log: DesignLog, now: Callable[[], datetime], use_cache: bool = True) -> tuple[ScanResult, list[PriorRun]]:
    """Scan ``dirs`` for slurm-*.out, log the search, return the usable prior runs."""
    dirs = [d for i, d in enumerate(dirs) if d.exists() and d not in dirs[:i]]
    result = scan(dirs, cache_path() if use_cache else None)
    usable = result.priors()
    names = ", ".join(Path(p.name).parent.name for p in usable[:5]) + (" ..." if len(usable) > 5 else "")
    log.add(now(), "SEARCH_PRIOR_RUNS", "Looking for prior runs with training logs",
            command="find " + (" ".join(shlex.quote(str(d)) for d in dirs) or "(no folder exists)") + " -name 'slurm-*.out'",
            result=f"Found {len(result.records) + len(result.skipped)} logs: {len(usable)} usable ({names or 'none'}), "
                   f"{len(result.skipped)} skipped; {result.parsed} parsed, {result.cached} from cache in {result.seconds:.2f}s",
            explanation="Prior SLURM logs give measured speed, memory and checkpoint sizes for the estimates")
    for path, reason in result.skipped[:20]:
        log.add(now(), "SKIP_LOG", f"Not used: {path}", result=reason, explanation="Unreadable, empty, garbage or not a training log")
    return result, usable
