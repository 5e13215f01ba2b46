"""Rendering: Jinja templates (templates/) turn a plan into the files of an experiment folder.

Templates hold layout only; every computation (durations, sizes, quoting, tables) is a
Python filter or a value prepared here, so templates stay readable and testable.
"""

from __future__ import annotations

import functools
import json
import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import jinja2

from planner import __version__
from planner.folder.compute import ComputeEstimates
from planner.spec.knobs import KNOBS, format_number
from planner.spec.loading import dump_block_mapping, dump_yaml
from planner.spec.localconfig import LocalSettings
from planner.folder.markdown import begin_marker, end_marker, md_cell, md_code, md_table, wrap_block
from planner.spec.resources import Resources
from planner.spec.runs import Evaluation, Plan, Run
from planner.jobs.time_request import signal_note
from planner.spec.units import duration, size, slurm_time_seconds
from planner.status.tables import (
    EVAL_BLOCK,
    FINETUNE_BLOCK,
    NOT_REFRESHED,
    REFRESH_BLOCK,
    eval_table,
    finetune_table,
    initial_rows,
)

ESTIMATES_BLOCK = "compute-estimates"
# The All Runs table shows each run's estimate, so `estimate` rewrites it with Compute Estimates.
ALL_RUNS_BLOCK = "all-runs"


def shquote(value: Any) -> str:
    """Quote one value for a POSIX shell (every user value in a script goes through this)."""
    return shlex.quote(str(value))


def shjoin(argv: list[Any]) -> str:
    """Quote and join an argument vector."""
    return " ".join(shquote(a) for a in argv)


def yaml_scalar(value: Any) -> str:
    """One YAML scalar, safely quoted, on one line (newlines kept as escapes)."""
    if isinstance(value, str):
        text = _STRINGS.get(value)
        if text is None:
            if len(_STRINGS) > 100_000:
                _STRINGS.clear()
            text = _STRINGS[value] = json.dumps(value, ensure_ascii=False)  # JSON strings are valid YAML scalars
        return text
    if isinstance(value, (bool, int, float)) or value is None:
        # Cached: 10,000 runs repeat a few values. The key is type and repr, because 1, 1.0
        # and true, or 0.0 and -0.0, are equal as keys but print differently.
        key = (type(value).__name__, repr(value))
        text = _NUMBERS.get(key)
        if text is None:
            text = _NUMBERS[key] = dump_yaml(value, default_flow_style=True, width=10**9).strip().removesuffix("...").strip()
        return text
    return dump_yaml(value, default_flow_style=True, width=10**9).strip().removesuffix("...").strip()


_NUMBERS: dict[tuple[str, str], str] = {}
_STRINGS: dict[str, str] = {}


def to_yaml(value: Any) -> str:
    """A block-style YAML document for a mapping."""
    if isinstance(value, dict):
        return dump_block_mapping(value, sort_keys=False, allow_unicode=True, width=100)
    return dump_yaml(value, sort_keys=False, allow_unicode=True, width=100)


def knob_value(name: str, value: Any) -> str:
    """A knob's value as shown in tables."""
    if value is None:
        return "all" if name == "train_samples" else "-"
    if isinstance(value, str):
        return repr(value) if name in ("system_prompt", "prompt") else value
    return format_number(value)


def make_environment(templates_dir: Path) -> jinja2.Environment:
    """The Jinja environment with the project's filters; undefined names are errors."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
        auto_reload=False,  # one process renders thousands of files: no mtime check per file
    )
    env.filters.update(
        duration=duration,
        size=size,
        shquote=shquote,
        shjoin=shjoin,
        md_cell=md_cell,
        md_code=md_code,
        yaml_scalar=yaml_scalar,
        to_yaml=to_yaml,
        knob=lambda value, name="": knob_value(name, value),
        number=format_number,
        plural=plural,
    )
    return env


@dataclass
class JobFiles:
    """What a job runs: prepared by the recipe registry and the CLI, rendered here."""

    finetune_configs: dict[str, dict[str, Any]]  # run name -> torchtune config
    training_argv: dict[str, list[str]]  # run name -> tune run ...
    training_shell: dict[str, str]  # the same as one shell line ($MASTER_ADDR etc. left to the shell)
    eval_configs: dict[str, dict[str, Any]]  # Evaluation.key -> eval config
    eval_argv: dict[str, list[str]]  # Evaluation.key -> python eval.py --config ...
    setup_lines: list[str] = field(default_factory=list)
    fallback_bin_dir: str = ""  # put on PATH when the setup lines leave `tune` unfound
    planner_python: str = ""  # the interpreter that planned: a job's refresh runs the planner with it
    env: dict[str, str] = field(default_factory=dict)
    python: str = "python"  # the jobs' interpreter (runs eval scripts and the training supervisor)


@dataclass
class RenderInput:
    """Everything the templates see."""

    plan: Plan
    resources: Resources
    estimates: ComputeEstimates
    settings: LocalSettings
    exp_dir: str
    created: datetime
    provenance: dict[str, Any]
    recipe_files: dict[str, str]  # fine-tune run -> recipes/<file>
    build_jobs: Callable[[Sequence[Run]], JobFiles]  # configs and commands of some runs (chunk by chunk)
    slurm: dict[str, Any]  # effective Slurm request (local settings overridden by resources)


def run_dir(exp_dir: str, run: Run) -> str:
    """Folder of a run inside the experiment."""
    return f"{_folder(exp_dir)}/{run.name}"


def eval_dir(exp_dir: str, ev: Evaluation) -> str:
    """Folder of an evaluation."""
    return f"{_folder(exp_dir)}/{ev.run}/eval/{ev.name}"


@functools.lru_cache(maxsize=16)
def _folder(exp_dir: str) -> str:
    # Normalised once (as pathlib would); run and evaluation names are single path
    # components (spec validation), so joining them with "/" is what pathlib would give.
    return str(Path(exp_dir)).rstrip("/")


def _variables(plan: Plan) -> list[tuple[str, str]]:
    spec = plan.spec
    rows: list[tuple[str, str]] = []
    if len(spec.models) > 1:
        rows.append(("model", ", ".join(spec.models)))
    for name, levels in spec.paired.items():
        rows.append((f"{name} (paired)", ", ".join(knob_value(name, v) for v in levels)))
    for name, levels in spec.factors.items():
        rows.append((name, ", ".join(knob_value(name, v) for v in levels)))
    if len(spec.replicates.seeds) > 1:
        rows.append(("seed (replicates)", ", ".join(str(s) for s in spec.replicates.seeds)))
    if spec.base_model_controls:
        rows.append(("base-model control", "yes (one per model)"))
    return rows


def _design_type(plan: Plan) -> str:
    spec = plan.spec
    dims = [len(v) for v in spec.factors.values()]
    if len(spec.models) > 1:
        dims.insert(0, len(spec.models))
    if spec.paired:
        dims.append(len(next(iter(spec.paired.values()))))
    if not dims:
        return "single condition"
    if len(dims) == 1:
        return f"parameter sweep ({dims[0]} levels)"
    return "×".join(str(d) for d in dims) + " factorial"


def _describe_knobs(plan: Plan) -> dict[str, str]:
    """Each knob as the Configuration section shows it: its value, or the levels it takes."""
    spec = plan.spec
    out: dict[str, str] = {}
    for name in KNOBS:
        if name in spec.factors:
            out[name] = ", ".join(knob_value(name, v) for v in spec.factors[name]) + " (varied)"
        elif name in spec.paired:
            out[name] = ", ".join(knob_value(name, v) for v in spec.paired[name]) + " (paired)"
        elif plan.runs:
            out[name] = knob_value(name, plan.runs[0].settings.get(name))
    return out


def _name_pattern(plan: Plan) -> str:
    spec = plan.spec
    parts = ["{model}"]
    for k in list(spec.paired) + list(spec.factors):
        label = KNOBS[k].label
        parts.append(f"{label}{{N}}" if k not in ("packed",) else "packed|unpacked")
    if len(spec.replicates.seeds) > 1:
        parts.append("seed{N}")
    return "_".join(parts)


def all_runs_table(plan: Plan, estimates: ComputeEstimates) -> str:
    """The All Runs table: every run, what it varies, and its estimated time."""
    varied = list(plan.spec.paired) + list(plan.spec.factors)
    shown = [k for k in ("lora_rank", "learning_rate", "batch_size") if k not in varied]
    columns = ["Run Name", "Model"] + [KNOBS[k].column for k in varied + shown] + ["Type", "Est. Time"]
    rows = []
    for run in plan.runs:
        est = estimates.for_run(run.name)
        if run.is_base:
            values = ["-" for _ in varied + shown]
            kind, time = "control (base model)", "-"
        else:
            values = [knob_value(k, run.settings.get(k)) for k in varied + shown]
            kind = "fine-tune"
            time = ("~" + duration(est.train_seconds)) if est else "-"
        rows.append([run.name, Path(run.model).name] + values + [kind, time])
    return md_table(columns, rows)


def _evaluation_matrix(inp: RenderInput) -> str:
    tasks = [t.name for t in inp.plan.spec.evaluation.tasks]
    rows = []
    for run in inp.plan.runs:
        cells = []
        for task in tasks:
            epochs = [e.epoch for e in inp.plan.evaluations_of(run.name) if e.task == task]
            if not epochs:
                cells.append("-")
            elif run.is_base:
                cells.append("✓")
            else:
                cells.append("✓ epoch " + ",".join(str(e) for e in epochs))
        note = "Base model" if run.is_base else ("All evals" if "-" not in cells else "Selective")
        rows.append([run.name] + cells + [note])
    return md_table(["Run Name"] + tasks + ["Notes"], rows)


def estimates_block(estimates: ComputeEstimates, gpus: int, env: jinja2.Environment, nodes: int = 1,
                    stop_before_limit: int = 120) -> str:
    """The Compute Estimates block: rendered on its own so ``estimate`` can refresh it.

    ``gpus`` is the spec's GPUs per node (0: CPU jobs), as given, not rounded up;
    ``stop_before_limit`` is the spec's ``resources.stop_before_limit``.
    """
    ctx = estimates_context(estimates, gpus, nodes, stop_before_limit)
    return env.get_template("compute_estimates.md.j2").render(est=estimates, ctx=ctx).strip()


def basis_lines(named: Sequence[tuple[str, str, str]]) -> list[tuple[str | None, str]]:
    """One line per distinct basis, each with the runs it applies to, in plan order.

    Args:
        named: ``(run, model, basis)`` of every fine-tune run; an empty basis is left out.

    Returns:
        ``(applies_to, basis)`` pairs; ``applies_to`` is None when every run shares the basis,
        the models when the basis covers all of their runs, else the runs (a few by name).
    """
    runs_of: dict[str, list[str]] = {}
    for run, model, _ in named:
        runs_of.setdefault(model, []).append(run)
    groups: dict[str, list[tuple[str, str]]] = {}
    for run, model, basis in named:
        if basis:
            groups.setdefault(basis, []).append((run, model))
    if len(groups) == 1 and len(next(iter(groups.values()))) == len(named):
        return [(None, next(iter(groups)))]
    out: list[tuple[str | None, str]] = []
    for basis, members in groups.items():
        models = list(dict.fromkeys(model for _, model in members))
        if sum(len(runs_of[m]) for m in models) == len(members):  # whole models
            label = ", ".join(Path(m).name for m in models)
        else:
            runs = [run for run, _ in members]
            label = ", ".join(runs[:3]) + (f" and {plural(len(runs) - 3, 'more run')}" if len(runs) > 3 else "")
        out.append((label, basis))
    return out


def estimates_context(est: ComputeEstimates, gpus: int, nodes: int = 1, stop_before_limit: int = 120) -> dict[str, Any]:
    """Per-model training totals, GPU hours, the bases and the time-limit warning, as the block shows them."""
    per_model = []
    for model, runs in est.by_model().items():
        each = max(r.train_seconds for r in runs)
        low = min(r.train_low_seconds for r in runs)
        per_model.append(
            {
                "model": Path(model).name,
                "each": each,
                "low": low,
                "count": len(runs),
                "total": sum(r.train_seconds for r in runs),
                "confidence": sorted({r.confidence for r in runs}),
                "job_each": max(r.job_seconds or r.train_seconds for r in runs),
                "startup": max(r.startup_seconds for r in runs),
                "saves": max(r.saves_seconds for r in runs),
            }
        )
    requests = sorted({r.time_request for r in est.runs if r.time_request}, key=slurm_time_seconds)
    return {
        "per_model": per_model,
        "compute_hours": est.compute_hours(gpus, nodes),
        # One line per distinct basis: a sweep of many runs mostly shares one.
        "basis_lines": basis_lines([(r.run, r.model, r.basis) for r in est.runs]),
        "job_basis_lines": basis_lines([(r.run, r.model, r.job_basis) for r in est.runs]),
        "signal_notes": list(dict.fromkeys(signal_note(t, stop_before_limit) for t in requests)),
    }


def _context(inp: RenderInput) -> dict[str, Any]:
    plan = inp.plan
    ft_rows, ev_rows = initial_rows(plan)
    return {
        **estimates_context(inp.estimates, plan.spec.resources.gpus, plan.spec.resources.nodes,
                            plan.spec.resources.stop_before_limit),
        "design_type": _design_type(plan),
        "name_pattern": _name_pattern(plan),
        "estimates_begin": begin_marker(ESTIMATES_BLOCK),
        "estimates_end": end_marker(ESTIMATES_BLOCK),
        "variables": md_table(["Factor", "Levels"], _variables(plan)) if _variables(plan) else "No factors varied.",
        "all_runs": wrap_block(ALL_RUNS_BLOCK, all_runs_table(plan, inp.estimates)),
        "evaluation_matrix": _evaluation_matrix(inp) if plan.spec.evaluation.tasks else "No evaluation tasks.",
        "refresh_status": wrap_block(REFRESH_BLOCK, NOT_REFRESHED),
        "finetune_status": wrap_block(FINETUNE_BLOCK, finetune_table(ft_rows)),
        "eval_status": wrap_block(EVAL_BLOCK, eval_table(ev_rows)),
        "run_dirs": {r.name: run_dir(inp.exp_dir, r) for r in plan.runs},
        "first_finetune": plan.finetune_runs[0] if plan.finetune_runs else None,
        "first_eval": plan.evaluations[0] if plan.evaluations else None,
        "eval_dirs": {e.key: eval_dir(inp.exp_dir, e) for e in plan.evaluations},
        "recipes": sorted(set(inp.recipe_files.values())),
        "describe": _describe_knobs(plan),
        "fixed": _held_fixed(plan),
    }


def _held_fixed(plan: Plan) -> dict[str, Any]:
    """Settings every fine-tune run shares: not what is varied, nor what follows it (alpha = 2 x rank)."""
    runs = plan.finetune_runs or plan.runs
    if not runs:
        return {}
    first = runs[0].settings
    varying = {k for r in runs for k, v in r.settings.items() if k == "seed" or repr(first.get(k)) != repr(v)}
    return {k: v for k, v in first.items() if k not in varying and k not in plan.spec.factors and k not in plan.spec.paired}


def plural(count: int, word: str) -> str:
    """``1 control``, ``2 controls``."""
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def render_summary(inp: RenderInput, env: jinja2.Environment) -> str:
    """experiment_summary.md."""
    return env.get_template("experiment_summary.md.j2").render(inp=inp, ctx=_context(inp), version=__version__)


def render_runs(inp: RenderInput, env: jinja2.Environment, start: int, stop: int) -> dict[str, str]:
    """The files of runs ``start`` to ``stop`` (plan order) and of their evaluations."""
    setup_t, finetune_t, train_t = (env.get_template(f"{n}.j2") for n in ("setup_finetune.yaml", "finetune.yaml", "train.sh"))
    eval_config_t, eval_t = env.get_template("eval_config.yaml.j2"), env.get_template("eval.sh.j2")
    files: dict[str, str] = {}
    runs = inp.plan.runs[start:stop]
    jobs = inp.build_jobs(runs)
    for run in runs:
        rdir = run_dir(inp.exp_dir, run)
        model = inp.resources.models[run.model]
        if not run.is_base:
            files[f"{run.name}/setup_finetune.yaml"] = setup_t.render(
                inp=inp, run=run, model=model, run_dir=rdir, slurm=inp.slurm, recipe=inp.recipe_files[run.name],
                version=__version__,
            )
            files[f"{run.name}/finetune.yaml"] = finetune_t.render(
                inp=inp, run=run, config=jobs.finetune_configs[run.name], run_dir=rdir,
                recipe=inp.recipe_files[run.name], argv=jobs.training_argv[run.name], version=__version__,
            )
            files[f"{run.name}/train.sh"] = train_t.render(
                inp=inp, run=run, run_dir=rdir, job_dir=rdir, command=jobs.training_shell[run.name], jobs=jobs,
                nodes=inp.plan.spec.resources.nodes, procs_per_node=max(inp.plan.spec.resources.gpus, 1),
                world_size=max(inp.plan.spec.resources.gpus, 1) * inp.plan.spec.resources.nodes,
                version=__version__,
            )
        for ev in inp.plan.evaluations_of(run.name):
            edir = eval_dir(inp.exp_dir, ev)
            rel = f"{run.name}/eval/{ev.name}"
            files[f"{rel}/eval_config.yaml"] = eval_config_t.render(
                inp=inp, ev=ev, run=run, config=jobs.eval_configs[ev.key], version=__version__,
            )
            files[f"{rel}/eval.sh"] = eval_t.render(
                inp=inp, ev=ev, run=run, eval_dir=edir, job_dir=edir, run_dir=rdir, argv=jobs.eval_argv[ev.key], jobs=jobs,
                version=__version__,
            )
    return files
