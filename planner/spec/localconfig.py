"""Local settings: a user's cluster defaults, read from the one ```yaml block of claude.local.md.

People read the prose of ``claude.local.md``; the program reads only its fenced YAML block,
so the prose can say anything without breaking the parser.
"""

from __future__ import annotations

import posixpath
import re
from pathlib import PurePath
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from planner.spec.errors import ConfigError
from planner.spec.validation import describe_errors

_FENCE = re.compile(r"^```ya?ml[ \t]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
# Slurm time formats: MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS.
SLURM_TIME = re.compile(r"^(\d+-)?\d{1,2}(:\d{2}){0,2}$|^\d+$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SlurmSettings(_Strict):
    """Defaults for every job's Slurm request; an experiment's ``resources`` override them."""

    account: str | None = None
    partition: str | None = None
    constraint: str | None = None
    qos: str | None = None
    time: str = "01:00:00"
    gpus_per_node: int = Field(default=1, ge=0)
    cpus_per_task: int = Field(default=4, ge=1)
    mem: str | None = "32G"
    array_parallelism: int = Field(default=16, ge=1, description="the %N cap of job arrays")
    eval_time: str = "00:30:00"

    @field_validator("time", "eval_time")
    @classmethod
    def _time_format(cls, value: str) -> str:
        if not SLURM_TIME.match(value):
            raise ValueError("not a Slurm time; use MM, HH:MM:SS or D-HH:MM:SS, e.g. 02:00:00")
        return value


class EnvironmentSettings(_Strict):
    """Shell lines run before each job (module load, conda or venv activation)."""

    setup: list[str] = Field(default_factory=list)


class LocalSettings(_Strict):
    """The program-readable part of ``claude.local.md``."""

    models_dir: str
    experiments_dir: str
    scratch_dir: str
    datasets_dir: str
    gpu_memory_gib: float = Field(default=80.0, gt=0)
    slurm: SlurmSettings = Field(default_factory=SlurmSettings)
    environment: EnvironmentSettings = Field(default_factory=EnvironmentSettings)

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
    try:
        data = yaml.safe_load(block)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: the ```yaml block is not valid YAML: {exc}".replace("\n", " "))
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the ```yaml block must be a mapping of settings, got {data!r}")
    try:
        return LocalSettings.model_validate(data)
    except ValidationError as exc:
        problems = describe_errors(exc, LocalSettings, source)
        raise ConfigError(f"{source}: {len(problems)} problem(s) in local settings", problems)
