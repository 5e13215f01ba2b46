"""``estimate``: search prior runs, turn their logs into PriorRuns, re-estimate a plan.

Every search, extraction and calculation goes into design-experiment.log, appended under
the experiment's lock, so the log tells why the figures are what they are.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Callable

from planner import paths
from planner.folder.experiment import Experiment
from planner.folder.atomic import atomic_write_text
from planner.estimate.experiment_index import registered_report, skipped_folders
from planner.jobs.slurm_query import plan_device
from planner.plan.pipeline import apply_time_requests, job_cores
from planner.estimate.priors import estimate_from_prior_runs
from planner.estimate.prior_scan import ScanResult
from planner.plan.verify import verify
from planner.folder.compute import ESTIMATES, ComputeEstimates, EstimatesFile
from planner.folder.designlog import DesignLog
from planner.estimate.estimators import PriorRun
from planner.spec.localconfig import LocalSettings
from planner.folder.markdown import begin_marker
from planner.plan.render import ALL_RUNS_BLOCK, ESTIMATES_BLOCK, all_runs_table, estimates_block, make_environment

@dataclass
class EstimateOutcome:
    """What ``estimate`` found and computed."""

    scan: ScanResult
    priors: list[PriorRun]
    estimates: ComputeEstimates
    dirs: list[Path]


def settings_of(exp: Experiment) -> LocalSettings:
    """The local settings the experiment was planned with."""
    recorded = (exp.spec.provenance or {}).get("local_settings")
    if not recorded:
        from planner.spec.errors import ConfigError

        raise ConfigError(f"{exp.path}/experiment.yaml: no recorded local settings; pass --local-config")
    return LocalSettings.model_validate(recorded)


def run_estimate(exp: Experiment, settings: LocalSettings, extra_dirs: list[Path], now: Callable[[], datetime],
                 use_cache: bool = True) -> EstimateOutcome:
    """Scan prior runs, re-estimate, rewrite Compute Estimates, estimates.json and the log."""
    # The experiment itself comes first: its finished runs are the best priors for its other runs.
    # Then every experiment the user planned (the index new keeps), wherever it was written.
    index = registered_report()
    # A folder asked for by name that is not there is worth saying (a typo, an unmounted disk).
    missing = [(d, "the folder does not exist") for d in extra_dirs if not d.exists()]
    dirs = [exp.path, Path(settings.scratch_dir), Path(settings.experiments_dir), *extra_dirs, *index.folders]
    log = DesignLog()
    spec_dir = Path((exp.spec.provenance or {}).get("spec_dir") or exp.path)
    resources = verify(exp.spec, settings, spec_dir, paths.PROJECT_ROOT, exp.path.parent, DesignLog(), now)
    result, priors, estimates = estimate_from_prior_runs(exp.plan, resources, dirs, log, now,
                                                         plan_device(settings, exp.spec), use_cache,
                                                         [*missing, *skipped_folders(index)], cores=job_cores(exp.spec, settings))
    estimates = apply_time_requests(exp.spec, settings.slurm, estimates, log, now)
    submitted = exp.read_journal().recorded_predictions()
    if submitted:
        estimates.notes.append(
            f"Re-estimated {now().strftime('%Y-%m-%d %H:%M')}: the figures above are new. The {len(submitted)} job(s) "
            "already submitted keep the prediction they were submitted with in journal.json; status and "
            "`estimate --calibrate` compare with those."
        )
    block = estimates_block(estimates, exp.spec.resources.gpus, make_environment(paths.TEMPLATES_DIR), exp.spec.resources.nodes,
                            exp.spec.resources.stop_before_limit)
    blocks = {ESTIMATES_BLOCK: block}
    with exp.lock():
        # Summaries planned before the All Runs table was a marked block keep their table as is.
        if begin_marker(ALL_RUNS_BLOCK) in (exp.path / "experiment_summary.md").read_text(encoding="utf-8"):
            blocks[ALL_RUNS_BLOCK] = all_runs_table(exp.plan, estimates)
        exp.update_summary_blocks(blocks)
        atomic_write_text(exp.path / ESTIMATES, EstimatesFile.of(estimates).to_json())
        with open(exp.path / "design-experiment.log", "a", encoding="utf-8") as handle:
            handle.write(log.render())
    return EstimateOutcome(scan=result, priors=priors, estimates=estimates, dirs=dirs)
