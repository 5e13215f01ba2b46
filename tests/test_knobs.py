"""One knob table: every knob a spec may set reaches the torchtune config it promises."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from planner.spec.knobs import KNOBS, Knob, knob_table
from planner.torchtune.recipes import RecipeError, finetune_config, model_shape_from_config
from tests.conftest import EXAMPLE, ROOT, load_yaml, run_cli, write_spec


def finetune_configs(example: Path, **changes: Any) -> dict[str, dict[str, Any]]:
    """Plan a modified copy of the example; each fine-tune run's finetune.yaml by run name."""
    spec = write_spec(example, **changes)
    result = run_cli("new", "--spec", str(spec), "--yes")
    assert result.exit_code == 0, result.output
    exp = example / "experiments" / load_yaml(spec)["name"]
    return {p.parent.name: load_yaml(p) for p in sorted(exp.glob("*/finetune.yaml"))}


def test_lora_dropout_control_reaches_every_finetune_yaml(example: Path) -> None:
    """``controls: {lora_dropout: 0.1}`` is used, not silently replaced by the recipe's value."""
    controls = {**load_yaml(example / "experiment.yaml")["controls"], "lora_dropout": 0.1}
    configs = finetune_configs(example, controls=controls)
    assert len(configs) == 2
    assert {run: cfg["model"]["lora_dropout"] for run, cfg in configs.items()} == {
        "tiny-llama-cap_rank4": 0.1, "tiny-llama-cap_rank16": 0.1}


#: knob -> (a value unlike the example's, what finetune.yaml then holds at the knob's path).
CHANGED: dict[str, tuple[Any, Any]] = {
    "lora_rank": (4, 4),
    "lora_alpha": (5, 5.0),
    "lora_dropout": (0.25, 0.25),
    "learning_rate": (2e-3, 2e-3),
    "batch_size": (2, 2),
    "gradient_accumulation_steps": (3, 3),
    "epochs": (3, 3),
    "train_samples": (100, "train[:100]"),
    "max_seq_len": (32, 32),
    "packed": (True, True),
    "weight_decay": (0.05, 0.05),
    "num_warmup_steps": (2, 2),
    "max_steps_per_epoch": (7, 7),
    "system_prompt": ("Answer in capitals.", "Answer in capitals."),
    "prompt": ("Word: {input}", "Word: {input}"),
}


def at(cfg: dict[str, Any], dotted: str) -> Any:
    """The value at a dotted path of a config, or a marker when a key is absent."""
    node: Any = cfg
    for key in dotted.split("."):
        if not isinstance(node, dict) or key not in node:
            return "<absent>"
        node = node[key]
    return node


def test_every_knob_has_a_changed_value_here() -> None:
    """A new knob must join the parametrised test below (or be documented plan-only)."""
    assert set(CHANGED) == {name for name, knob in KNOBS.items() if knob.config is not None}


@pytest.mark.parametrize("name", [name for name, knob in KNOBS.items() if knob.config is not None])
def test_changing_a_knob_changes_finetune_yaml(example: Path, name: str) -> None:
    """Setting each knob in ``controls`` changes its place in finetune.yaml, and only as told."""
    knob = KNOBS[name]
    assert knob.config is not None
    value, expected = CHANGED[name]
    spec = load_yaml(example / "experiment.yaml")
    controls = {k: v for k, v in spec["controls"].items() if k != name}
    # One run, no factors: the knob may be one the example varies (lora_rank).
    before = finetune_configs(example, name="before", factors={}, controls=controls)
    after = finetune_configs(example, name="after", factors={}, controls={**controls, name: value})
    (cfg_before,), (cfg_after,) = before.values(), after.values()
    assert at(cfg_before, knob.config) != expected
    assert at(cfg_after, knob.config) == expected


def test_docs_knob_table_is_the_knob_table() -> None:
    """docs/spec.md shows the table the code uses (regenerate it with knob_table())."""
    assert knob_table() in (ROOT / "docs" / "spec.md").read_text(encoding="utf-8")


def test_a_knob_the_config_builder_does_not_place_stops_the_plan(example: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A setting the config builder does not know is an error, never silently dropped.

    A knob added to the table but not to the builder passes spec validation (the table is
    the same); planning must then refuse, not write a finetune.yaml without it.
    """
    monkeypatch.setitem(KNOBS, "label_smoothing", Knob("label_smoothing", lambda v: None, 0.0, "ls", "Label Smoothing",
                                                      "label smoothing", "loss.label_smoothing"))
    spec = write_spec(example, controls={**load_yaml(example / "experiment.yaml")["controls"], "label_smoothing": 0.1})
    result = run_cli("new", "--spec", str(spec), "--yes")
    assert result.exit_code == 3
    assert result.stderr.startswith("error: unknown settings ['label_smoothing']; known: lora_rank, ")
    assert not (example / "experiments").exists()


def test_unknown_setting_reaching_the_config_builder_is_an_error() -> None:
    shape = model_shape_from_config(json.loads((EXAMPLE / "models" / "tiny-llama-cap" / "config.json").read_text()))
    with pytest.raises(RecipeError, match=r"unknown settings \['lora_dropuot'\]"):
        finetune_config(recipe_text=(ROOT / "recipes" / "llama2_custom_lora_single_device.yaml").read_text(),
                        shape=shape, model_dir="/m", checkpoint_files=["model.safetensors"],
                        tokenizer_path="/m/tokenizer.model", run_dir="/exp/run", dataset_path="/d.json",
                        settings={"lora_rank": 4, "lora_dropuot": 0.1})
