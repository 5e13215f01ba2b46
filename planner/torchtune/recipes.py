"""Config building: the finetune and eval configs of a run; the front of ``planner.torchtune``.

Everything the planner knows about torchtune lives in this package (shapes, the registry of
builders, tokenizers, checkpointer model types and recipes, the ``tune run`` command, the
in-job hook), so another backend can be added beside it later without touching the rest
of ``planner``. Other packages import this module: it re-exports the names of
:mod:`~planner.torchtune.shapes`, :mod:`~planner.torchtune.registry` and
:mod:`~planner.torchtune.hook` they use.

Pure: takes text and data (a parsed ``config.json``, a directory listing, the text of a
recipe YAML) and returns data; never reads files, runs processes or looks at the environment.
"""

from __future__ import annotations

import copy
import functools
import posixpath
from typing import Any, Mapping

import yaml

from planner.spec.knobs import KNOBS
from planner.spec.loading import dump_yaml
from planner.torchtune.hook import HOOK, split_prompt, format_prompt, prompted_tokenizer
from planner.torchtune.registry import (
    MODEL_TYPES,
    TOKENIZER_COMPONENTS,
    LORA_KWARGS,
    model_builder,
    base_builder,
    model_type,
    tokenizer_path,
    tokenizer_config,
    checkpoint_files,
    SINGLE_DEVICE_RECIPE,
    DISTRIBUTED_RECIPE,
    CPU_DISTRIBUTED_RECIPE,
    MULTINODE_ENV_VARS,
    recipe_name,
    recipe_file_for,
    recipe_files,
    training_argv,
    training_command,
)
from planner.torchtune.shapes import RecipeError, SUPPORTED_ARCHITECTURES, ModelShape, count_parameters, model_shape_from_config

__all__ = [
    "CPU_DISTRIBUTED_RECIPE",
    "DEFAULT_SETTINGS",
    "DISTRIBUTED_RECIPE",
    "HOOK",
    "LORA_KWARGS",
    "MODEL_TYPES",
    "MULTINODE_ENV_VARS",
    "ModelShape",
    "RecipeError",
    "SINGLE_DEVICE_RECIPE",
    "SUPPORTED_ARCHITECTURES",
    "TOKENIZER_COMPONENTS",
    "base_builder",
    "checkpoint_files",
    "count_parameters",
    "dump_config",
    "eval_config",
    "finetune_config",
    "format_prompt",
    "model_builder",
    "model_shape_from_config",
    "model_type",
    "prompted_tokenizer",
    "recipe_file_for",
    "recipe_files",
    "recipe_name",
    "split_prompt",
    "tokenizer_config",
    "tokenizer_path",
    "training_argv",
    "training_command",
]

# ----------------------------------------------------------------- configs


#: Settings :func:`finetune_config` accepts besides the knobs of planner.spec.knobs, with
#: defaults: what a job needs that is not a knob of the spec.
JOB_SETTINGS: dict[str, Any] = {
    "seed": None,
    "lora_attn_modules": None,  # the recipe's, else q_proj, v_proj, output_proj
    "device": "cuda",
    "dtype": "bf16",
}

#: Every setting :func:`finetune_config` accepts, with defaults: each knob of the one knob
#: table (None = keep the recipe's value, or the behaviour noted), then :data:`JOB_SETTINGS`.
DEFAULT_SETTINGS: dict[str, Any] = {
    **{name: None for name in KNOBS},
    "lora_rank": 8,
    "system_prompt": "",
    "prompt": None,  # plain input
    **JOB_SETTINGS,
}


def _clone(value: Any) -> Any:
    """A deep copy of YAML data (mappings, lists, scalars): several times faster than ``copy.deepcopy``."""
    if isinstance(value, dict):
        return {k: _clone(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clone(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return copy.deepcopy(value)


#: Recipe sections :func:`finetune_config` always replaces with new ones.
_REBUILT_SECTIONS = frozenset({"model", "tokenizer", "checkpointer", "dataset", "metric_logger"})


@functools.lru_cache(maxsize=64)
def _load_recipe(recipe_text: str) -> dict[str, Any]:
    # Cached: a plan renders every run from the same few recipes (callers deep-copy).
    try:
        cfg = yaml.safe_load(recipe_text)
    except yaml.YAMLError as exc:
        raise RecipeError(f"recipe is not valid YAML: {exc}") from None
    if not isinstance(cfg, dict):
        raise RecipeError("recipe YAML must be a mapping")
    return cfg


def _within(path: str, parent: str) -> bool:
    path = posixpath.normpath(path)
    parent = posixpath.normpath(parent)
    return path == parent or path.startswith(parent.rstrip("/") + "/")


def finetune_config(
    *,
    recipe_text: str,
    shape: ModelShape,
    model_dir: str,
    checkpoint_files: list[str],
    tokenizer_path: str,
    run_dir: str,
    dataset_path: str,
    settings: Mapping[str, Any],
    gpus: int = 1,
    nodes: int = 1,
) -> dict[str, Any]:
    """Render one run's complete torchtune config.

    Args:
        recipe_text: Text of the recipe YAML (see :func:`recipe_file_for`).
        shape: The base model's shape.
        model_dir: The base model's checkpoint directory.
        checkpoint_files: Its weight files (see :func:`checkpoint_files`).
        tokenizer_path: Its tokenizer file (see :func:`tokenizer_path`).
        run_dir: The run's folder; torchtune's ``output_dir`` (``epoch_N/`` under it).
        dataset_path: JSON file with ``train`` / ``validation`` / ``test`` lists.
        settings: Run settings: the knobs of planner.spec.knobs and :data:`JOB_SETTINGS`.
        gpus: GPUs per node.
        nodes: Nodes.

    Returns:
        The config as a dict, ready to dump as ``finetune.yaml``.

    Raises:
        RecipeError: On unknown settings, bad values or an output folder inside the
            checkpoint directory.
    """
    unknown = sorted(set(settings) - set(DEFAULT_SETTINGS))
    if unknown:
        # A setting nobody reads would be a knob the user set and torchtune never sees.
        raise RecipeError(f"unknown settings {unknown}; known: {', '.join(DEFAULT_SETTINGS)}")
    s = {**DEFAULT_SETTINGS, **{k: v for k, v in settings.items()}}
    if _within(run_dir, model_dir):
        # torchtune raises on this, but only after it has created files.
        raise RecipeError(f"run folder {run_dir} must not be inside the model directory {model_dir}")
    if not checkpoint_files:
        raise RecipeError("no checkpoint files given")

    # Sections rebuilt below are only read from the recipe: copying them would be wasted
    # work, 10,000 times over in a large plan.
    cfg = {k: v if k in _REBUILT_SECTIONS else _clone(v) for k, v in _load_recipe(recipe_text).items()}
    recipe = recipe_name(gpus, nodes)

    rank = int(s["lora_rank"])
    if rank < 1:
        raise RecipeError(f"lora_rank must be positive, got {rank}")
    builder, dims = model_builder(shape)
    old_model = cfg.get("model") or {}
    model: dict[str, Any] = {"_component_": builder}
    model["lora_attn_modules"] = list(
        s["lora_attn_modules"] or old_model.get("lora_attn_modules") or ["q_proj", "v_proj", "output_proj"]
    )
    model["apply_lora_to_mlp"] = bool(old_model.get("apply_lora_to_mlp", True))
    # An untied output projection can take LoRA; tied ones share the embedding.
    model["apply_lora_to_output"] = bool(old_model.get("apply_lora_to_output", False)) and not shape.tie_word_embeddings
    model.update(dims)
    model["lora_rank"] = rank
    model["lora_alpha"] = float(s["lora_alpha"]) if s["lora_alpha"] is not None else float(2 * rank)
    model["lora_dropout"] = float(s["lora_dropout"]) if s["lora_dropout"] is not None else float(old_model.get("lora_dropout", 0.0))
    cfg["model"] = model

    max_seq_len = s["max_seq_len"]
    if max_seq_len is None:
        max_seq_len = (cfg.get("tokenizer") or {}).get("max_seq_len")
    if max_seq_len is not None:
        max_seq_len = min(int(max_seq_len), shape.max_position_embeddings)
    packed = bool(s["packed"]) if s["packed"] is not None else bool((cfg.get("dataset") or {}).get("packed", False))
    if packed and max_seq_len is None:
        raise RecipeError("packed datasets need max_seq_len")
    cfg["tokenizer"] = tokenizer_config(shape, tokenizer_path, max_seq_len=max_seq_len, prompt=s["prompt"])

    cfg["output_dir"] = run_dir
    cfg["checkpointer"] = {
        "_component_": "torchtune.training.FullModelHFCheckpointer",
        "checkpoint_dir": model_dir,
        "checkpoint_files": list(checkpoint_files),
        "recipe_checkpoint": None,
        "output_dir": run_dir,
        "model_type": model_type(shape),
    }
    cfg["resume_from_checkpoint"] = False
    # Adapter-only: megabytes instead of gigabytes per epoch, and it avoids the
    # single-device recipe's merge, which corrupts the live base weights on CPU.
    cfg["save_adapter_weights_only"] = True

    train_samples = s["train_samples"]
    split = "train" if train_samples is None else f"train[:{int(train_samples)}]"
    system_prompt = s["system_prompt"] or None
    cfg["dataset"] = {
        "_component_": "torchtune.datasets.instruct_dataset",
        "source": "json",
        "data_files": dataset_path,
        "field": "train",
        "split": split,
        "column_map": {"input": "input", "output": "output"},
        "new_system_prompt": system_prompt,
        "train_on_input": False,
        "packed": packed,
        # One datasets cache per run: jobs starting together race on a shared one.
        "cache_dir": posixpath.join(run_dir, ".hf_datasets_cache"),
    }

    def override(key: str, setting: str, cast: type) -> None:
        if s[setting] is not None:
            cfg[key] = cast(s[setting])

    override("batch_size", "batch_size", int)
    override("gradient_accumulation_steps", "gradient_accumulation_steps", int)
    override("epochs", "epochs", int)
    cfg["max_steps_per_epoch"] = None if s["max_steps_per_epoch"] is None else int(s["max_steps_per_epoch"])
    cfg["seed"] = None if s["seed"] is None else int(s["seed"])
    cfg["shuffle"] = cfg.get("shuffle", True)

    opt = dict(cfg.get("optimizer") or {"_component_": "torch.optim.AdamW", "fused": True})
    if s["learning_rate"] is not None:
        opt["lr"] = float(s["learning_rate"])
    if s["weight_decay"] is not None:
        opt["weight_decay"] = float(s["weight_decay"])
    device = str(s["device"])
    if device == "cpu":
        # Fused AdamW is a CUDA path in older torch; plain AdamW works everywhere.
        opt.pop("fused", None)
    cfg["optimizer"] = opt
    sched = dict(cfg.get("lr_scheduler") or {
        "_component_": "torchtune.training.lr_schedulers.get_cosine_schedule_with_warmup"})
    if s["num_warmup_steps"] is not None:
        sched["num_warmup_steps"] = int(s["num_warmup_steps"])
    cfg["lr_scheduler"] = sched

    cfg["metric_logger"] = {
        "_component_": "torchtune.training.metric_logging.DiskLogger",
        "log_dir": posixpath.join(run_dir, "logs"),
    }
    cfg["log_every_n_steps"] = 1
    cfg["log_peak_memory_stats"] = True
    cfg["compile"] = False
    cfg["device"] = device
    dtype = str(s["dtype"])
    if dtype not in ("bf16", "fp32"):
        raise RecipeError(f"dtype must be bf16 or fp32, got {dtype!r}")
    cfg["dtype"] = dtype
    if device == "cpu":
        # No CUDA on the node: activation offloading and memory stats are CUDA-only.
        cfg["enable_activation_offloading"] = False
    if recipe == DISTRIBUTED_RECIPE:
        cfg.pop("low_cpu_ram", None)
    if "profiler" in cfg and isinstance(cfg["profiler"], dict):
        cfg["profiler"]["output_dir"] = posixpath.join(run_dir, "profiling_outputs")
    return cfg


def eval_config(
    *,
    task: str,
    run: str,
    epoch: int | None,
    finetune_cfg: Mapping[str, Any],
    adapter_dir: str | None,
    dataset_path: str,
    split: str = "test",
    system_prompt: str,
    prompt: str | None,
    results_path: str,
    max_new_tokens: int = 32,
    limit: int | None = None,
    device: str = "cuda",
) -> dict[str, Any]:
    """Render what a task's ``eval.py --config eval_config.yaml`` reads.

    The model, checkpointer and tokenizer nodes are copied from the run's finetune
    config, so evaluation formats prompts exactly like training did. A base-model
    control passes ``adapter_dir=None`` and gets the plain (non-LoRA) builder.

    Args:
        task: Task name (folder under ``tasks/``).
        run: Run name.
        epoch: Epoch evaluated, or None for a base-model control.
        finetune_cfg: The run's finetune config (for a control: the config the
            fine-tuned runs of that model use, or any config of that model).
        adapter_dir: ``<run>/epoch_<N>`` holding ``adapter_model.pt``, or None.
        dataset_path: Task JSON with the split to evaluate.
        split: Split to evaluate.
        system_prompt: System prompt ("" for none), identical to training.
        prompt: ``{input}`` template or None, identical to training.
        results_path: Where ``results.json`` goes.
        max_new_tokens: Generation budget per example.
        limit: Evaluate only the first N examples (None: all).
        device: ``cuda`` or ``cpu``.

    Returns:
        The config as a dict.
    """
    # Only the nodes copied into the eval config are copied, not the whole finetune config.
    ft = finetune_cfg
    lora_model = _clone(ft["model"])
    if adapter_dir is None:
        model = {k: v for k, v in lora_model.items() if k not in LORA_KWARGS}
        model["_component_"] = base_builder(lora_model["_component_"])
    else:
        model = lora_model
    ckpt = _clone(ft["checkpointer"])
    out_dir = posixpath.dirname(results_path) or "."
    # Base weights always come from the original checkpoint directory, never from
    # an epoch folder, so each evaluation sees exactly its own adapter.
    ckpt["output_dir"] = out_dir
    ckpt["recipe_checkpoint"] = None
    tokenizer = _clone(ft["tokenizer"])
    if prompt is not None and tokenizer.get("prompt") != prompt:
        base = tokenizer.get("base_component", tokenizer["_component_"])
        tokenizer = {"_component_": HOOK, "base_component": base,
                     "prompt": prompt,
                     **{k: v for k, v in tokenizer.items() if k not in ("_component_", "base_component", "prompt")}}
    if prompt is None and "base_component" in tokenizer:
        tokenizer["_component_"] = tokenizer.pop("base_component")
        tokenizer.pop("prompt", None)
    return {
        "task": task,
        "run": run,
        "epoch": epoch,
        "model_name": posixpath.basename(posixpath.normpath(ckpt["checkpoint_dir"])),
        "model": model,
        "checkpointer": ckpt,
        "tokenizer": tokenizer,
        "adapter_dir": adapter_dir,
        "adapter_file": "adapter_model.pt",
        "dataset_path": dataset_path,
        "split": split,
        "column_map": {"input": "input", "output": "output"},
        "system_prompt": system_prompt,
        "prompt": prompt,
        "max_new_tokens": int(max_new_tokens),
        "limit": None if limit is None else int(limit),
        "device": device,
        "dtype": "fp32" if device == "cpu" else ft.get("dtype", "bf16"),
        "seed": ft.get("seed") if ft.get("seed") is not None else 0,
        "results_path": results_path,
    }


def dump_config(cfg: Mapping[str, Any]) -> str:
    """Return a config as YAML text, keys in the order given.

    Args:
        cfg: The config.

    Returns:
        YAML text.
    """
    return dump_yaml(dict(cfg), sort_keys=False, default_flow_style=False, allow_unicode=True)
