"""The recipe registry: torchtune builders, tokenizers, checkpointer model types, recipe
files and the ``tune run`` command line for a model shape.

Pure: takes a :class:`~planner.torchtune.shapes.ModelShape` and directory listings and
returns names and argv; never reads files, runs processes or looks at the environment.
"""

from __future__ import annotations

import functools
import posixpath
import shlex
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from planner.torchtune.hook import HOOK, split_prompt
from planner.torchtune.shapes import ModelShape, RecipeError


# ------------------------------------------------------------------------ registry


@dataclass(frozen=True)
class _NamedSize:
    family: str
    label: str
    builder: str
    recipe_stem: str
    dims: tuple[tuple[str, Any], ...]


def _dims(**kw: Any) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted(kw.items()))


# torchtune's named LoRA builders and the dimensions they hard-code. A shape that
# matches one exactly uses it (shorter configs, same as torchtune's own); any other
# shape gets the family's component builder with explicit dimensions.
_NAMED_SIZES: tuple[_NamedSize, ...] = (
    _NamedSize("llama3_2", "1B", "torchtune.models.llama3_2.lora_llama3_2_1b", "llama3_2_1B",
               _dims(hidden_size=2048, num_layers=16, num_heads=32, num_kv_heads=8,
                     intermediate_size=8192, vocab_size=128256, tie_word_embeddings=True)),
    _NamedSize("llama3_2", "3B", "torchtune.models.llama3_2.lora_llama3_2_3b", "llama3_2_3B",
               _dims(hidden_size=3072, num_layers=28, num_heads=24, num_kv_heads=8,
                     intermediate_size=8192, vocab_size=128256, tie_word_embeddings=True)),
    _NamedSize("llama3_1", "8B", "torchtune.models.llama3_1.lora_llama3_1_8b", "llama3_1_8B",
               _dims(hidden_size=4096, num_layers=32, num_heads=32, num_kv_heads=8,
                     intermediate_size=14336, vocab_size=128256, tie_word_embeddings=False)),
    _NamedSize("llama3_1", "70B", "torchtune.models.llama3_1.lora_llama3_1_70b", "llama3_1_8B",
               _dims(hidden_size=8192, num_layers=80, num_heads=64, num_kv_heads=8,
                     intermediate_size=28672, vocab_size=128256, tie_word_embeddings=False)),
    _NamedSize("llama3", "8B", "torchtune.models.llama3.lora_llama3_8b", "llama3_1_8B",
               _dims(hidden_size=4096, num_layers=32, num_heads=32, num_kv_heads=8,
                     intermediate_size=14336, vocab_size=128256, tie_word_embeddings=False)),
    _NamedSize("llama2", "7B", "torchtune.models.llama2.lora_llama2_7b", "llama2_custom",
               _dims(hidden_size=4096, num_layers=32, num_heads=32, num_kv_heads=32,
                     intermediate_size=11008, vocab_size=32000, tie_word_embeddings=False)),
    _NamedSize("mistral", "7B", "torchtune.models.mistral.lora_mistral_7b", "mistral_7B",
               _dims(hidden_size=4096, num_layers=32, num_heads=32, num_kv_heads=8,
                     intermediate_size=14336, vocab_size=32000, tie_word_embeddings=False,
                     rope_theta=10000.0)),
    _NamedSize("qwen2_5", "0.5B", "torchtune.models.qwen2_5.lora_qwen2_5_0_5b", "qwen2_5",
               _dims(hidden_size=896, num_layers=24, num_heads=14, num_kv_heads=2,
                     intermediate_size=4864, vocab_size=151936, tie_word_embeddings=True,
                     max_position_embeddings=32768)),
    _NamedSize("qwen2_5", "1.5B-Instruct", "torchtune.models.qwen2_5.lora_qwen2_5_1_5b_instruct", "qwen2_5",
               _dims(hidden_size=1536, num_layers=28, num_heads=12, num_kv_heads=2,
                     intermediate_size=8960, vocab_size=151936, tie_word_embeddings=True,
                     max_position_embeddings=32768)),
    _NamedSize("qwen2_5", "1.5B", "torchtune.models.qwen2_5.lora_qwen2_5_1_5b_base", "qwen2_5",
               _dims(hidden_size=1536, num_layers=28, num_heads=12, num_kv_heads=2,
                     intermediate_size=8960, vocab_size=151936, tie_word_embeddings=True,
                     max_position_embeddings=131072)),
    _NamedSize("qwen2_5", "3B", "torchtune.models.qwen2_5.lora_qwen2_5_3b", "qwen2_5",
               _dims(hidden_size=2048, num_layers=36, num_heads=16, num_kv_heads=2,
                     intermediate_size=11008, vocab_size=151936, tie_word_embeddings=True,
                     max_position_embeddings=32768)),
    _NamedSize("qwen2_5", "7B-Instruct", "torchtune.models.qwen2_5.lora_qwen2_5_7b_instruct", "qwen2_5",
               _dims(hidden_size=3584, num_layers=28, num_heads=28, num_kv_heads=4,
                     intermediate_size=18944, vocab_size=152064, tie_word_embeddings=False,
                     max_position_embeddings=32768)),
    _NamedSize("qwen2_5", "7B", "torchtune.models.qwen2_5.lora_qwen2_5_7b_base", "qwen2_5",
               _dims(hidden_size=3584, num_layers=28, num_heads=28, num_kv_heads=4,
                     intermediate_size=18944, vocab_size=152064, tie_word_embeddings=False,
                     max_position_embeddings=131072)),
)

#: Component builder per family, for shapes no named builder matches.
_COMPONENT_BUILDERS: dict[str, str] = {
    "llama2": "torchtune.models.llama2.lora_llama2",
    "llama3": "torchtune.models.llama3.lora_llama3",
    "llama3_1": "torchtune.models.llama3_1.lora_llama3_1",
    "llama3_2": "torchtune.models.llama3_2.lora_llama3_2",
    "qwen2_5": "torchtune.models.qwen2.lora_qwen2",
    "mistral": "torchtune.models.mistral.lora_mistral",
}

#: Recipe file stem per family when no named size matches.
_FAMILY_RECIPE_STEM: dict[str, str] = {
    "llama2": "llama2_custom",
    "llama3": "llama3_1_8B",
    "llama3_1": "llama3_1_8B",
    "llama3_2": "llama3_2_1B",
    "qwen2_5": "qwen2_5",
    "mistral": "mistral_7B",
}

#: ``checkpointer.model_type`` per family (torchtune's weight-conversion switch).
MODEL_TYPES: dict[str, str] = {
    "llama2": "LLAMA2",
    "llama3": "LLAMA3",
    "llama3_1": "LLAMA3",
    "llama3_2": "LLAMA3_2",
    "qwen2_5": "QWEN2",
    "mistral": "MISTRAL",
}

#: Tokenizer builder per family.
TOKENIZER_COMPONENTS: dict[str, str] = {
    "llama2": "torchtune.models.llama2.llama2_tokenizer",
    "llama3": "torchtune.models.llama3.llama3_tokenizer",
    "llama3_1": "torchtune.models.llama3.llama3_tokenizer",
    "llama3_2": "torchtune.models.llama3.llama3_tokenizer",
    "qwen2_5": "torchtune.models.qwen2_5.qwen2_5_tokenizer",
    "mistral": "torchtune.models.mistral.mistral_tokenizer",
}

#: LoRA-only keyword arguments of torchtune's LoRA builders (dropped for the base model).
LORA_KWARGS: frozenset[str] = frozenset(
    {"lora_attn_modules", "apply_lora_to_mlp", "apply_lora_to_output", "lora_rank",
     "lora_alpha", "lora_dropout", "use_dora", "quantize_base"}
)


@functools.lru_cache(maxsize=64)
def _named_size(shape: ModelShape) -> _NamedSize | None:
    # Cached per shape (frozen, hashable): a plan asks once per run, about one or two models.
    values = shape.to_dict()
    for named in _NAMED_SIZES:
        if named.family == shape.family and all(values[k] == v for k, v in named.dims):
            return named
    return None


def model_builder(shape: ModelShape) -> tuple[str, dict[str, Any]]:
    """Return the torchtune LoRA builder for a shape and its dimension kwargs.

    Args:
        shape: The model's shape.

    Returns:
        ``(dotpath, kwargs)``: kwargs is empty for a named size (the builder
        hard-codes its dimensions), else the dimensions for the component builder.

    Raises:
        RecipeError: When the family's builder cannot express the shape.
    """
    named = _named_size(shape)
    if named is not None:
        return named.builder, {}
    fam = shape.family
    if shape.head_dim * shape.num_heads != shape.hidden_size:
        raise RecipeError(
            f"{fam} shape with head_dim {shape.head_dim} x {shape.num_heads} heads != "
            f"hidden_size {shape.hidden_size}: torchtune's {fam} builder cannot express it"
        )
    if shape.tie_word_embeddings and fam in ("llama2", "llama3", "llama3_1", "mistral"):
        raise RecipeError(f"tied word embeddings are not supported by torchtune's {fam} builder")
    kwargs: dict[str, Any] = {
        "vocab_size": shape.vocab_size,
        "num_layers": shape.num_layers,
        "num_heads": shape.num_heads,
        "num_kv_heads": shape.num_kv_heads,
        "embed_dim": shape.hidden_size,
        "max_seq_len": shape.max_position_embeddings,
        "intermediate_dim": shape.intermediate_size,
        "norm_eps": shape.norm_eps,
    }
    if fam == "llama2":
        # torchtune's Llama 2 builder fixes the RoPE base at 10000.
        if abs(shape.rope_theta - 10000.0) > 1e-6:
            raise RecipeError(
                f"llama2-architecture model with rope_theta {shape.rope_theta}: "
                "torchtune's llama2 builder only supports 10000"
            )
    elif fam == "qwen2_5":
        kwargs["rope_base"] = shape.rope_theta
        kwargs["tie_word_embeddings"] = shape.tie_word_embeddings
    else:
        kwargs["rope_base"] = int(shape.rope_theta)
        if fam in ("llama3_1", "llama3_2"):
            kwargs["scale_factor"] = int(shape.rope_scaling_factor or 8)
        if fam == "llama3_2":
            kwargs["tie_word_embeddings"] = shape.tie_word_embeddings
    return _COMPONENT_BUILDERS[fam], kwargs


def base_builder(lora_builder: str) -> str:
    """Return the plain (non-LoRA) builder matching a LoRA builder dotpath.

    ``torchtune.models.llama2.lora_llama2`` -> ``torchtune.models.llama2.llama2``.

    Args:
        lora_builder: A torchtune LoRA builder dotpath.

    Returns:
        The dotpath of the builder without LoRA layers.
    """
    module, _, name = lora_builder.rpartition(".")
    if not name.startswith("lora_"):
        raise RecipeError(f"{lora_builder!r} is not a LoRA builder")
    return f"{module}.{name[len('lora_'):]}"


def model_type(shape: ModelShape) -> str:
    """Return the checkpointer ``model_type`` (LLAMA2, LLAMA3, LLAMA3_2, QWEN2, MISTRAL)."""
    return MODEL_TYPES[shape.family]


def tokenizer_path(shape: ModelShape, model_dir: str, files: Sequence[str]) -> str:
    """Pick the tokenizer file of a checkpoint directory.

    Args:
        shape: The model's shape.
        model_dir: The checkpoint directory.
        files: Paths relative to ``model_dir`` (a recursive listing).

    Returns:
        The tokenizer path: ``original/tokenizer.model`` (Llama 3, tiktoken),
        ``tokenizer.model`` (SentencePiece) or ``vocab.json`` (Qwen, with
        ``merges.txt`` beside it).

    Raises:
        RecipeError: When the listing has no usable tokenizer file.
    """
    present = {f.replace("\\", "/").lstrip("./") for f in files}
    if shape.family == "qwen2_5":
        wanted = ["vocab.json"]
        if "merges.txt" not in present:
            raise RecipeError(f"no tokenizer file in {model_dir} (looked for vocab.json and merges.txt); "
                              "copy the checkpoint's tokenizer files there")
    elif shape.family in ("llama3", "llama3_1", "llama3_2"):
        wanted = ["original/tokenizer.model", "tokenizer.model"]
    else:
        wanted = ["tokenizer.model", "original/tokenizer.model"]
    for name in wanted:
        if name in present:
            return posixpath.join(model_dir, name)
    raise RecipeError(f"no tokenizer file in {model_dir} (looked for {', '.join(wanted)}); "
                      "copy the checkpoint's tokenizer files there")


def tokenizer_config(
    shape: ModelShape, path: str, *, max_seq_len: int | None, prompt: str | None = None
) -> dict[str, Any]:
    """Return the ``tokenizer`` node of a torchtune config.

    Args:
        shape: The model's shape.
        path: The tokenizer file (see :func:`tokenizer_path`).
        max_seq_len: Truncation length, or None.
        prompt: A template with ``{input}`` wrapped around each user message, or None.

    Returns:
        The node. With a prompt its component is :func:`prompted_tokenizer`, which
        builds the family's tokenizer and adds the prompt in front of its own
        chat template, so training and evaluation format text identically.
    """
    component = TOKENIZER_COMPONENTS[shape.family]
    node: dict[str, Any] = {"_component_": component, "path": path}
    if shape.family == "qwen2_5":
        node["merges_file"] = posixpath.join(posixpath.dirname(path), "merges.txt")
    node["max_seq_len"] = max_seq_len
    if prompt is not None:
        split_prompt(prompt)  # fail early, at planning time
        node = {"_component_": HOOK, "base_component": component,
                "prompt": prompt, **{k: v for k, v in node.items() if k != "_component_"}}
    return node


def checkpoint_files(files: Sequence[str], index_json: Mapping[str, Any] | None = None) -> list[str]:
    """Pick the weight files of a Hugging Face checkpoint directory.

    Args:
        files: File names in the directory.
        index_json: The parsed ``model.safetensors.index.json`` if there is one; its
            ``weight_map`` names the shards authoritatively.

    Returns:
        Weight file names, sorted (torchtune loads them in the order given).

    Raises:
        RecipeError: When there are no weight files.
    """
    if index_json is not None:
        shards = sorted(set((index_json.get("weight_map") or {}).values()))
        if shards:
            return shards
    names = [f.replace("\\", "/").rsplit("/", 1)[-1] for f in files if "/" not in f.replace("\\", "/")]
    safetensors = sorted(n for n in names if n.endswith(".safetensors") and not n.startswith("adapter_"))
    if safetensors:
        return safetensors
    bins = sorted(n for n in names if n.startswith("pytorch_model") and n.endswith(".bin"))
    if bins:
        return bins
    raise RecipeError("no weight files (*.safetensors or pytorch_model*.bin) in the checkpoint directory")


# ------------------------------------------------------------------ recipes, argv


SINGLE_DEVICE_RECIPE = "lora_finetune_single_device"
DISTRIBUTED_RECIPE = "lora_finetune_distributed"

#: What ``tune run`` starts in place of :data:`DISTRIBUTED_RECIPE` when the processes are
#: CPU processes: the same recipe on gloo (see :mod:`planner.torchtune.gloo_recipe`).
#: ``tune run`` turns a path-like name of a non-built-in recipe into a dotted module name
#: and starts it with ``python -m``, so this is a module of the installed planner, not a file
#: looked up on disk.
CPU_DISTRIBUTED_RECIPE = "planner/torchtune/gloo_recipe.py"

#: Variables a multi-node job script must export before running :func:`training_argv`.
MULTINODE_ENV_VARS: tuple[str, ...] = ("MASTER_ADDR", "MASTER_PORT", "SLURM_JOB_ID")


def recipe_name(gpus: int = 1, nodes: int = 1) -> str:
    """Return the torchtune recipe for a GPU layout.

    Args:
        gpus: GPUs per node.
        nodes: Nodes.

    Returns:
        ``lora_finetune_single_device`` for one GPU on one node, else
        ``lora_finetune_distributed``.
    """
    if gpus < 1 or nodes < 1:
        raise RecipeError(f"gpus and nodes must be at least 1 (got gpus={gpus}, nodes={nodes})")
    return SINGLE_DEVICE_RECIPE if gpus * nodes == 1 else DISTRIBUTED_RECIPE


def recipe_file_for(shape: ModelShape, gpus: int = 1, nodes: int = 1) -> str:
    """Return the file in ``recipes/`` a run of this shape renders from.

    Args:
        shape: The model's shape.
        gpus: GPUs per node.
        nodes: Nodes.

    Returns:
        A file name such as ``llama3_2_1B_lora_single_device.yaml``.
    """
    named = _named_size(shape)
    stem = named.recipe_stem if named is not None else _FAMILY_RECIPE_STEM[shape.family]
    suffix = "single_device" if recipe_name(gpus, nodes) == SINGLE_DEVICE_RECIPE else "distributed"
    return f"{stem}_lora_{suffix}.yaml"


def recipe_files() -> list[str]:
    """Return every recipe file name the registry can hand out."""
    stems = {n.recipe_stem for n in _NAMED_SIZES} | set(_FAMILY_RECIPE_STEM.values())
    return sorted(f"{s}_lora_{k}.yaml" for s in stems for k in ("single_device", "distributed"))


def training_argv(config_path: str, gpus: int = 1, nodes: int = 1, device: str = "cuda") -> list[str]:
    """Return the ``tune run`` command of a run.

    For several nodes the command uses torchrun's c10d rendezvous; it must run once
    per node (``srun --ntasks-per-node=1``) and the job script must export
    :data:`MULTINODE_ENV_VARS` (``MASTER_ADDR`` = first host of the allocation,
    ``MASTER_PORT`` = a free port). Those arguments hold ``$VAR`` references: render
    the command with :func:`training_command`, which leaves them to the shell.

    Args:
        config_path: The run's ``finetune.yaml``.
        gpus: GPUs per node (processes per node).
        nodes: Nodes.
        device: ``cpu`` runs the distributed recipe on gloo (:data:`CPU_DISTRIBUTED_RECIPE`).

    Returns:
        The argv.
    """
    recipe = recipe_name(gpus, nodes)
    if recipe == DISTRIBUTED_RECIPE and device == "cpu":
        recipe = CPU_DISTRIBUTED_RECIPE
    argv = ["tune", "run"]
    if nodes > 1:
        argv += [
            "--nnodes", str(nodes),
            "--nproc_per_node", str(gpus),
            "--rdzv_backend", "c10d",
            "--rdzv_endpoint", "$MASTER_ADDR:$MASTER_PORT",
            "--rdzv_id", "$SLURM_JOB_ID",
        ]
    elif gpus > 1:
        argv += ["--nproc_per_node", str(gpus)]
    return argv + [recipe, "--config", config_path]


def training_command(config_path: str, gpus: int = 1, nodes: int = 1, device: str = "cuda") -> str:
    """Return :func:`training_argv` as one shell line.

    Arguments are shell-quoted, except that ``$VAR`` references stay expandable
    (double quotes), so the job script's exported rendezvous address is used.

    Args:
        config_path: The run's ``finetune.yaml``.
        gpus: GPUs per node.
        nodes: Nodes.
        device: ``cuda`` or ``cpu``.

    Returns:
        The command line.
    """
    parts = []
    for arg in training_argv(config_path, gpus, nodes, device):
        parts.append(f'"{arg}"' if arg.startswith("$") else shlex.quote(arg))
    return " ".join(parts)
