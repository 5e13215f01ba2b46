"""Size and name-length limits of a plan, checked by arithmetic before anything is expanded.

A grid of a million runs, or a billion epochs each evaluated, would otherwise be built in
memory before anyone is told; folder names longer than the filesystem allows would fail
halfway through writing. Both are refused up front with the limit and how to raise it.
"""

from __future__ import annotations

import math
from planner.spec.knobs import KNOBS
from planner.spec.localconfig import LimitSettings
from planner.spec.runs import Plan
from planner.spec.spec import ExperimentSpec

# What a job adds below its folder: the longest file name planned or written by a job.
_LONGEST_LEAF = len("/eval_config.yaml.") + len("slurm-") + 20 + len(".out")


def _epoch_levels(spec: ExperimentSpec) -> tuple[list[int], int]:
    """The epoch counts runs train, and how many runs share each (as a share of all runs)."""
    if "epochs" in spec.factors:
        return [int(e) for e in spec.factors["epochs"]], len(spec.factors["epochs"])
    if "epochs" in spec.paired:
        return [int(e) for e in spec.paired["epochs"]], len(spec.paired["epochs"])
    return [int(spec.controls.get("epochs", KNOBS["epochs"].default))], 1


def plan_size(spec: ExperimentSpec) -> tuple[int, int]:
    """Fine-tune runs plus controls, and an upper bound on evaluations, without expanding."""
    paired = len(next(iter(spec.paired.values()))) if spec.paired else 1
    finetune = len(spec.models) * paired * math.prod(len(v) for v in spec.factors.values()) * len(spec.replicates.seeds)
    controls = len(spec.models) if spec.base_model_controls else 0
    levels, share = _epoch_levels(spec)
    choice = spec.evaluation.epochs
    if choice == "all":
        per_run_total = finetune // share * sum(levels)  # each run evaluates every epoch it trains
    elif choice == "last":
        per_run_total = finetune
    else:
        per_run_total = finetune * len(set(choice))
    evaluations = 0
    for task in spec.evaluation.tasks:
        if task.runs is not None:
            evaluations += len(task.runs) * (max(levels) if choice == "all" else max(1, per_run_total // max(finetune, 1)))
        else:
            evaluations += per_run_total + (controls if task.base_model else 0)
    return finetune + controls, evaluations


def plan_size_problems(spec: ExperimentSpec, limits: LimitSettings) -> list[str]:
    """Refuse plans larger than the limits of claude.local.md (``limits:``)."""
    runs, evaluations = plan_size(spec)
    problems = []
    if runs > limits.max_runs:
        problems.append(
            f"the spec expands to {runs:,} runs, over the limit of {limits.max_runs:,}; vary fewer levels, "
            "or raise limits.max_runs in claude.local.md"
        )
    if evaluations > limits.max_evaluations:
        problems.append(
            f"the spec asks for up to {evaluations:,} evaluations, over the limit of {limits.max_evaluations:,}; "
            "evaluate fewer epochs (evaluation.epochs: last) or raise limits.max_evaluations in claude.local.md"
        )
    return problems


def name_length_problems(target: str, plan: Plan, name_max: int, path_max: int) -> list[str]:
    """Folder names (runs, evaluations) and the longest paths a plan writes, against the filesystem."""
    problems: list[str] = []

    def too_long(kind: str, name: str, fix: str) -> None:
        size = len(name.encode())
        if size > name_max:
            shown = name if len(name) <= 60 else name[:57] + "..."
            problems.append(f"{kind} {shown!r} is {size} bytes, over the {name_max} a folder name may have here; {fix}")

    for run in plan.runs:
        too_long("run name", run.name, "use shorter model folder names or fewer factors")
    seen: set[str] = set()
    for ev in plan.evaluations:
        if ev.name not in seen:
            seen.add(ev.name)
            too_long("evaluation folder", ev.name, "give the task a shorter name")
    if problems:
        return problems[:5] + ([f"... and {len(problems) - 5} more"] if len(problems) > 5 else [])
    longest_run = max((len(r.name.encode()) for r in plan.runs), default=0)
    longest_eval = max((len(e.name.encode()) for e in plan.evaluations), default=0)
    longest = len(target.encode()) + 1 + longest_run + len("/eval/") + longest_eval + _LONGEST_LEAF
    if longest > path_max:
        problems.append(
            f"the longest path in the experiment would be {longest} bytes, over the {path_max} allowed here; "
            "use a shorter --out or experiments_dir, experiment name, model folder or task name"
        )
    return problems

