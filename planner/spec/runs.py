"""Run expansion: a spec becomes a deterministic list of runs and evaluations.

Order: models x paired levels x factorial (in the order the factors are written) x seeds,
then one base-model control per model. The same spec always gives the same runs with the
same names, so a re-plan or a ``submit --only NAME`` refers to the same thing.
"""

from __future__ import annotations

import collections
import functools
import itertools
import re
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any, Literal

from planner.spec.errors import ConfigError
from planner.spec.knobs import KNOBS, name_part
from planner.spec.spec import ExperimentSpec

_UNSAFE = re.compile(r"[/\x00-\x1f\x7f]")


@dataclass(frozen=True)
class Run:
    """One fine-tune run, or one base-model control (``kind == "base"``, nothing trained)."""

    name: str
    model: str
    kind: Literal["finetune", "base"]
    settings: dict[str, Any] = field(default_factory=dict)
    factors: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None

    @property
    def is_base(self) -> bool:
        """True for a base-model control."""
        return self.kind == "base"


@dataclass(frozen=True)
class Evaluation:
    """One evaluation: a run (or base model) on a task at an epoch (None for base models)."""

    run: str
    task: str
    epoch: int | None

    @property
    def name(self) -> str:
        """Folder name under ``<run>/eval/``."""
        return self.task if self.epoch is None else f"{self.task}_epoch{self.epoch}"

    @property
    def key(self) -> str:
        """Unique key inside an experiment: ``run/eval-name``."""
        return f"{self.run}/{self.name}"


@dataclass(frozen=True)
class Plan:
    """All runs and evaluations of one spec."""

    spec: ExperimentSpec
    runs: list[Run]
    evaluations: list[Evaluation]

    @property
    def finetune_runs(self) -> list[Run]:
        """Runs that train."""
        return [r for r in self.runs if not r.is_base]

    @property
    def base_runs(self) -> list[Run]:
        """Base-model controls."""
        return [r for r in self.runs if r.is_base]

    @functools.cached_property
    def _by_name(self) -> dict[str, Run]:
        return {r.name: r for r in self.runs}

    @functools.cached_property
    def _evaluations_by_run(self) -> dict[str, list[Evaluation]]:
        out: dict[str, list[Evaluation]] = {}
        for e in self.evaluations:
            out.setdefault(e.run, []).append(e)
        return out

    def run(self, name: str) -> Run:
        """Look a run up by name."""
        return self._by_name[name]

    def evaluations_of(self, run_name: str) -> list[Evaluation]:
        """The evaluations that belong to one run (indexed: plans of 10,000 runs ask per run)."""
        return list(self._evaluations_by_run.get(run_name, []))


def model_label(model: str) -> str:
    """The name a model goes by in run names: the last path component."""
    return PurePath(model.rstrip("/")).name or model


def safe_name(name: str) -> str:
    """Make a run name safe as a folder name: no '/', no control characters.

    Spaces, quotes and shell metacharacters stay: they are legal in folder names, and every
    generated script quotes them, so changing them would only confuse the user.
    """
    cleaned = _UNSAFE.sub("_", name)
    return "_" + cleaned if cleaned.startswith((".", "-")) else cleaned


def default_settings() -> dict[str, Any]:
    """Every knob at its default."""
    return {name: knob.default for name, knob in KNOBS.items()}


def _resolve(settings: dict[str, Any]) -> dict[str, Any]:
    """Fill derived defaults: LoRA alpha is 2 x rank unless given."""
    out = dict(settings)
    if out.get("lora_alpha") is None:
        out["lora_alpha"] = 2 * out["lora_rank"]
    return out


def expand(spec: ExperimentSpec) -> Plan:
    """Expand a validated spec into runs and evaluations.

    Raises:
        ConfigError: when two runs would get the same name (e.g. two models whose folders
            share a name).
    """
    base = default_settings()
    base.update(spec.controls)
    factor_names = list(spec.factors)
    factor_levels = [list(enumerate(spec.factors[k])) for k in factor_names]
    paired_names = list(spec.paired)
    paired_count = len(next(iter(spec.paired.values()))) if spec.paired else 1
    seeds = spec.replicates.seeds
    runs: list[Run] = []
    for model in spec.models:
        label = model_label(model)
        for p_index in range(paired_count):
            paired_values = {k: spec.paired[k][p_index] for k in paired_names}
            for combo in itertools.product(*factor_levels) if factor_names else [()]:
                values = {k: v for k, (_, v) in zip(factor_names, combo)}
                parts = [label]
                parts += [name_part(k, v, p_index) for k, v in paired_values.items()]
                parts += [name_part(k, v, i) for k, (i, v) in zip(factor_names, combo)]
                for seed in seeds:
                    settings = _resolve({**base, **paired_values, **values, "seed": seed})
                    name_parts = parts + ([f"seed{seed}"] if len(seeds) > 1 else [])
                    if len(name_parts) == 1:
                        name_parts.append("lora")  # a single-condition experiment
                    runs.append(
                        Run(
                            name=safe_name("_".join(name_parts)),
                            model=model,
                            kind="finetune",
                            settings=settings,
                            factors={**paired_values, **values},
                            seed=seed,
                        )
                    )
        if spec.base_model_controls:
            settings = _resolve(dict(base))
            settings["seed"] = seeds[0]
            runs.append(Run(name=safe_name(f"{label}_base"), model=model, kind="base", settings=settings))
    dupes = sorted(n for n, count in collections.Counter(r.name for r in runs).items() if count > 1)
    if dupes:
        raise ConfigError(
            f"run names collide: {dupes[:5]}; give models distinct folder names or vary a factor "
            "that appears in the name"
        )
    return Plan(spec=spec, runs=runs, evaluations=_evaluations(spec, runs))


def evaluated_epochs(spec: ExperimentSpec, run: Run) -> list[int]:
    """The 0-based epochs of a fine-tuned run that are evaluated."""
    epochs = int(run.settings["epochs"])
    choice = spec.evaluation.epochs
    if choice == "last":
        return [epochs - 1]
    if choice == "all":
        return list(range(epochs))
    return sorted(set(choice))


def _evaluations(spec: ExperimentSpec, runs: list[Run]) -> list[Evaluation]:
    evals: list[Evaluation] = []
    for run in runs:
        for task in spec.evaluation.tasks:
            if task.runs is not None and run.name not in task.runs:
                continue
            if run.is_base:
                if task.base_model:
                    evals.append(Evaluation(run=run.name, task=task.name, epoch=None))
                continue
            for epoch in evaluated_epochs(spec, run):
                evals.append(Evaluation(run=run.name, task=task.name, epoch=epoch))
    return evals
