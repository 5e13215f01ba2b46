"""Real torchtune LoRA training and evaluation on CPU with the tiny model.

Each test trains for a few seconds: the point is that the configs the planner
renders run under ``tune run`` as they are, that epochs land where the planner
expects them, and that an evaluation sees exactly the adapter it names.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from train_support import load_task_module, render_eval, render_run, run_eval, tiny_env, train

pytestmark = pytest.mark.train


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return tiny_env(tmp_path_factory)


@pytest.fixture(scope="module")
def two_epoch_run(env: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A two-epoch LoRA run of the tiny model (about 40 steps)."""
    run_dir = tmp_path_factory.mktemp("runs") / "tiny_rank8"
    train(render_run(env, run_dir, epochs=2))
    return run_dir


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_tiny_model_build_is_loadable(env: Any) -> None:
    # Build time is reported by the builder, not asserted: timings belong in benchmarks.
    info = env.build_info
    assert info["warmup_loss_last"] < info["warmup_loss_first"]
    config = json.loads((env.model_dir / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"]
    from safetensors.torch import load_file

    keys = set(load_file(str(env.model_dir / "model.safetensors")))
    assert {"model.embed_tokens.weight", "lm_head.weight", "model.norm.weight",
            "model.layers.0.self_attn.q_proj.weight", "model.layers.1.mlp.down_proj.weight"} <= keys
    assert (env.model_dir / "tokenizer.model").exists()


def test_few_steps_with_prompt_write_adapter_in_epoch_0(env: Any, tmp_path: Path) -> None:
    run_dir = tmp_path / "tiny_prompted"
    config = render_run(
        env,
        run_dir,
        max_steps_per_epoch=4,
        train_samples=40,
        system_prompt="Capitalize the word.",
        prompt="Word: {input}\n",
    )
    proc = train(config)
    epoch0 = run_dir / "epoch_0"
    assert (epoch0 / "adapter_model.pt").is_file()
    # Adapter-only: the base weights are never copied or merged.
    assert not list(epoch0.glob("*.safetensors")) or all(
        p.name.startswith("adapter") for p in epoch0.glob("*.safetensors")
    )
    assert not (run_dir / "epoch_1").exists()
    logs = list((run_dir / "logs").glob("*.txt"))
    assert logs and "Step 4 |" in logs[0].read_text()
    assert "Loss:" in proc.stdout

    results = run_eval(render_eval(env, run_dir, epoch=0, limit=5))
    assert results["n"] == 5
    assert results["prompt"] == "Word: {input}\n"
    assert results["system_prompt"] == "Capitalize the word."


def test_eval_prompt_is_training_prompt(env: Any, tmp_path: Path) -> None:
    """The tokens eval.py generates from are exactly the masked prefix of training."""
    import yaml
    from omegaconf import OmegaConf
    from torchtune import config as tt_config
    from torchtune.data import InputOutputToMessages

    evaluator = load_task_module("eval")
    for system, prompt in [("", None), ("Be exact.", "Capitalize: {input}.")]:
        cfg_path = render_run(env, tmp_path / f"p{bool(prompt)}", system_prompt=system, prompt=prompt)
        cfg = OmegaConf.create(yaml.safe_load(cfg_path.read_text()))
        tokenizer = tt_config.instantiate(cfg.tokenizer)
        sample = {"input": "flootdum", "output": "Flootdum"}
        train_tok = tokenizer(InputOutputToMessages(new_system_prompt=system or None)(sample))
        n_prompt = train_tok["mask"].index(False)
        assert evaluator.prompt_tokens(tokenizer, sample["input"], system) == train_tok["tokens"][:n_prompt]


def test_two_epochs_give_two_distinct_adapters(two_epoch_run: Path) -> None:
    import torch

    a0 = two_epoch_run / "epoch_0" / "adapter_model.pt"
    a1 = two_epoch_run / "epoch_1" / "adapter_model.pt"
    assert a0.is_file() and a1.is_file()
    sd0 = torch.load(a0, weights_only=True)
    sd1 = torch.load(a1, weights_only=True)
    assert sd0.keys() == sd1.keys() and any("lora_a" in k for k in sd0)
    assert any(not torch.equal(sd0[k], sd1[k]) for k in sd0)


def test_each_epoch_evaluates_its_own_adapter(env: Any, two_epoch_run: Path) -> None:
    base = run_eval(render_eval(env, two_epoch_run, epoch=None))
    r0 = run_eval(render_eval(env, two_epoch_run, epoch=0), in_process=True)
    r1 = run_eval(render_eval(env, two_epoch_run, epoch=1), in_process=True)
    n_test = len(env.data["test"])
    for res, epoch in [(base, None), (r0, 0), (r1, 1)]:
        assert res["n"] == n_test
        assert 0.0 <= res["exact_match"] <= 1.0
        assert res["accuracy"] == res["exact_match"]
        assert res["epoch"] == epoch
        assert res["task"] == "capitalization"
        assert res["run"] == two_epoch_run.name
        assert res["duration_s"] >= 0 and res["started"] <= res["finished"]
    assert base["adapter_sha256"] is None
    for res, epoch in [(r0, 0), (r1, 1)]:
        adapter = two_epoch_run / f"epoch_{epoch}" / "adapter_model.pt"
        assert res["checkpoint"] == str(adapter)
        assert res["adapter_sha256"] == _sha(adapter)
    assert r0["adapter_sha256"] != r1["adapter_sha256"]


def test_loaded_weights_differ_per_epoch(env: Any, two_epoch_run: Path) -> None:
    """Guard against the CPU merge bug: each eval model holds its epoch's adapter on
    top of the untouched base, so logits differ between base, epoch 0 and epoch 1."""
    import torch
    from omegaconf import OmegaConf
    from torchtune import config as tt_config

    evaluator = load_task_module("eval")
    logits = {}
    for epoch in (None, 0, 1):
        cfg = OmegaConf.load(render_eval(env, two_epoch_run, epoch=epoch, name=f"logits_{epoch}"))
        model, weights = evaluator.build_model(cfg, torch.device("cpu"), torch.float32)
        tokenizer = tt_config.instantiate(cfg.tokenizer)
        if epoch is not None:
            adapter = torch.load(weights, weights_only=True)
            state = model.state_dict()
            assert all(torch.equal(state[k], v) for k, v in adapter.items())
        tokens = torch.tensor([evaluator.prompt_tokens(tokenizer, "flootdum", "")])
        with torch.no_grad():
            logits[epoch] = model(tokens)
    assert not torch.allclose(logits[None], logits[0])
    assert not torch.allclose(logits[0], logits[1])

    # The base weights the evaluation loads are the original checkpoint's.
    from safetensors.torch import load_file

    original = load_file(str(env.model_dir / "model.safetensors"))
    cfg = OmegaConf.load(render_eval(env, two_epoch_run, epoch=1, name="base_check"))
    model, _ = evaluator.build_model(cfg, torch.device("cpu"), torch.float32)
    assert torch.equal(model.tok_embeddings.weight, original["model.embed_tokens.weight"])


def test_eval_failure_exits_nonzero(env: Any, tmp_path: Path) -> None:
    run_dir = tmp_path / "missing"
    render_run(env, run_dir)
    cfg = render_eval(env, run_dir, epoch=3)  # no epoch_3 folder
    assert load_task_module("eval").main(["--config", str(cfg)]) != 0
    assert not (cfg.parent / "results.json").exists()
