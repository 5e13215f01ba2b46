"""The recipe registry: shapes, builders, files, commands, and torchtune's validation."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from train_support import RECIPES, require_torchtune, tune_executable

from planner.torchtune import recipes as R

LLAMA3_2_1B: dict[str, Any] = {
    "architectures": ["LlamaForCausalLM"], "hidden_size": 2048, "intermediate_size": 8192,
    "num_hidden_layers": 16, "num_attention_heads": 32, "num_key_value_heads": 8,
    "vocab_size": 128256, "max_position_embeddings": 131072, "rope_theta": 500000.0,
    "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                     "original_max_position_embeddings": 8192, "rope_type": "llama3"},
    "tie_word_embeddings": True, "rms_norm_eps": 1e-5, "head_dim": 64,
}
LLAMA3_2_3B = {**LLAMA3_2_1B, "hidden_size": 3072, "num_hidden_layers": 28,
               "num_attention_heads": 24, "head_dim": 128}
LLAMA3_1_8B: dict[str, Any] = {
    **LLAMA3_2_1B, "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
    "num_attention_heads": 32, "head_dim": 128, "tie_word_embeddings": False,
    "rope_scaling": {"factor": 8.0, "rope_type": "llama3"},
}
QWEN2_5_1_5B: dict[str, Any] = {
    "architectures": ["Qwen2ForCausalLM"], "hidden_size": 1536, "intermediate_size": 8960,
    "num_hidden_layers": 28, "num_attention_heads": 12, "num_key_value_heads": 2,
    "vocab_size": 151936, "max_position_embeddings": 32768, "rope_theta": 1000000.0,
    "tie_word_embeddings": True, "rms_norm_eps": 1e-6,
}
MISTRAL_7B: dict[str, Any] = {
    "architectures": ["MistralForCausalLM"], "hidden_size": 4096, "intermediate_size": 14336,
    "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8,
    "vocab_size": 32000, "max_position_embeddings": 32768, "rope_theta": 10000.0,
    "tie_word_embeddings": False, "rms_norm_eps": 1e-5,
}
TINY_LLAMA2: dict[str, Any] = {
    "architectures": ["LlamaForCausalLM"], "hidden_size": 64, "intermediate_size": 128,
    "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
    "vocab_size": 128, "max_position_embeddings": 256, "rope_theta": 10000.0,
    "tie_word_embeddings": False, "rms_norm_eps": 1e-5,
}
CUSTOM_QWEN: dict[str, Any] = {**QWEN2_5_1_5B, "num_hidden_layers": 4, "hidden_size": 256,
                               "intermediate_size": 512, "num_attention_heads": 4}

ALL_CONFIGS = {
    "llama3_2_1b": LLAMA3_2_1B, "llama3_2_3b": LLAMA3_2_3B, "llama3_1_8b": LLAMA3_1_8B,
    "qwen2_5_1_5b": QWEN2_5_1_5B, "mistral_7b": MISTRAL_7B, "tiny_llama2": TINY_LLAMA2,
    "custom_qwen": CUSTOM_QWEN,
}
LISTINGS = {
    "llama3_2_1b": ["config.json", "model.safetensors", "original/tokenizer.model", "tokenizer.json"],
    "llama3_2_3b": ["config.json", "model-00002-of-00002.safetensors", "model-00001-of-00002.safetensors",
                    "original/tokenizer.model"],
    "llama3_1_8b": ["config.json"] + [f"model-0000{i}-of-00004.safetensors" for i in (3, 1, 4, 2)]
    + ["original/tokenizer.model"],
    "qwen2_5_1_5b": ["config.json", "model.safetensors", "vocab.json", "merges.txt", "tokenizer.json"],
    "mistral_7b": ["config.json", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
                   "tokenizer.model"],
    "tiny_llama2": ["config.json", "model.safetensors", "tokenizer.model"],
    "custom_qwen": ["config.json", "model.safetensors", "vocab.json", "merges.txt"],
}


# ------------------------------------------------------------------- shapes


@pytest.mark.parametrize(
    ("name", "family", "params", "builder", "model_type"),
    [
        ("llama3_2_1b", "llama3_2", 1_235_814_400, "torchtune.models.llama3_2.lora_llama3_2_1b", "LLAMA3_2"),
        ("llama3_2_3b", "llama3_2", 3_212_749_824, "torchtune.models.llama3_2.lora_llama3_2_3b", "LLAMA3_2"),
        ("llama3_1_8b", "llama3_1", 8_030_261_248, "torchtune.models.llama3_1.lora_llama3_1_8b", "LLAMA3"),
        ("qwen2_5_1_5b", "qwen2_5", 1_543_714_304,
         "torchtune.models.qwen2_5.lora_qwen2_5_1_5b_instruct", "QWEN2"),
        ("mistral_7b", "mistral", 7_241_732_096, "torchtune.models.mistral.lora_mistral_7b", "MISTRAL"),
    ],
)
def test_named_shapes(name: str, family: str, params: int, builder: str, model_type: str) -> None:
    shape = R.model_shape_from_config(ALL_CONFIGS[name])
    assert shape.family == family
    assert shape.param_count == params
    assert R.model_builder(shape) == (builder, {})
    assert R.model_type(shape) == model_type


def test_custom_llama2_shape_gets_component_builder() -> None:
    shape = R.model_shape_from_config(TINY_LLAMA2)
    assert (shape.family, shape.num_layers, shape.hidden_size, shape.num_kv_heads) == ("llama2", 2, 64, 2)
    assert shape.head_dim == 16 and shape.max_position_embeddings == 256
    builder, kwargs = R.model_builder(shape)
    assert builder == "torchtune.models.llama2.lora_llama2"
    assert kwargs == {"vocab_size": 128, "num_layers": 2, "num_heads": 4, "num_kv_heads": 2, "embed_dim": 64,
                      "max_seq_len": 256, "intermediate_dim": 128, "norm_eps": 1e-5}
    assert R.model_type(shape) == "LLAMA2"
    assert R.recipe_file_for(shape) == "llama2_custom_lora_single_device.yaml"


def test_custom_qwen_shape_keeps_rope_and_tying() -> None:
    shape = R.model_shape_from_config(CUSTOM_QWEN)
    builder, kwargs = R.model_builder(shape)
    assert builder == "torchtune.models.qwen2.lora_qwen2"
    assert kwargs["rope_base"] == 1000000.0 and kwargs["tie_word_embeddings"] is True
    assert kwargs["num_layers"] == 4 and kwargs["embed_dim"] == 256
    assert shape.attention_bias  # Qwen2 q/k/v carry biases, counted in param_count


def test_unknown_architecture_names_it_and_lists_supported() -> None:
    with pytest.raises(R.RecipeError) as err:
        R.model_shape_from_config({**TINY_LLAMA2, "architectures": ["GPTNeoXForCausalLM"]})
    message = str(err.value)
    assert "GPTNeoXForCausalLM" in message
    for arch in ("LlamaForCausalLM", "Qwen2ForCausalLM", "MistralForCausalLM"):
        assert arch in message
    assert isinstance(err.value, ValueError)


def test_unsupported_custom_shapes_are_refused() -> None:
    with pytest.raises(R.RecipeError, match="rope_theta"):
        R.model_builder(R.model_shape_from_config({**TINY_LLAMA2, "rope_theta": 20000.0}))
    with pytest.raises(R.RecipeError, match="tied"):
        R.model_builder(R.model_shape_from_config({**TINY_LLAMA2, "tie_word_embeddings": True}))


# -------------------------------------------------------- files and commands


def test_checkpoint_files() -> None:
    assert R.checkpoint_files(LISTINGS["llama3_1_8b"]) == [f"model-0000{i}-of-00004.safetensors" for i in (1, 2, 3, 4)]
    index = {"weight_map": {"a": "model-00002-of-00002.safetensors", "b": "model-00001-of-00002.safetensors"}}
    assert R.checkpoint_files(["x"], index) == ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    assert R.checkpoint_files(["adapter_model.safetensors", "pytorch_model.bin"]) == ["pytorch_model.bin"]
    with pytest.raises(R.RecipeError):
        R.checkpoint_files(["config.json"])


@pytest.mark.parametrize(
    ("name", "expected"),
    [("llama3_2_1b", "original/tokenizer.model"), ("qwen2_5_1_5b", "vocab.json"),
     ("mistral_7b", "tokenizer.model"), ("tiny_llama2", "tokenizer.model")],
)
def test_tokenizer_path(name: str, expected: str) -> None:
    shape = R.model_shape_from_config(ALL_CONFIGS[name])
    assert R.tokenizer_path(shape, "/models/m", LISTINGS[name]) == f"/models/m/{expected}"


def test_tokenizer_missing_is_an_error() -> None:
    shape = R.model_shape_from_config(QWEN2_5_1_5B)
    with pytest.raises(R.RecipeError, match="merges.txt"):
        R.tokenizer_path(shape, "/m", ["vocab.json"])


def test_recipe_names_and_argv() -> None:
    assert R.recipe_name(1, 1) == "lora_finetune_single_device"
    assert R.recipe_name(2, 1) == R.recipe_name(1, 2) == "lora_finetune_distributed"
    assert R.training_argv("f.yaml") == ["tune", "run", "lora_finetune_single_device", "--config", "f.yaml"]
    assert R.training_argv("f.yaml", 4) == ["tune", "run", "--nproc_per_node", "4",
                                            "lora_finetune_distributed", "--config", "f.yaml"]
    argv = R.training_argv("f.yaml", 4, 2)
    assert argv[argv.index("--nnodes") + 1] == "2"
    assert argv[argv.index("--rdzv_backend") + 1] == "c10d"
    assert argv[argv.index("--rdzv_endpoint") + 1] == "$MASTER_ADDR:$MASTER_PORT"
    assert argv[-3:] == ["lora_finetune_distributed", "--config", "f.yaml"]
    line = R.training_command("/a b/f.yaml", 4, 2)
    assert '"$MASTER_ADDR:$MASTER_PORT"' in line and "'/a b/f.yaml'" in line
    assert set(R.MULTINODE_ENV_VARS) >= {"MASTER_ADDR", "MASTER_PORT"}
    with pytest.raises(R.RecipeError):
        R.recipe_name(0, 1)


def test_recipe_files_exist_and_open_with_how_to_run() -> None:
    on_disk = sorted(p.name for p in RECIPES.glob("*.yaml"))
    assert on_disk == R.recipe_files()
    for name in on_disk:
        text = (RECIPES / name).read_text()
        head = text.split("\n\n", 1)[0]
        assert head.startswith("#")
        recipe = "lora_finetune_distributed" if "distributed" in name else "lora_finetune_single_device"
        assert f"tune run" in text.split("output_dir:")[0] and recipe in head + text.split("output_dir:")[0]
        assert f"--config recipes/{name}" in text
        cfg = yaml.safe_load(text)
        assert cfg["save_adapter_weights_only"] is True and cfg["compile"] is False
        ds = cfg["dataset"]
        assert ds["_component_"] == "torchtune.datasets.instruct_dataset"
        assert (ds["source"], ds["field"], ds["split"], ds["train_on_input"]) == ("json", "train", "train", False)
        assert {"data_files", "column_map", "new_system_prompt", "packed"} <= set(ds)


# ---------------------------------------------------------------- configs


def _render(name: str, gpus: int = 1, nodes: int = 1, **settings: Any) -> dict[str, Any]:
    shape = R.model_shape_from_config(ALL_CONFIGS[name])
    files = LISTINGS[name]
    model_dir = f"/models/{name}"
    recipe = (RECIPES / R.recipe_file_for(shape, gpus, nodes)).read_text()
    return R.finetune_config(
        recipe_text=recipe, shape=shape, model_dir=model_dir,
        checkpoint_files=R.checkpoint_files(files),
        tokenizer_path=R.tokenizer_path(shape, model_dir, files),
        run_dir=f"/scratch/exp/{name}_run", dataset_path="/data/words.json",
        settings={"lora_rank": 16, **settings}, gpus=gpus, nodes=nodes,
    )


def test_finetune_config_fills_every_setting() -> None:
    cfg = _render("tiny_llama2", learning_rate=1e-3, batch_size=2, gradient_accumulation_steps=4, epochs=3,
                  train_samples=100, max_seq_len=1000, packed=True, weight_decay=0.0, num_warmup_steps=5,
                  system_prompt="Be brief.", prompt="Q: {input}\nA:", seed=7, max_steps_per_epoch=9,
                  device="cpu", dtype="fp32", lora_attn_modules=["q_proj", "k_proj"])
    assert cfg["model"]["lora_rank"] == 16 and cfg["model"]["lora_alpha"] == 32.0
    assert cfg["model"]["lora_attn_modules"] == ["q_proj", "k_proj"]
    assert cfg["optimizer"]["lr"] == 1e-3 and cfg["optimizer"]["weight_decay"] == 0.0
    assert "fused" not in cfg["optimizer"]  # CPU
    assert (cfg["batch_size"], cfg["gradient_accumulation_steps"], cfg["epochs"]) == (2, 4, 3)
    assert cfg["max_steps_per_epoch"] == 9 and cfg["seed"] == 7
    assert cfg["lr_scheduler"]["num_warmup_steps"] == 5
    assert cfg["dataset"]["split"] == "train[:100]" and cfg["dataset"]["packed"] is True
    assert cfg["dataset"]["new_system_prompt"] == "Be brief."
    assert cfg["dataset"]["data_files"] == "/data/words.json"
    # max_seq_len is capped at the model's positions
    assert cfg["tokenizer"]["max_seq_len"] == 256
    assert cfg["tokenizer"]["prompt"] == "Q: {input}\nA:"
    assert cfg["tokenizer"]["base_component"] == "torchtune.models.llama2.llama2_tokenizer"
    assert cfg["output_dir"] == cfg["checkpointer"]["output_dir"] == "/scratch/exp/tiny_llama2_run"
    assert cfg["metric_logger"]["log_dir"] == "/scratch/exp/tiny_llama2_run/logs"
    assert cfg["log_every_n_steps"] == 1 and cfg["log_peak_memory_stats"] is True
    assert cfg["save_adapter_weights_only"] is True and cfg["compile"] is False
    assert (cfg["device"], cfg["dtype"]) == ("cpu", "fp32")


def test_finetune_config_defaults() -> None:
    cfg = _render("llama3_2_1b")
    assert cfg["model"]["lora_alpha"] == 32.0
    assert cfg["dataset"]["split"] == "train" and cfg["dataset"]["new_system_prompt"] is None
    assert cfg["tokenizer"]["_component_"] == "torchtune.models.llama3.llama3_tokenizer"
    assert (cfg["device"], cfg["dtype"]) == ("cuda", "bf16")
    assert cfg["max_steps_per_epoch"] is None
    assert cfg["checkpointer"]["model_type"] == "LLAMA3_2"
    assert cfg["model"]["apply_lora_to_output"] is False  # tied embeddings


def test_finetune_config_refuses_bad_input() -> None:
    with pytest.raises(R.RecipeError, match="unknown settings"):
        _render("tiny_llama2", lora_rnak=4)
    with pytest.raises(R.RecipeError, match="input"):
        _render("tiny_llama2", prompt="no placeholder")
    shape = R.model_shape_from_config(TINY_LLAMA2)
    with pytest.raises(R.RecipeError, match="inside the model directory"):
        R.finetune_config(recipe_text=(RECIPES / "llama2_custom_lora_single_device.yaml").read_text(),
                          shape=shape, model_dir="/m", checkpoint_files=["model.safetensors"],
                          tokenizer_path="/m/tokenizer.model", run_dir="/m/run", dataset_path="/d.json",
                          settings={"lora_rank": 4})


def test_eval_config_base_and_adapter() -> None:
    ft = _render("tiny_llama2", system_prompt="Sys", prompt="W: {input}")
    common = dict(task="capitalization", finetune_cfg=ft, dataset_path="/data/words.json",
                  system_prompt="Sys", prompt="W: {input}")
    base = R.eval_config(run="tiny_base", epoch=None, adapter_dir=None,
                         results_path="/exp/tiny_base/eval/capitalization/results.json", **common)
    assert base["model"]["_component_"] == "torchtune.models.llama2.llama2"
    assert not set(base["model"]) & R.LORA_KWARGS
    assert base["adapter_dir"] is None and base["epoch"] is None
    assert base["tokenizer"] == ft["tokenizer"]
    assert base["checkpointer"]["checkpoint_dir"] == ft["checkpointer"]["checkpoint_dir"]
    assert base["checkpointer"]["output_dir"] == "/exp/tiny_base/eval/capitalization"
    tuned = R.eval_config(run="tiny_rank16", epoch=1, adapter_dir="/exp/tiny_rank16/epoch_1", limit=10,
                          results_path="/exp/tiny_rank16/eval/capitalization_epoch1/results.json", **common)
    assert tuned["model"] == ft["model"]
    assert (tuned["adapter_dir"], tuned["epoch"], tuned["limit"], tuned["split"]) == (
        "/exp/tiny_rank16/epoch_1", 1, 10, "test")
    assert (tuned["system_prompt"], tuned["prompt"]) == ("Sys", "W: {input}")
    assert tuned["model_name"] == "tiny_llama2"


# ------------------------------------------------- torchtune's own validation


@pytest.mark.train
@pytest.mark.parametrize("name", R.recipe_files())
def test_recipe_file_validates(name: str) -> None:
    require_torchtune()
    from omegaconf import OmegaConf
    from torchtune import config as tt_config

    tt_config.validate(OmegaConf.load(RECIPES / name))


@pytest.mark.train
@pytest.mark.parametrize("name", sorted(ALL_CONFIGS))
@pytest.mark.parametrize(("gpus", "nodes"), [(1, 1), (8, 2)])
def test_rendered_config_validates(name: str, gpus: int, nodes: int) -> None:
    require_torchtune()
    from omegaconf import OmegaConf
    from torchtune import config as tt_config

    cfg = _render(name, gpus, nodes, prompt="Q: {input}", system_prompt="S")
    tt_config.validate(OmegaConf.create(cfg))
    tt_config.validate(OmegaConf.create(R.eval_config(
        task="t", run="r", epoch=None, finetune_cfg=cfg, adapter_dir=None, dataset_path="/d.json",
        system_prompt="S", prompt="Q: {input}", results_path="/e/results.json")))


@pytest.mark.train
def test_tune_validate_command(tmp_path: Path) -> None:
    """The `tune validate` CLI accepts a rendered config, as a user would run it."""
    require_torchtune()
    path = tmp_path / "finetune.yaml"
    path.write_text(R.dump_config(_render("llama3_1_8b", 4, 1)))
    proc = subprocess.run([tune_executable(), "validate", str(path)], capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "well-formed" in proc.stdout
