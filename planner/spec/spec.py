"""The experiment spec (experiment.yaml): the structured source of truth of an experiment.

``load_spec`` validates a whole spec and reports every problem together, the way
torchtune's config validation does, so a user fixes a spec in one pass.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from planner.spec.errors import ConfigError
from planner.spec.knobs import KNOBS, check_knob, coerce_knob
from planner.spec.localconfig import slurm_mem_problem
from planner.spec.slurm_values import slurm_time_problem
from planner.spec.validation import describe_errors, nearest
from planner.spec.loading import MAX_NODES, dump_yaml, load_yaml, short_repr
from planner.spec.slurm_values import check_sbatch_value, sbatch_value_problem

_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")


# Longest experiment name: a folder name (255 bytes on common filesystems) less the
# ".replaced-YYYYmmdd-HHMMSS" suffix a --force backup adds.
MAX_NAME_BYTES = 230


def name_problem(value: str) -> str | None:
    """Why ``value`` cannot name an experiment (it becomes a folder name), or None."""
    if not value.strip():
        return "the experiment needs a name, e.g. cap_8L_lora_comparison_2025-10-22"
    if "/" in value or value in {".", ".."}:
        return "the name becomes a folder name: drop the '/'"
    if _CONTROL_CHARS.search(value):
        return "the name becomes a folder name: remove newlines and control characters"
    if len(value.encode()) > MAX_NAME_BYTES:
        return f"the name becomes a folder name: keep it under {MAX_NAME_BYTES + 1} bytes (it has {len(value.encode())})"
    return None


class _Strict(BaseModel):
    # Strict: "0", 1.0 or true are not silently read as the whole number 0 or 1; a
    # float field accepts only finite numbers.
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class DatasetSpec(_Strict):
    """Training data: one JSON file with train/validation/test splits."""

    path: str
    input_column: str = "input"
    output_column: str = "output"


class MetricSpec(_Strict):
    """How ``analyze`` reads one metric of a task (docs/analysis.md)."""

    higher_is_better: bool = True
    kind: Literal["binary", "bounded", "unbounded"] = "bounded"  # bounded: a share in [0, 1]


class TaskSpec(_Strict):
    """One evaluation task: a folder under tasks/ or any script implementing tasks/README.md."""

    name: str
    script: str
    dataset: str | None = None
    split: str = "test"
    description: str = ""
    limit: int | None = Field(default=None, gt=0)
    max_new_tokens: int = Field(default=32, gt=0)
    runs: list[str] | None = None  # restrict to these runs (selective evaluation matrix)
    base_model: bool = True  # evaluate base-model controls on this task
    metrics: dict[str, MetricSpec] = Field(default_factory=dict)  # direction and range of metrics (analyze)

    @field_validator("name")
    @classmethod
    def _safe_name(cls, value: str) -> str:
        if not value or "/" in value or _CONTROL_CHARS.search(value) or value in {".", ".."}:
            raise ValueError("task names become folder names: no '/', no control characters, not empty")
        if len(value.encode()) > 200:
            raise ValueError("task names become folder names: keep them under 200 bytes")
        return value


class EvaluationSpec(_Strict):
    """Which tasks, and which epochs of each fine-tuned run, are evaluated."""

    tasks: list[TaskSpec] = Field(default_factory=list)
    epochs: Literal["last", "all"] | list[int] = "last"

    @field_validator("epochs")
    @classmethod
    def _epochs(cls, value: Any) -> Any:
        if isinstance(value, list):
            if not value:
                raise ValueError("an empty list evaluates nothing; use last, all or e.g. [0, 1]")
            if any(isinstance(e, bool) or not isinstance(e, int) or e < 0 for e in value):
                raise ValueError("epochs are 0-based whole numbers (epoch_0 is the first)")
        return value


class ReplicatesSpec(_Strict):
    """Seeds: each fine-tune condition runs once per seed."""

    seeds: list[int] = Field(default_factory=lambda: [42])

    @field_validator("seeds")
    @classmethod
    def _unique(cls, value: list[int]) -> list[int]:
        if not value:
            raise ValueError("give at least one seed, e.g. [42]")
        if len(set(value)) != len(value):
            raise ValueError("seeds repeat; every replicate needs its own seed")
        return value


class ResourcesSpec(_Strict):
    """Per-job resources; unset Slurm fields fall back to claude.local.md."""

    gpus: int = Field(default=1, ge=0)
    nodes: int = Field(default=1, ge=1)
    time: str | None = None  # None: not given, claude.local.md then auto decide (planner.jobs.time_request)
    eval_time: str | None = None
    account: str | None = None
    partition: str | None = None
    constraint: str | None = None
    qos: str | None = None
    cpus_per_task: int | None = Field(default=None, ge=1)
    mem: str | None = None
    array_parallelism: int | None = Field(default=None, ge=1)
    # Recovery without a person (docs/spec.md, "Recovery"): the jobs themselves act on these.
    oom_retries: int = Field(default=3, ge=0, le=16)
    attempts: int = Field(default=3, ge=1, le=20)
    resume: bool = True
    stop_before_limit: int = Field(default=120, ge=0, le=3600)

    @field_validator("account", "partition", "constraint", "qos", "mem")
    @classmethod
    def _sbatch_value(cls, value: str | None, info: ValidationInfo) -> str | None:
        return check_sbatch_value(str(info.field_name), value)

    @field_validator("time", "eval_time")
    @classmethod
    def _time(cls, value: str | None) -> str | None:
        if value is None or value == "auto":
            return value
        problem = slurm_time_problem(value) or sbatch_value_problem("time", value)
        if problem:
            raise ValueError(f"{problem}; or auto")
        return value

    @field_validator("mem")
    @classmethod
    def _mem(cls, value: str | None) -> str | None:
        problem = None if value is None else slurm_mem_problem(value)
        if problem:
            raise ValueError(problem)
        return value


class ExperimentSpec(_Strict):
    """A whole experiment: what is varied, what is held fixed, how it is evaluated."""

    name: str
    question: str = ""
    models: list[str]
    dataset: DatasetSpec
    factors: dict[str, list[Any]] = Field(default_factory=dict)
    paired: dict[str, list[Any]] = Field(default_factory=dict)
    replicates: ReplicatesSpec = Field(default_factory=ReplicatesSpec)
    base_model_controls: bool = True
    controls: dict[str, Any] = Field(default_factory=dict)
    evaluation: EvaluationSpec = Field(default_factory=EvaluationSpec)
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec)
    # Written by the planner; read back only to keep it when a plan is re-rendered.
    provenance: dict[str, Any] | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        problem = name_problem(value)
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("models")
    @classmethod
    def _models(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("list at least one model (a name under models_dir, or a path)")
        if len(set(value)) != len(value):
            raise ValueError("a model is listed twice")
        if any(_CONTROL_CHARS.search(m) or not m.strip() for m in value):
            raise ValueError("model names must be non-empty and free of control characters")
        return value

    @model_validator(mode="before")
    @classmethod
    def _coerce_numbers(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        for section in ("factors", "paired"):
            levels = data.get(section)
            if isinstance(levels, dict):
                data[section] = {
                    k: [coerce_knob(k, v) for v in vs] if isinstance(vs, list) else vs
                    for k, vs in levels.items()
                }
        controls = data.get("controls")
        if isinstance(controls, dict):
            data["controls"] = {k: coerce_knob(k, v) for k, v in controls.items()}
        return data


def knob_problems(spec: ExperimentSpec) -> list[str]:
    """Check factors, paired factors and controls against the knob table; collect all problems."""
    problems: list[str] = []
    valid = sorted(KNOBS)
    seen: dict[str, str] = {}

    def unknown(section: str, key: str) -> str:
        guess = nearest(key, valid)
        hint = f"did you mean '{guess}'?" if guess else f"valid knobs: {', '.join(valid)}"
        return f"{section}.{key}: unknown knob; {hint}"

    for section, mapping in (("factors", spec.factors), ("paired", spec.paired)):
        for key, levels in mapping.items():
            if key not in KNOBS:
                problems.append(unknown(section, key))
                continue
            if key in seen:
                problems.append(f"{section}.{key}: already set in {seen[key]}; set each knob in one place")
            seen[key] = section
            if not isinstance(levels, list) or not levels:
                problems.append(f"{section}.{key}: give a non-empty list of levels (got {short_repr(levels)})")
                continue
            for level in levels:
                issue = check_knob(key, level)
                if issue:
                    problems.append(f"{section}.{key}: level {short_repr(level)} {issue}")
            if len({repr(v) for v in levels}) != len(levels):
                problems.append(f"{section}.{key}: a level is listed twice (got {short_repr(levels)})")
    lengths = {k: len(v) for k, v in spec.paired.items() if isinstance(v, list)}
    if len(set(lengths.values())) > 1:
        problems.append(
            f"paired: factors that vary together need the same number of levels (got {lengths}); "
            "make the lists equally long"
        )
    for key, value in spec.controls.items():
        if key not in KNOBS:
            problems.append(unknown("controls", key))
            continue
        if key in seen:
            problems.append(f"controls.{key}: also varied in {seen[key]}; remove it from one of them")
        issue = check_knob(key, value)
        if issue:
            problems.append(f"controls.{key}: {short_repr(value)} {issue}")
    epochs = spec.evaluation.epochs
    if isinstance(epochs, list):
        all_epochs = spec.factors.get("epochs") or spec.paired.get("epochs") or [spec.controls.get("epochs", KNOBS["epochs"].default)]
        ints = [e for e in all_epochs if isinstance(e, int) and not isinstance(e, bool)]
        fewest = min(ints) if ints else 1
        too_big = [e for e in epochs if e >= fewest]
        if too_big:
            problems.append(
                f"evaluation.epochs: {too_big} not trained by every run (the shortest trains "
                f"{fewest} epoch(s): epoch_0..epoch_{fewest - 1}); use indexes below {fewest}"
            )
    names = [t.name for t in spec.evaluation.tasks]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        problems.append(f"evaluation.tasks: task name(s) {dupes} listed twice; give each task its own name")
    if spec.resources.gpus == 0 and spec.resources.nodes > 1:
        problems.append("resources.nodes: several nodes need gpus >= 1 per node")
    return problems


def parse_spec(data: Any, source: str) -> ExperimentSpec:
    """Validate a loaded spec mapping; raise one ConfigError listing every problem."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: an experiment spec is a YAML mapping (name:, models:, ...), got {type(data).__name__}; "
                          "start from examples/capitalization/experiment.yaml")
    try:
        spec = ExperimentSpec.model_validate(data)
    except ValidationError as exc:
        problems = describe_errors(exc, ExperimentSpec, source)
        # Knob problems are found even when other keys are wrong, so all show up together.
        partial = {k: data[k] for k in ("factors", "paired", "controls") if isinstance(data.get(k), dict)}
        try:
            extra = knob_problems(ExperimentSpec.model_construct(**{**_DEFAULTS(), **partial}))
        except Exception:  # noqa: BLE001 - best effort: the pydantic problems are already reported
            extra = []
        problems += [f"{source}: {p}" for p in extra]
        raise ConfigError(f"{source}: {len(problems)} problem(s) in the experiment spec", problems)
    problems = [f"{source}: {p}" for p in knob_problems(spec)]
    if problems:
        raise ConfigError(f"{source}: {len(problems)} problem(s) in the experiment spec", problems)
    return spec


def _DEFAULTS() -> dict[str, Any]:  # noqa: N802 - a constant built on demand
    return {
        "factors": {},
        "paired": {},
        "controls": {},
        "evaluation": EvaluationSpec(),
        "resources": ResourcesSpec(),
    }


def load_spec_text(text: str, source: str, max_nodes: int = MAX_NODES) -> ExperimentSpec:
    """Parse YAML text of an experiment spec (see planner.spec.loading for what is refused)."""
    return parse_spec(load_yaml(text, source, max_nodes=max_nodes), source)


def spec_to_yaml(spec: ExperimentSpec) -> str:
    """Serialise a spec with the keys in the documented order."""
    data = spec.model_dump(mode="json", exclude_none=False)
    if data.get("provenance") is None:
        data.pop("provenance", None)
    for task in data.get("evaluation", {}).get("tasks", []):
        # Written only when declared: plans made before metrics could be declared read the same.
        if not task.get("metrics"):
            task.pop("metrics", None)
    return dump_yaml(data, sort_keys=False, allow_unicode=True, width=100)
