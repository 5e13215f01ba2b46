"""Verified resources of a plan: where each model, the dataset and each task script are."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class ModelResource:
    """A verified base model."""

    name: str
    path: str
    config: dict[str, Any]
    weight_files: list[str]
    files: list[str]
    size_bytes: int
    weights_bytes: int = 0
    shape: Any = None  # planner.torchtune.recipes.ModelShape

    @property
    def param_count(self) -> int:
        """Parameters of the model, from its shape."""
        return int(getattr(self.shape, "param_count", 0) or 0)


@dataclass
class DatasetResource:
    """The verified training dataset."""

    path: str
    size_bytes: int
    splits: dict[str, int]
    train_chars: tuple[int, ...] = ()  # characters per training example (input + output), for the cost model


@dataclass
class TaskResource:
    """An evaluation task and whether its script exists yet."""

    name: str
    script: str
    script_exists: bool
    dataset: str
    dataset_exists: bool
    split: str
    description: str


@dataclass
class Resources:
    """Everything verification found; prerequisites and warnings do not stop the plan."""

    models: dict[str, ModelResource]
    dataset: DatasetResource
    tasks: dict[str, TaskResource]
    output_root: str
    disk_free_bytes: int | None
    prerequisites: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
