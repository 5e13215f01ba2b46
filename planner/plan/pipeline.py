"""The planning pipeline of ``new``: verify, estimate, build job files, render, stage, commit.

``prepare`` writes the whole folder, but hidden: into a temporary sibling of the
experiment folder (``planner.folder.atomic.stage``), so that a 10,000-run plan is written
by the processes that render it, while they render. The plan is shown and approved
before ``write`` renames that folder into place; ``discard`` removes it when the plan is
declined or anything fails. Until then no experiment folder exists.
"""

from __future__ import annotations

import os
import shutil
import sys
from functools import partial
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

from planner import paths
from planner.runtime import can_fork, gc_paused, in_children, usable_cpus
from planner.folder.atomic import (
    Staged,
    check_output_root,
    commit,
    discard,
    ensure_absent,
    filesystem_limits,
    remove_stale_partials,
    staging,
    write_files,
)
from planner.estimate.experiment_index import register, registered_report, skipped_folders
from planner.estimate.priors import estimate_from_prior_runs
from planner.plan.provenance import provenance
from planner.plan.verify import verify
from planner.folder.compute import ComputeEstimates, EstimatesFile
from planner.folder.designlog import DesignLog
from planner.plan.job_files import JobEnvironment, build_job_files, recipe_files_of
from planner.spec.localconfig import LocalSettings, SlurmSettings
from planner.plan.render import RenderInput, make_environment, plural, render_runs, render_summary
from planner.spec.resources import Resources
from planner.spec.runs import Plan, expand
from planner.spec.spec import ExperimentSpec, spec_to_yaml
from planner.spec.errors import ConfigError
from planner.plan.limits import name_length_problems, plan_size_problems
from planner.jobs import slurm_query
from planner.jobs.slurm_query import plan_device
from planner.spec.commands import command_line
from planner.spec.units import slurm_time_seconds
from planner.jobs.time_request import format_slurm_time, is_explicit, signal_note, train_time_request


@dataclass
class PreparedExperiment:
    """A verified, estimated plan, written to a hidden staging folder; ``write`` makes it the experiment."""

    target: Path
    plan: Plan
    resources: Resources
    estimates: ComputeEstimates
    staged: Staged
    log: DesignLog
    spec: ExperimentSpec
    removed_partials: list[Path]


def effective_slurm(spec: ExperimentSpec, slurm: SlurmSettings, estimates: ComputeEstimates | None) -> dict[str, Any]:
    """The Slurm request of a fine-tune job: local defaults overridden by the spec's resources."""
    res = spec.resources
    out: dict[str, Any] = slurm.model_dump()
    for key in ("account", "partition", "constraint", "qos", "cpus_per_task", "mem", "array_parallelism"):
        value = getattr(res, key)
        if value is not None:
            out[key] = value
    out["gpus"] = res.gpus
    out["nodes"] = res.nodes
    if res.eval_time:
        out["eval_time"] = res.eval_time
    requests = [r.time_request for r in estimates.runs if r.time_request] if estimates is not None else []
    if requests:
        out["time"] = max(requests, key=slurm_time_seconds)
    else:
        out["time"] = train_time_request(res.time, slurm.time, None, None, res.stop_before_limit).time
    return out


def job_cores(spec: ExperimentSpec, settings: LocalSettings) -> int:
    """CPU cores one process of a fine-tune job gets (the cost model's peak of a CPU job)."""
    cores = spec.resources.cpus_per_task or settings.slurm.cpus_per_task
    # Several CPU processes per node share the job's cores (gloo: one process per "GPU").
    return max(1, int(cores))


def apply_time_requests(spec: ExperimentSpec, slurm: SlurmSettings, estimates: ComputeEstimates, log: DesignLog,
                        now: Callable[[], datetime]) -> ComputeEstimates:
    """Fill in each run's time request (spec, then claude.local.md, then auto capped by MaxTime); log caps and overruns."""
    # Only auto needs the partition's limit: an explicit time is never changed.
    max_time_s = None if is_explicit(spec.resources.time, slurm.time) else slurm_query.partition_max_time(spec.resources.partition or slurm.partition)
    runs = []
    capped = []
    for r in estimates.runs:
        req = train_time_request(spec.resources.time, slurm.time, r.slurm_time, max_time_s, spec.resources.stop_before_limit)
        runs.append(replace(r, time_request=req.time, time_source=req.source))
        if req.capped:
            capped.append(r)
    if capped:
        log.add(now(), "WARNING", "Time request capped by the partition's MaxTime",
                input=f"MaxTime {format_slurm_time(max_time_s or 0)} (scontrol show partition)",
                result=f"{len(capped)} run(s) would ask for more than the partition allows: "
                       + ", ".join(f"{r.run} {r.slurm_time}" for r in capped[:5]) + (" ..." if len(capped) > 5 else ""),
                decision=f"ask for {format_slurm_time(max_time_s or 0)}",
                explanation="A job asking for more than MaxTime is refused or pends forever; it may now hit its time limit")
    stop = spec.resources.stop_before_limit
    requests = sorted({r.time_request for r in runs}, key=slurm_time_seconds)
    if requests:
        sources = sorted({r.time_source for r in runs})
        log.add(now(), "DECIDE_TIME_REQUEST", "Time request and warning before the limit",
                decision="; ".join(f"--time={t}, {signal_note(t, stop)}" for t in requests),
                reasoning=f"the time from {'; '.join(sources)}",
                explanation="Slurm warns a training job this long before its limit (and may do so up to a minute "
                            "early): the job stops and requeues itself to resume from its last saved epoch. The "
                            "warning is resources.stop_before_limit, at most a quarter of the limit, so it never "
                            "comes as the training starts")
    over = [r for r in runs if r.over_request]
    if over:
        log.add(now(), "WARNING", "Estimate longer than the time request",
                result=", ".join(f"{r.run}: ~{(r.job_seconds or r.train_seconds) / 60:.0f} min > {r.time_request}" for r in over[:5])
                + (" ..." if len(over) > 5 else ""),
                explanation=f"Likely to hit the time limit; the request comes from {over[0].time_source}")
    return replace(estimates, runs=runs)


def job_environment(settings: LocalSettings) -> JobEnvironment:
    """Setup lines from claude.local.md; the planner's own interpreter folder as the fallback."""
    return JobEnvironment(setup_lines=list(settings.environment.setup), fallback_bin_dir=str(Path(sys.executable).parent),
                          cpu_only=settings.slurm.cpu_only, planner_python=sys.executable)


def prepare(
    spec: ExperimentSpec,
    spec_dir: Path,
    settings: LocalSettings,
    settings_path: Path,
    out_dir: Path | None,
    force: bool,
    argv: list[str],
    now: Callable[[], datetime],
) -> PreparedExperiment:
    """Verify, estimate and render a plan into a hidden staging folder (nothing is written before verification passes)."""
    with gc_paused():  # tens of thousands of rendered texts and dicts: nothing cyclic to collect
        return _prepare(spec, spec_dir, settings, settings_path, out_dir, force, argv, now)


def _prepare(spec: ExperimentSpec, spec_dir: Path, settings: LocalSettings, settings_path: Path, out_dir: Path | None,
             force: bool, argv: list[str], now: Callable[[], datetime]) -> PreparedExperiment:
    root = (out_dir or Path(settings.experiments_dir)).expanduser()
    target = (root / spec.name).absolute()
    too_big = plan_size_problems(spec, settings.limits)
    if too_big:
        raise ConfigError(f"{len(too_big)} size limit(s) exceeded; nothing was written", too_big)
    check_output_root(target.parent, "--out" if out_dir is not None else "experiments_dir")
    ensure_absent(target, force)
    # What a `new` killed part-way left behind here (only ours, only when its writer is gone).
    removed = remove_stale_partials(target.parent)
    log = DesignLog()
    log.add(now(), "DECIDE_NAMING", "Experiment name chosen", decision=spec.name,
            reasoning="From the experiment spec", explanation=f"The experiment folder is {target}")
    plan = expand(spec)
    too_long = name_length_problems(str(target), plan, *filesystem_limits(target.parent))
    if too_long:
        raise ConfigError(f"{len(too_long)} name(s) too long for the filesystem; nothing was written", too_long)
    log.add(now(), "DECIDE_RUNS", "Run expansion",
            decision=f"{plural(len(plan.finetune_runs), 'fine-tune run')} + {plural(len(plan.base_runs), 'base-model control')}, "
                     f"{plural(len(plan.evaluations), 'evaluation')}",
            reasoning=f"models ({len(spec.models)}) x paired levels x factorial over {list(spec.factors) or 'no factors'} x {len(spec.replicates.seeds)} seed(s)",
            explanation="Deterministic: the same spec always gives the same run names")
    resources = verify(spec, settings, spec_dir, paths.PROJECT_ROOT, root, log, now)
    # The same estimation as `plan-experiment estimate`: prior logs first (the user's folders and
    # every experiment planned before, wherever it was written), fallback ranges otherwise.
    index = registered_report()
    _, _, estimates = estimate_from_prior_runs(plan, resources,
                                               [Path(settings.scratch_dir), Path(settings.experiments_dir), *index.folders],
                                               log, now, plan_device(settings, spec), gone=skipped_folders(index),
                                               cores=job_cores(spec, settings))
    recipe_texts = {p.name: p.read_text(encoding="utf-8") for p in paths.RECIPES_DIR.glob("*.yaml")}
    # Each run's configs and commands are built where its files are rendered (forked processes for large plans).
    build_jobs = partial(build_job_files, plan, resources, str(target), recipe_texts, job_environment(settings))
    recipe_files = recipe_files_of(plan, resources)
    for rfile in sorted(set(recipe_files.values())):
        log.add(now(), "DECIDE_RECIPE", "Recipe selection", decision=rfile,
                reasoning=f"{spec.resources.gpus} GPU(s) x {spec.resources.nodes} node(s); model family from config.json",
                explanation="Adapter-only checkpoints; torchtune config rendered per run as finetune.yaml")
    stamp = now()
    # gpu_memory_gib is recorded only where the user wrote it: unwritten, each device's own memory counts
    # (planner.spec.device_choice), and estimate, reading the record back, must see it unwritten too.
    unwritten = set() if "gpu_memory_gib" in settings.model_fields_set else {"gpu_memory_gib"}
    prov = provenance(stamp, settings_path, settings.model_dump(exclude=unwritten), argv)
    prov["spec_dir"] = str(spec_dir)  # relative model, dataset and script paths were read from here
    recorded = spec.model_copy(update={"provenance": prov})
    estimates = apply_time_requests(spec, settings.slurm, estimates, log, now)
    slurm = effective_slurm(spec, settings.slurm, estimates)
    env = make_environment(paths.TEMPLATES_DIR)
    inp = RenderInput(plan=plan, resources=resources, estimates=estimates, settings=settings, exp_dir=str(target),
                      created=stamp, provenance=prov, recipe_files=recipe_files, build_jobs=build_jobs, slurm=slurm)

    def experiment_files(folder: Path) -> None:
        # The experiment's own files, written while the run files are (by other processes, for large plans).
        files = {"experiment_summary.md": render_summary(inp, env)}
        files["experiment.yaml"] = (
            f"# Experiment spec as planned by plan-experiment {prov['planner_version']} on {prov['planned_at']}.\n"
            "# The source of truth: submit and status read this file, never the markdown.\n" + spec_to_yaml(recorded)
        )
        files["estimates.json"] = EstimatesFile.of(estimates).to_json()
        log.add(now(), "CREATE_SUMMARY", "Writing experiment plan", command=f"Created {target / 'experiment_summary.md'}",
                result=f"File created with {len(plan.runs)} runs ({len(plan.finetune_runs)} fine-tuned + {plural(len(plan.base_runs), 'control')}); "
                       f"{len(plan.finetune_runs)} setup_finetune.yaml + finetune.yaml, {len(plan.evaluations)} eval configs",
                explanation="Comprehensive experiment plan with all configurations and status tracking")
        log.add(now(), "COMPLETE", "Experiment design finished", status="Ready for review and submission",
                next_steps=f"review experiment_summary.md, then `{command_line('plan-experiment', 'submit', target)}`",
                explanation="Planning phase complete, documented in summary and this log")
        files["design-experiment.log"] = log.render()
        write_files(folder, files)

    with staging(target) as staged:
        render_files(inp, env, staged.folder, partial(experiment_files, staged.folder))
    return PreparedExperiment(target=target, plan=plan, resources=resources, estimates=estimates, staged=staged, log=log,
                              spec=recorded, removed_partials=removed)


#: Plans from this many runs render and write their files in several processes. Each
#: child costs a fork and nothing else (no text comes back): on 2 cores, 100 runs take
#: 0.25 s instead of 0.37 s, 1,000 runs 1.5 s instead of 2.2 s.
PARALLEL_RENDER_RUNS = 100
#: Runs rendered before their files are written: a process holds this many runs' texts at a time.
WRITE_BATCH_RUNS = 250


def render_files(inp: RenderInput, env: Any, folder: Path, meanwhile: Callable[[], None]) -> None:
    """Render every run's files and write them under ``folder``, running ``meanwhile()`` (the summary) here.

    Rendering a run's files (its torchtune configs, Jinja templates, YAML) is pure CPU and
    independent of every other run's; writing them is mostly the kernel's time. On 10,000
    runs both are most of ``new``'s time, so large plans split the runs over forked
    processes, one per usable CPU, each rendering and writing its stretch of runs (the
    children inherit the plan by ``fork``: nothing is pickled either way) while this
    process writes the experiment's own files. Small plans do both in this process.
    """
    runs = len(inp.plan.runs)
    workers = min(usable_cpus(), 8)
    if runs < PARALLEL_RENDER_RUNS or not can_fork(workers):
        meanwhile()
        write_runs(inp, env, folder, 0, runs)
        return
    bounds = [(runs * i // workers, runs * (i + 1) // workers) for i in range(workers)]
    in_children([partial(write_runs, inp, env, folder, start, stop) for start, stop in bounds], meanwhile)


def write_runs(inp: RenderInput, env: Any, folder: Path, start: int, stop: int) -> int:
    """Render runs ``start`` to ``stop`` (plan order) and write their files under ``folder``; return how many.

    A few hundred runs at a time, so that no process holds a whole plan's texts. When a
    forked child died part-way, this process does its stretch again: whatever the child
    left of those runs is removed first (files are only ever created new).
    """
    for run in inp.plan.runs[start:stop]:
        left = folder / run.name
        if os.path.lexists(left):
            if left.is_dir() and not left.is_symlink():
                shutil.rmtree(left)
            else:
                left.unlink()
    written = 0
    for low in range(start, stop, WRITE_BATCH_RUNS):
        files = render_runs(inp, env, low, min(low + WRITE_BATCH_RUNS, stop))
        write_files(folder, files)
        written += len(files)
    return written


def staged_files(prepared: PreparedExperiment) -> dict[str, str]:
    """The files ``prepared`` will make the experiment folder, by relative path (sorted): what reviews and tests read."""
    root = prepared.staged.folder
    return {str(p.relative_to(root)): p.read_text(encoding="utf-8") for p in sorted(root.rglob("*")) if p.is_file()}


def write(prepared: PreparedExperiment, force: bool, now: datetime) -> Path | None:
    """Make the staged folder the experiment (one rename) and register it for learning; return the backup of a replaced folder."""
    backup = commit(prepared.staged, force, now)
    register(prepared.target)  # its runs, once finished, are priors for the next plan
    return backup


def abandon(prepared: PreparedExperiment) -> None:
    """Remove what ``prepare`` staged, unless ``write`` has made it the experiment (then: nothing)."""
    discard(prepared.staged)
