"""Model shapes: what a Hugging Face ``config.json`` says about a model's architecture and size.

Pure: takes the parsed ``config.json`` and returns a :class:`ModelShape`; never reads files.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Mapping

from planner.spec.errors import VerificationError


class RecipeError(VerificationError, ValueError):
    """A model, setting or recipe the registry cannot turn into a torchtune config.

    A planner error (exit 3, like any unusable resource), so wherever one escapes the user
    reads one line instead of a traceback; still a ValueError for callers that test values.
    """


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


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _dimension(config: Mapping[str, Any], arch: str, key: str, default: int | None = None) -> int:
    """A whole number > 0 from config.json; ``default`` when absent or null (None: required)."""
    value = config.get(key)
    if value is None:
        if default is None:
            raise RecipeError(f"config.json of {arch} lacks {key!r}; it is not a complete Hugging Face config")
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise RecipeError(f"config.json of {arch}: {key} must be a whole number > 0 (got {_short(value)})")
    return value


def _llama_family(config: Mapping[str, Any]) -> tuple[str, float | None]:
    """Tell Llama 2 / 3 / 3.1 / 3.2 apart from their RoPE settings.

    Llama 3.1 and 3.2 both carry ``rope_scaling.rope_type: llama3`` and differ in the
    factor (8 vs 32); Llama 3 has a 500k RoPE base and no scaling; the rest is Llama 2
    (including small custom checkpoints).
    """
    scaling = config.get("rope_scaling") or {}
    rope_type = scaling.get("rope_type") or scaling.get("type")
    if rope_type == "llama3":
        factor = scaling.get("factor", 8.0)
        if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not 0 < factor < float("inf"):
            raise RecipeError(f"config.json: rope_scaling.factor must be a positive number (got {_short(factor)})")
        factor = float(factor)
        return ("llama3_2" if factor >= 16 else "llama3_1"), factor
    if scaling:
        raise RecipeError(
            f"LlamaForCausalLM with rope_scaling {_short(dict(scaling))} is not supported "
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
    if not isinstance(config, Mapping):
        raise RecipeError(f"config.json holds a {type(config).__name__}, not a JSON object")
    archs = config.get("architectures") or []
    if not isinstance(archs, list) or not all(isinstance(a, str) for a in archs):
        raise RecipeError(f"config.json: architectures must be a list of names, e.g. [\"LlamaForCausalLM\"] (got {_short(archs)})")
    arch = archs[0] if archs else config.get("model_type", "<none>")
    if not isinstance(arch, str) or arch not in SUPPORTED_ARCHITECTURES:
        raise RecipeError(
            f"unsupported architecture {_short(arch)}; supported: {', '.join(SUPPORTED_ARCHITECTURES)}"
        )
    hidden = _dimension(config, arch, "hidden_size")
    layers = _dimension(config, arch, "num_hidden_layers")
    heads = _dimension(config, arch, "num_attention_heads")
    inter = _dimension(config, arch, "intermediate_size")
    vocab = _dimension(config, arch, "vocab_size")
    kv_heads = _dimension(config, arch, "num_key_value_heads", heads)
    if hidden % heads and config.get("head_dim") is None:
        raise RecipeError(f"config.json of {arch}: hidden_size {hidden} is not a multiple of num_attention_heads {heads}")
    head_dim = _dimension(config, arch, "head_dim", hidden // heads)
    if heads % kv_heads:
        raise RecipeError(f"config.json of {arch}: num_attention_heads {heads} is not a multiple of num_key_value_heads {kv_heads}")
    for key in ("rope_theta", "rms_norm_eps"):
        value = config.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < float("inf")):
            raise RecipeError(f"config.json of {arch}: {key} must be a positive number (got {_short(value)})")
    _dimension(config, arch, "max_position_embeddings", 4096)
    scaling = config.get("rope_scaling")
    if scaling is not None and not isinstance(scaling, Mapping):
        raise RecipeError(f"config.json of {arch}: rope_scaling must be an object or null (got {_short(scaling)})")
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
