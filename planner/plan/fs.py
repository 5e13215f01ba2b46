"""Filesystem checks behind a small interface: models, datasets, eval scripts, free disk.

Each check returns a plain result object; the caller logs it (with the equivalent shell
command, so a reader of design-experiment.log can re-run the check by hand) and decides.
"""

from __future__ import annotations

import os
import shlex
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from planner.spec.loading import load_json

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")


@dataclass
class ModelCheck:
    """What was found at a model path."""

    path: Path
    command: str
    exists: bool = False
    files: list[str] = field(default_factory=list)
    config: dict[str, Any] | None = None
    weight_files: list[str] = field(default_factory=list)
    size_bytes: int = 0
    weights_bytes: int = 0
    problem: str | None = None


@dataclass
class DatasetCheck:
    """What was found at a dataset path."""

    path: Path
    command: str
    exists: bool = False
    size_bytes: int = 0
    splits: dict[str, int] = field(default_factory=dict)
    columns: list[str] = field(default_factory=list)
    problem: str | None = None
    train_chars: list[int] = field(default_factory=list)  # characters of input + output, per training example


@dataclass
class ScriptCheck:
    """Whether an evaluation script exists."""

    path: Path
    command: str
    exists: bool = False


@dataclass
class DiskCheck:
    """Free space where checkpoints will go."""

    path: Path
    command: str
    free_bytes: int | None = None


def check_model(path: Path) -> ModelCheck:
    """Look for a Hugging Face-layout checkpoint: config.json plus weight files."""
    result = ModelCheck(path=path, command=f"ls {shlex.quote(str(path))}")
    if not path.is_dir():
        result.problem = "directory not found"
        return result
    result.exists = True
    for entry in sorted(path.rglob("*")):
        if entry.is_file():
            rel = entry.relative_to(path).as_posix()
            result.files.append(rel)
            result.size_bytes += entry.stat().st_size
            if entry.name.endswith(WEIGHT_SUFFIXES) and not rel.startswith("original/"):
                result.weight_files.append(rel)
                result.weights_bytes += entry.stat().st_size
    cfg = path / "config.json"
    if not cfg.is_file():
        result.problem = "no config.json (not a Hugging Face checkpoint folder)"
        return result
    try:
        config = load_json(cfg.read_bytes().decode("utf-8"), str(cfg))
    except OSError as exc:
        result.problem = f"config.json cannot be read ({exc.strerror})"
        return result
    except UnicodeDecodeError as exc:
        result.problem = f"config.json is not UTF-8 text (byte {exc.start})"
        return result
    except ValueError as exc:
        result.problem = f"config.json: {exc}"
        return result
    if not isinstance(config, dict):
        result.problem = f"config.json holds a {type(config).__name__}, not the JSON object of a Hugging Face config"
        return result
    result.config = config
    if not result.weight_files:
        result.problem = "no weight files (*.safetensors or *.bin)"
    return result


def check_dataset(path: Path, input_column: str, output_column: str) -> DatasetCheck:
    """Check a JSON dataset with train/validation/test splits and count each split."""
    result = DatasetCheck(path=path, command=f"ls -lh {shlex.quote(str(path))}")
    if not path.is_file():
        result.problem = "file not found"
        return result
    result.exists = True
    result.size_bytes = path.stat().st_size
    try:
        data = load_json(path.read_bytes().decode("utf-8"), str(path))
    except OSError as exc:
        result.problem = f"cannot be read ({exc.strerror})"
        return result
    except UnicodeDecodeError as exc:
        result.problem = f"not UTF-8 text (byte {exc.start}); save it as UTF-8"
        return result
    except ValueError as exc:
        result.problem = str(exc)
        return result
    if not isinstance(data, dict):
        result.problem = "expected a JSON object with train/validation/test lists"
        return result
    for split in ("train", "validation", "test"):
        rows = data.get(split)
        if isinstance(rows, list):
            result.splits[split] = len(rows)
    missing = [s for s in ("train", "validation", "test") if s not in result.splits]
    if missing:
        result.problem = f"missing split(s) {missing}; found keys {sorted(data)[:6]}"
        return result
    first = (data["train"] or [{}])[0]
    result.columns = sorted(first) if isinstance(first, dict) else []
    absent = [c for c in (input_column, output_column) if c not in result.columns]
    if data["train"] and absent:
        result.problem = f"training examples lack column(s) {absent}; they have {result.columns}"
    if not data["train"]:
        result.problem = "the train split is empty"
    if result.problem is None:
        # What the cost model turns into tokens per example (input and output are what the
        # template wraps; other columns are not trained on).
        result.train_chars = [
            _text_length(row.get(input_column)) + _text_length(row.get(output_column)) if isinstance(row, dict) else 0
            for row in data["train"]
        ]
    return result


def _text_length(value: object) -> int:
    return len(value) if isinstance(value, str) else 0 if value is None else len(str(value))


def check_script(path: Path) -> ScriptCheck:
    """Check that an evaluation script exists."""
    return ScriptCheck(path=path, command=f"ls {shlex.quote(str(path))}", exists=path.is_file())


def check_disk(path: Path) -> DiskCheck:
    """Free bytes on the filesystem holding ``path`` (its nearest existing parent)."""
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    result = DiskCheck(path=probe, command=f"df -h {shlex.quote(str(probe))}")
    try:
        result.free_bytes = shutil.disk_usage(probe).free
    except OSError:
        result.free_bytes = None
    return result


def expand_user(path: str) -> Path:
    """Expand ``~`` and environment variables in a user-written path."""
    return Path(os.path.expandvars(os.path.expanduser(path)))
