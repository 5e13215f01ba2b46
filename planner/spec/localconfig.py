"""Local settings: a user's cluster defaults, read from the one ```yaml block of claude.local.md.

People read the prose of ``claude.local.md``; the program reads only its fenced YAML block,
so the prose can say anything without breaking the parser.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable
from pathlib import PurePath
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from planner.spec.errors import ConfigError
from planner.spec.validation import describe_errors
from planner.spec.loading import load_yaml, short_repr
from planner.spec import slurm_values
from planner.spec.slurm_values import slurm_time_problem
from planner.spec.hardware import DEVICES, find_device

_FENCE = re.compile(r"^```ya?ml[ \t]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
# Slurm's --mem: a whole number with an optional unit (K, M, G, T; M when none).
SLURM_MEM = re.compile(r"^[1-9]\d{0,9}[KMGT]?$")


def slurm_mem_problem(value: str) -> str | None:
    """Why ``value`` is not a Slurm memory size, or None."""
    if not SLURM_MEM.match(value):
        return "not a Slurm memory size; use a whole number with K, M, G or T, e.g. 32G"
    return None


def device_name_problem(value: str) -> str | None:
    """Why ``value`` names no device of the table (:mod:`planner.spec.hardware`), or None."""
    if find_device(value) is None:
        return (f"unknown device; use one of {', '.join(DEVICES)}, "
                "or the GPU's name as Slurm's Gres or nvidia-smi writes it")
    return None


def partition_name_problem(value: str) -> str | None:
    """Why ``value`` cannot be one partition's name (the check of ``slurm.partition``, one name only), or None."""
    if slurm_values.sbatch_value_problem("partition", value) or "," in value:
        return "not a partition name; use one partition's name per key, letters, digits and _ . + - (e.g. gpu)"
    return None


def _checked(problem: Callable[[str], str | None]) -> AfterValidator:
    """A pydantic after-validator raising ``problem(value)`` when there is one."""
    def check(value: str) -> str:
        found = problem(value)
        if found:
            raise ValueError(found)
        return value  # kept as written: the table's key is looked up where it is used
    return AfterValidator(check)


#: The keys and values of ``devices:`` (partition -> the device its GPUs are).
PartitionName = Annotated[str, _checked(partition_name_problem)]
DeviceName = Annotated[str, _checked(device_name_problem)]


class _Strict(BaseModel):
    # Strict: "4" or true are not silently read as numbers; floats must be finite.
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class SlurmSettings(_Strict):
    """Defaults for every job's Slurm request; an experiment's ``resources`` override them."""

    account: str | None = None
    partition: str | None = None
    constraint: str | None = None
    qos: str | None = None
    time: str = "auto"  # auto: the estimate; a Slurm time: every fine-tune job of a spec that gives none
    gpus_per_node: int = Field(default=1, ge=0)
    cpu_only: bool = Field(
        default=False,
        description="the nodes have no GPUs: a spec's gpus: N runs N CPU processes per node (gloo), no GRES",
    )
    cpus_per_task: int = Field(default=4, ge=1)
    mem: str | None = "32G"
    array_parallelism: int = Field(default=16, ge=1, description="the %N cap of job arrays")
    eval_time: str = "00:30:00"

    @field_validator("account", "partition", "constraint", "qos", "mem")
    @classmethod
    def _sbatch_value(cls, value: str | None, info: ValidationInfo) -> str | None:
        return slurm_values.check_sbatch_value(str(info.field_name), value)

    @field_validator("time", "eval_time")
    @classmethod
    def _time_format(cls, value: str, info: ValidationInfo) -> str:
        if value == "auto" and info.field_name == "time":  # evaluations have no estimate to size them
            return value
        problem = slurm_time_problem(value) or slurm_values.sbatch_value_problem("time", value)
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("mem")
    @classmethod
    def _mem_format(cls, value: str | None) -> str | None:
        problem = None if value is None else slurm_mem_problem(value)
        if problem:
            raise ValueError(problem)
        return value


class EnvironmentSettings(_Strict):
    """Shell lines run before each job (module load, conda or venv activation)."""

    setup: list[str] = Field(default_factory=list)


class LimitSettings(_Strict):
    """Size limits of one plan; refused before anything is expanded. Raise them here."""

    max_runs: int = Field(default=20_000, ge=1, description="runs (fine-tunes and controls) in one experiment")
    max_evaluations: int = Field(default=100_000, ge=1, description="evaluations in one experiment")
    max_spec_values: int = Field(default=200_000, ge=1, description="values in a spec, aliases counted as expanded")


class AnalysisSettings(_Strict):
    """How ``analyze`` decides a finding (docs/analysis.md); the command's options override them."""

    alpha: float = Field(default=0.05, gt=0, lt=1, description="level of a finding, after the correction")
    correction: Literal["holm", "bh"] = Field(
        default="holm", description="holm: family-wise error rate; bh: Benjamini-Hochberg false discovery rate")


class LocalSettings(_Strict):
    """The program-readable part of ``claude.local.md``."""

    models_dir: str
    experiments_dir: str
    scratch_dir: str
    datasets_dir: str
    gpu_memory_gib: float = Field(default=80.0, gt=0)
    devices: dict[PartitionName, DeviceName] = Field(
        default_factory=dict,
        description="partition -> the device its GPUs are (h100, a100-80gb, ...): the peak FLOPs and memory estimates use")
    slurm: SlurmSettings = Field(default_factory=SlurmSettings)
    environment: EnvironmentSettings = Field(default_factory=EnvironmentSettings)
    limits: LimitSettings = Field(default_factory=LimitSettings)
    analysis: AnalysisSettings = Field(default_factory=AnalysisSettings)

    def resolved(self, base_dir: str) -> "LocalSettings":
        """Return a copy whose relative directories are taken relative to ``base_dir``.

        Relative paths are read relative to the settings file itself, so a settings file
        kept beside its data works from any working directory.
        """
        updates: dict[str, Any] = {}
        for key in ("models_dir", "experiments_dir", "scratch_dir", "datasets_dir"):
            value = getattr(self, key)
            if not PurePath(value).is_absolute() and not value.startswith("~"):
                updates[key] = posixpath.normpath(str(PurePath(base_dir) / value))
        return self.model_copy(update=updates)


def extract_yaml_block(text: str, source: str) -> str:
    """Return the single fenced YAML block of a markdown document.

    Raises:
        ConfigError: when there is no such block or more than one.
    """
    blocks = _FENCE.findall(text)
    if not blocks:
        raise ConfigError(
            f"{source}: no ```yaml block found; add one fenced ```yaml block holding the "
            "settings (see claude.local.md.example)"
        )
    if len(blocks) > 1:
        raise ConfigError(
            f"{source}: {len(blocks)} ```yaml blocks found; keep exactly one (the program "
            "reads only that one; write other examples with a different fence)"
        )
    return blocks[0]


def parse_local_settings(text: str, source: str) -> LocalSettings:
    """Parse claude.local.md text into validated settings, reporting every problem at once."""
    block = extract_yaml_block(text, source)
    data = load_yaml(block, f"{source} (```yaml block)")
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the ```yaml block must be a mapping of settings, got {short_repr(data)}; "
                          "see claude.local.md.example")
    try:
        return LocalSettings.model_validate(data)
    except ValidationError as exc:
        problems = describe_errors(exc, LocalSettings, source)
        raise ConfigError(f"{source}: {len(problems)} problem(s) in local settings", problems)
