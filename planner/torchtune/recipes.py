"""Recipe registry: every torchtune-specific detail of training and evaluation.

Everything the planner knows about torchtune lives here (builders, tokenizers,
checkpointer model types, config keys, the ``tune run`` command), so another
backend can be added beside it later without touching the rest of ``planner``.

The module is pure: it takes text and data (a parsed ``config.json``, a directory
listing, the text of a recipe YAML) and returns data. It never reads files, runs
processes or looks at the environment. The one exception is
:func:`prompted_tokenizer`, a hook that torchtune itself calls on the compute node
when a run has a prompt template; it imports torchtune lazily.
"""

from __future__ import annotations

import copy
import posixpath
import shlex
from dataclasses import asdict, dataclass
from typing import Any, Mapping, Sequence

import yaml


class RecipeError(ValueError):
    """A model, setting or recipe the registry cannot turn into a torchtune config."""


# --------------------------------------------------------------------------- shapes

#: Hugging Face architectures the registry understands, and the family they start in.
SUPPORTED_ARCHITECTURES: dict[str, str] = {
    "LlamaForCausalLM": "llama",
    "Qwen2ForCausalLM": "qwen2_5",
    "MistralForCausalLM": "mistral",
}


@dataclass(frozen=True)
class ModelShape:
    """The dimensions of a decoder-only model, read from its ``config.json``.

    Attributes:
        architecture: Hugging Face architecture name (``LlamaForCausalLM`` ...).
        family: ``llama2``, ``llama3``, ``llama3_1``, ``llama3_2``, ``qwen2_5`` or ``mistral``.
        hidden_size: Embedding dimension.
        num_layers: Decoder layers.
        num_heads: Attention heads.
        num_kv_heads: Key/value heads.
        head_dim: Dimension per head.
        intermediate_size: MLP hidden dimension.
        vocab_size: Vocabulary size.
        max_position_embeddings: Longest sequence the model was built for.
        tie_word_embeddings: Whether the output projection shares the embedding.
        rope_theta: RoPE base.
        rope_scaling_factor: Llama-3.1-style RoPE scaling factor, or None.
        norm_eps: RMSNorm epsilon.
        attention_bias: Whether q/k/v projections carry a bias (Qwen2).
        param_count: Parameters computed from the shape.
    """

    architecture: str
    family: str
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    max_position_embeddings: int
    tie_word_embeddings: bool
    rope_theta: float
    rope_scaling_factor: float | None
    norm_eps: float
    attention_bias: bool
    param_count: int

    def to_dict(self) -> dict[str, Any]:
        """Return the shape as a plain dict (for YAML/JSON)."""
        return asdict(self)


def count_parameters(
    *,
    hidden_size: int,
    num_layers: int,
    num_heads: int,
    num_kv_heads: int,
    head_dim: int,
    intermediate_size: int,
    vocab_size: int,
    tie_word_embeddings: bool,
    attention_bias: bool = False,
) -> int:
    """Count the parameters of a Llama-style decoder from its dimensions.

    Args:
        hidden_size: Embedding dimension.
        num_layers: Decoder layers.
        num_heads: Attention heads.
        num_kv_heads: Key/value heads.
        head_dim: Dimension per head.
        intermediate_size: MLP hidden dimension.
        vocab_size: Vocabulary size.
        tie_word_embeddings: Whether the output projection shares the embedding.
        attention_bias: Whether q/k/v carry biases.

    Returns:
        The parameter count.
    """
    q = hidden_size * num_heads * head_dim
    kv = 2 * hidden_size * num_kv_heads * head_dim
    o = num_heads * head_dim * hidden_size
    bias = (num_heads + 2 * num_kv_heads) * head_dim if attention_bias else 0
    mlp = 3 * hidden_size * intermediate_size
    norms = 2 * hidden_size
    per_layer = q + kv + o + bias + mlp + norms
    embed = vocab_size * hidden_size
    head = 0 if tie_word_embeddings else vocab_size * hidden_size
    return embed + num_layers * per_layer + hidden_size + head


def _llama_family(config: Mapping[str, Any]) -> tuple[str, float | None]:
    """Tell Llama 2 / 3 / 3.1 / 3.2 apart from their RoPE settings.

    Llama 3.1 and 3.2 both carry ``rope_scaling.rope_type: llama3`` and differ in the
    factor (8 vs 32); Llama 3 has a 500k RoPE base and no scaling; the rest is Llama 2
    (including small custom checkpoints).
    """
    scaling = config.get("rope_scaling") or {}
    rope_type = scaling.get("rope_type") or scaling.get("type")
    if rope_type == "llama3":
        factor = float(scaling.get("factor", 8.0))
        return ("llama3_2" if factor >= 16 else "llama3_1"), factor
    if scaling:
        raise RecipeError(
            f"LlamaForCausalLM with rope_scaling {dict(scaling)!r} is not supported "
            "(supported: none, or rope_type 'llama3')"
        )
    if float(config.get("rope_theta", 10000.0)) >= 100000 and int(config.get("vocab_size", 0)) >= 128000:
        return "llama3", None
    return "llama2", None


def model_shape_from_config(config: Mapping[str, Any]) -> ModelShape:
    """Read a model's shape from its Hugging Face ``config.json``.

    Args:
        config: The parsed ``config.json``.

    Returns:
        The :class:`ModelShape`.

    Raises:
        RecipeError: For an unsupported architecture or a config missing dimensions.
    """
    archs = config.get("architectures") or []
    arch = archs[0] if archs else config.get("model_type", "<none>")
    if arch not in SUPPORTED_ARCHITECTURES:
        raise RecipeError(
            f"unsupported architecture {arch!r}; supported: {', '.join(SUPPORTED_ARCHITECTURES)}"
        )
    try:
        hidden = int(config["hidden_size"])
        layers = int(config["num_hidden_layers"])
        heads = int(config["num_attention_heads"])
        inter = int(config["intermediate_size"])
        vocab = int(config["vocab_size"])
    except KeyError as exc:
        raise RecipeError(f"config.json of {arch} lacks {exc.args[0]!r}") from None
    kv_heads = int(config.get("num_key_value_heads") or heads)
    head_dim = int(config.get("head_dim") or hidden // heads)
    family = SUPPORTED_ARCHITECTURES[arch]
    factor: float | None = None
    if family == "llama":
        family, factor = _llama_family(config)
    default_theta = {"qwen2_5": 1000000.0, "llama3": 500000.0, "llama3_1": 500000.0, "llama3_2": 500000.0}
    tie = bool(config.get("tie_word_embeddings", False))
    bias = bool(config.get("attention_bias", family == "qwen2_5"))
    return ModelShape(
        architecture=arch,
        family=family,
        hidden_size=hidden,
        num_layers=layers,
        num_heads=heads,
        num_kv_heads=kv_heads,
        head_dim=head_dim,
        intermediate_size=inter,
        vocab_size=vocab,
        max_position_embeddings=int(config.get("max_position_embeddings") or 4096),
        tie_word_embeddings=tie,
        rope_theta=float(config.get("rope_theta") or default_theta.get(family, 10000.0)),
        rope_scaling_factor=factor,
        norm_eps=float(config.get("rms_norm_eps") or 1e-5),
        attention_bias=bias,
        param_count=count_parameters(
            hidden_size=hidden,
            num_layers=layers,
            num_heads=heads,
            num_kv_heads=kv_heads,
            head_dim=head_dim,
            intermediate_size=inter,
            vocab_size=vocab,
            tie_word_embeddings=tie,
            attention_bias=bias,
        ),
    )


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


def _named_size(shape: ModelShape) -> _NamedSize | None:
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
            raise RecipeError(f"{model_dir}: Qwen tokenizer needs vocab.json and merges.txt")
    elif shape.family in ("llama3", "llama3_1", "llama3_2"):
        wanted = ["original/tokenizer.model", "tokenizer.model"]
    else:
        wanted = ["tokenizer.model", "original/tokenizer.model"]
    for name in wanted:
        if name in present:
            return posixpath.join(model_dir, name)
    raise RecipeError(f"{model_dir}: no tokenizer file (looked for {', '.join(wanted)})")


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
        _split_prompt(prompt)  # fail early, at planning time
        node = {"_component_": f"{__name__}.prompted_tokenizer", "base_component": component,
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


def training_argv(config_path: str, gpus: int = 1, nodes: int = 1) -> list[str]:
    """Return the ``tune run`` command of a run.

    For several nodes the command uses torchrun's c10d rendezvous; it must run once
    per node (``srun --ntasks-per-node=1``) and the job script must export
    :data:`MULTINODE_ENV_VARS` (``MASTER_ADDR`` = first host of the allocation,
    ``MASTER_PORT`` = a free port). Those arguments hold ``$VAR`` references: render
    the command with :func:`training_command`, which leaves them to the shell.

    Args:
        config_path: The run's ``finetune.yaml``.
        gpus: GPUs per node.
        nodes: Nodes.

    Returns:
        The argv.
    """
    recipe = recipe_name(gpus, nodes)
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


def training_command(config_path: str, gpus: int = 1, nodes: int = 1) -> str:
    """Return :func:`training_argv` as one shell line.

    Arguments are shell-quoted, except that ``$VAR`` references stay expandable
    (double quotes), so the job script's exported rendezvous address is used.

    Args:
        config_path: The run's ``finetune.yaml``.
        gpus: GPUs per node.
        nodes: Nodes.

    Returns:
        The command line.
    """
    parts = []
    for arg in training_argv(config_path, gpus, nodes):
        parts.append(f'"{arg}"' if arg.startswith("$") else shlex.quote(arg))
    return " ".join(parts)


# ----------------------------------------------------------------- configs


#: Settings :func:`finetune_config` accepts, with defaults (None = keep the recipe's
#: value, or the behaviour noted).
DEFAULT_SETTINGS: dict[str, Any] = {
    "lora_rank": 8,
    "lora_alpha": None,  # 2 * lora_rank
    "learning_rate": None,
    "batch_size": None,
    "gradient_accumulation_steps": None,
    "epochs": None,
    "train_samples": None,  # all
    "max_seq_len": None,  # recipe value, capped at the model's max_position_embeddings
    "packed": None,
    "weight_decay": None,
    "num_warmup_steps": None,
    "system_prompt": "",
    "prompt": None,  # plain input
    "seed": None,
    "lora_attn_modules": None,
    "max_steps_per_epoch": None,
    "device": "cuda",
    "dtype": "bf16",
}


def _split_prompt(prompt: str) -> tuple[str, str]:
    """Split a ``{input}`` template into the text before and after the input."""
    if prompt.count("{input}") != 1:
        raise RecipeError(f"prompt must contain '{{input}}' exactly once, got {prompt!r}")
    before, after = prompt.split("{input}")
    return before, after


def format_prompt(prompt: str | None, text: str) -> str:
    """Apply a prompt template to one input, as training does.

    Args:
        prompt: Template with ``{input}``, or None for the plain input.
        text: The input.

    Returns:
        The user message text.
    """
    if prompt is None:
        return text
    before, after = _split_prompt(prompt)
    return before + text + after


def _load_recipe(recipe_text: str) -> dict[str, Any]:
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
        settings: Run settings; keys in :data:`DEFAULT_SETTINGS` (``lora_rank`` first).
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
        raise RecipeError(f"unknown settings {unknown}; known: {', '.join(DEFAULT_SETTINGS)}")
    s = {**DEFAULT_SETTINGS, **{k: v for k, v in settings.items()}}
    if _within(run_dir, model_dir):
        # torchtune raises on this, but only after it has created files.
        raise RecipeError(f"run folder {run_dir} must not be inside the model directory {model_dir}")
    if not checkpoint_files:
        raise RecipeError("no checkpoint files given")

    cfg = copy.deepcopy(_load_recipe(recipe_text))
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
    model["lora_dropout"] = float(old_model.get("lora_dropout", 0.0))
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
    ft = copy.deepcopy(dict(finetune_cfg))
    lora_model = dict(ft["model"])
    if adapter_dir is None:
        model = {k: v for k, v in lora_model.items() if k not in LORA_KWARGS}
        model["_component_"] = base_builder(lora_model["_component_"])
    else:
        model = lora_model
    ckpt = dict(ft["checkpointer"])
    out_dir = posixpath.dirname(results_path) or "."
    # Base weights always come from the original checkpoint directory, never from
    # an epoch folder, so each evaluation sees exactly its own adapter.
    ckpt["output_dir"] = out_dir
    ckpt["recipe_checkpoint"] = None
    tokenizer = dict(ft["tokenizer"])
    if prompt is not None and tokenizer.get("prompt") != prompt:
        base = tokenizer.get("base_component", tokenizer["_component_"])
        tokenizer = {"_component_": f"{__name__}.prompted_tokenizer", "base_component": base,
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


# ------------------------------------------------------- runtime hook (torchtune)


class _UserPromptTemplate:
    """Wrap user messages in a prompt, then apply the tokenizer's own template."""

    def __init__(self, prompt: str, inner: Any) -> None:
        self.before, self.after = _split_prompt(prompt)
        self.inner = inner

    def __call__(self, messages: list[Any], inference: bool = False) -> list[Any]:
        from torchtune.data import Message

        wrapped = []
        for m in messages:
            if m.role == "user":
                content = list(m.content)
                if self.before:
                    content = [{"type": "text", "content": self.before}] + content
                if self.after:
                    content = content + [{"type": "text", "content": self.after}]
                m = Message(role=m.role, content=content, masked=m.masked, ipython=m.ipython, eot=m.eot)
            wrapped.append(m)
        # Tokenizers call their template with the messages only (some templates,
        # e.g. Llama2ChatTemplate, take no other argument).
        return self.inner(wrapped) if self.inner is not None else wrapped


def prompted_tokenizer(base_component: str, prompt: str, **kwargs: Any) -> Any:
    """Build a torchtune tokenizer whose user messages are wrapped in ``prompt``.

    torchtune instantiates this from a config's ``tokenizer`` node (it cannot take a
    template with parameters from YAML); both training and evaluation go through it.

    Args:
        base_component: Dotpath of the family's tokenizer builder.
        prompt: Template with ``{input}`` exactly once.
        **kwargs: Arguments of the base builder (path, max_seq_len, ...).

    Returns:
        The tokenizer.
    """
    from torchtune.config._utils import _get_component_from_path

    tokenizer = _get_component_from_path(base_component)(**kwargs)
    tokenizer.prompt_template = _UserPromptTemplate(prompt, getattr(tokenizer, "prompt_template", None))
    return tokenizer


def dump_config(cfg: Mapping[str, Any]) -> str:
    """Return a config as YAML text, keys in the order given.

    Args:
        cfg: The config.

    Returns:
        YAML text.
    """
    return yaml.safe_dump(dict(cfg), sort_keys=False, default_flow_style=False, allow_unicode=True)
