"""Resource verification for a plan: every check is logged in design-experiment.log.

Seed 002's policy: a missing model or dataset stops the plan (VerificationError, nothing
written); a missing evaluation script is a noted prerequisite; low disk is a warning.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any, Callable

from planner.plan.fs import DatasetCheck, check_dataset, check_disk, check_model, check_script, expand_user
from planner.folder.designlog import DesignLog
from planner.spec.errors import VerificationError
from planner.spec.localconfig import LocalSettings
from planner.torchtune.recipes import RecipeError, checkpoint_files, model_builder, model_shape_from_config, tokenizer_path
from planner.spec.units import size
from planner.spec.resources import DatasetResource, ModelResource, Resources, TaskResource
from planner.spec.spec import ExperimentSpec

Clock = Callable[[], datetime]


def resolve_model(model: str, settings: LocalSettings, spec_dir: Path) -> Path:
    """A model is a name under ``models_dir`` or a path (absolute, or relative to the spec)."""
    candidate = expand_user(model)
    if candidate.is_absolute():
        return candidate
    if "/" in model or model.startswith("."):
        return (spec_dir / candidate).resolve()
    return expand_user(settings.models_dir) / model


def resolve_data_path(path: str, base_dir: str, spec_dir: Path) -> Path:
    """A dataset is a path relative to ``datasets_dir``, or an absolute path."""
    candidate = expand_user(path)
    if candidate.is_absolute():
        return candidate
    under_base = expand_user(base_dir) / candidate
    if under_base.exists() or not (spec_dir / candidate).exists():
        return under_base
    return (spec_dir / candidate).resolve()


def resolve_script(script: str, spec_dir: Path, project_root: Path) -> Path:
    """Eval scripts: absolute, relative to the spec, to the working directory, or to this project."""
    candidate = expand_user(script)
    if candidate.is_absolute():
        return candidate
    for base in (spec_dir, Path.cwd(), project_root):
        if (base / candidate).is_file():
            return (base / candidate).resolve()
    return (project_root / candidate).resolve()


def verify(
    spec: ExperimentSpec,
    settings: LocalSettings,
    spec_dir: Path,
    project_root: Path,
    output_root: Path,
    log: DesignLog,
    now: Clock,
) -> Resources:
    """Check models, dataset, evaluation scripts and disk; log each check.

    Raises:
        VerificationError: listing every missing or unusable model and dataset at once.
    """
    models, ds_path, ds, problems = check_models_and_dataset(
        spec.models, spec.dataset.path, spec.dataset.input_column, spec.dataset.output_column, settings, spec_dir, log, now
    )
    if len(problems) == 1:
        raise VerificationError(f"{problems[0]}; nothing was written")
    if problems:
        raise VerificationError(f"{len(problems)} resource(s) missing or unusable; nothing was written", problems)
    return _finish(spec, settings, spec_dir, project_root, output_root, log, now, models, ds_path, ds)


def check_models_and_dataset(
    model_names: list[str],
    dataset_path: str,
    input_column: str,
    output_column: str,
    settings: LocalSettings,
    spec_dir: Path,
    log: DesignLog,
    now: Clock,
) -> tuple[dict[str, ModelResource], Path, DatasetCheck, list[str]]:
    """Check every model and the dataset; log each check; return what was found and every problem."""
    problems: list[str] = []
    models: dict[str, ModelResource] = {}
    for model in model_names:
        path = resolve_model(model, settings, spec_dir)
        found = check_model(path)
        result = (
            f"Directory exists with {len(found.files)} files ({', '.join(found.files[:4])}{', ...' if len(found.files) > 4 else ''})"
            if found.exists
            else "Not found"
        )
        if found.problem:
            result += f"; problem: {found.problem}"
        log.add(now(), "VERIFY_MODEL", f"Checking {model}", command=found.command, result=result,
                explanation="Verifying base model exists before creating experiment plan")
        if found.problem or found.config is None:
            problems.append(
                f"model {model!r}: {found.problem} at {path}; put the Hugging Face checkpoint there "
                f"or list the model by its path (models_dir is {settings.models_dir})"
            )
            continue
        try:
            shape = model_shape_from_config(found.config)
            # What building the jobs needs from the folder, checked before anything is
            # written: torchtune's builder for this shape, a tokenizer file, weight files.
            model_builder(shape)
            tokenizer_path(shape, str(path), found.files)
            checkpoint_files(found.files)
        except RecipeError as exc:
            problems.append(f"model {model!r}: {exc}")
            continue
        models[model] = ModelResource(
            name=model, path=str(path), config=found.config, weight_files=found.weight_files,
            files=found.files, size_bytes=found.size_bytes, weights_bytes=found.weights_bytes, shape=shape,
        )
        log.add(now(), "DECIDE_RECIPE", f"Model family of {model}",
                decision=f"{shape.family} ({found.config.get('architectures', ['?'])[0]}), {shape.param_count:,} parameters",
                reasoning="Read from the checkpoint's config.json",
                explanation="The family picks the torchtune model builder, tokenizer and checkpointer")

    ds_path = resolve_data_path(dataset_path, settings.datasets_dir, spec_dir)
    ds = check_dataset(ds_path, input_column, output_column)
    splits = ", ".join(f"{k} ({v})" for k, v in ds.splits.items()) or "none"
    log.add(now(), "VERIFY_DATASET", f"Checking {dataset_path}", command=ds.command,
            result=(f"File exists, {size(ds.size_bytes)}; splits: {splits}" if ds.exists else "Not found")
            + (f"; problem: {ds.problem}" if ds.problem else ""),
            explanation="Verifying training dataset exists, parses and has train/validation/test splits")
    if ds.problem:
        problems.append(
            f"dataset {dataset_path!r}: {ds.problem} at {ds_path}; generate it (e.g. "
            "tasks/capitalization/generate.py) or fix dataset.path (relative to datasets_dir)"
        )
    return models, ds_path, ds, problems


def _finish(
    spec: ExperimentSpec,
    settings: LocalSettings,
    spec_dir: Path,
    project_root: Path,
    output_root: Path,
    log: DesignLog,
    now: Clock,
    models: dict[str, ModelResource],
    ds_path: Path,
    ds: DatasetCheck,
) -> Resources:
    """Evaluation scripts and disk, once models and dataset are usable."""

    tasks: dict[str, TaskResource] = {}
    prerequisites: list[str] = []
    for task in spec.evaluation.tasks:
        script = resolve_script(task.script, spec_dir, project_root)
        found_script = check_script(script)
        task_ds = resolve_data_path(task.dataset, settings.datasets_dir, spec_dir) if task.dataset else ds_path
        log.add(now(), "VERIFY_EVAL", f"Checking evaluation script of task {task.name}", command=found_script.command,
                result="Script exists" if found_script.exists else "Script not found: noted as a prerequisite",
                explanation="Evaluation scripts may be written after planning; a missing one does not stop the plan")
        if not found_script.exists:
            prerequisites.append(f"write the evaluation script of task `{task.name}` at `{script}` (see tasks/README.md)")
        tasks[task.name] = TaskResource(
            name=task.name, script=str(script), script_exists=found_script.exists, dataset=str(task_ds),
            dataset_exists=task_ds.is_file(), split=task.split, description=task.description,
        )
        if not task_ds.is_file():
            prerequisites.append(f"create the dataset of task `{task.name}` at `{task_ds}`")

    disk = check_disk(output_root)
    log.add(now(), "CHECK_DISK", "Verifying available disk space", command=disk.command,
            result=f"{size(disk.free_bytes)} available" if disk.free_bytes is not None else "unknown",
            explanation="Ensuring space for checkpoints (compared with the estimate below)")
    return Resources(
        models=models,
        dataset=DatasetResource(path=str(ds_path), size_bytes=ds.size_bytes, splits=ds.splits,
                                train_chars=tuple(ds.train_chars)),
        tasks=tasks,
        output_root=str(output_root),
        disk_free_bytes=disk.free_bytes,
        prerequisites=prerequisites,
    )


def raw_resource_problems(data: Any, settings: LocalSettings, spec_dir: Path, project_root: Path) -> list[str]:
    """Models, dataset and evaluation scripts named by a spec that did not validate.

    So that one run of ``new`` reports every problem it can find, not the spec's first and
    the missing dataset after the spec is fixed. Whatever part of the spec is unreadable
    is skipped; nothing is logged.
    """
    if not isinstance(data, dict):
        return []
    models = data.get("models")
    model_names = [m for m in models if isinstance(m, str) and m.strip()] if isinstance(models, list) else []
    dataset = data.get("dataset")
    ds = dataset if isinstance(dataset, dict) else {}
    ds_path = ds.get("path") if isinstance(ds.get("path"), str) else None
    columns = [str(ds[k]) if isinstance(ds.get(k), str) else d for k, d in (("input_column", "input"), ("output_column", "output"))]
    problems: list[str] = []
    if model_names or ds_path:
        found_problems = check_models_and_dataset(model_names, ds_path or "", columns[0], columns[1], settings, spec_dir,
                                                  DesignLog(), datetime.now)[3]
        problems += [p for p in found_problems if ds_path or not p.startswith("dataset ''")]
    evaluation = data.get("evaluation")
    tasks = evaluation.get("tasks") if isinstance(evaluation, dict) else None
    for task in tasks if isinstance(tasks, list) else []:
        if isinstance(task, dict) and isinstance(task.get("script"), str) and isinstance(task.get("name"), str):
            script = resolve_script(task["script"], spec_dir, project_root)
            if not check_script(script).exists:
                problems.append(f"evaluation script of task {task['name']!r} not found at {script} "
                                "(a prerequisite: the plan is written without it)")
    return problems
