"""The `new` wizard: seed 002's questions, re-asked until each answer validates."""

from __future__ import annotations

import os
from pathlib import Path

from click.testing import CliRunner

from planner.cli.main import cli
from tests.conftest import load_yaml

ANSWERS = [
    "Does rank matter?",          # the scientific question
    "lora_rnk, learning_rate",    # a typo: re-asked
    "lora_rank",
    "4, x",                       # a bad level: re-asked
    "4, 16",
    "42",                         # seeds
    "yes",                        # base-model controls
    "no-such-model",              # checked at once: re-asked
    "",                           # the default: the only model in models_dir
    "missing.json",               # checked at once: re-asked
    "",                           # the default dataset
    "capitalization", "",         # a task and its default script
    "",                           # no more tasks
    "1", "0", "8", "64",          # epochs, GPUs (0 = CPU), batch size, max sequence length
    "200",                        # warm-up longer than the 50 training steps: re-asked
    "",                           # the offered warm-up: a tenth of the steps
    "",                           # system prompt
    "last",                       # epochs to evaluate
    "a/b",                        # not a folder name: re-asked, nothing lost
    "",                           # the suggested name
    "yes",                        # approve
]
RETRIED = ("lora_rnk, learning_rate", "4, x", "no-such-model", "missing.json", "200", "a/b")


def test_wizard_asks_validates_and_writes(example: Path) -> None:
    cwd = os.getcwd()
    os.chdir(example)
    try:
        result = CliRunner().invoke(cli, ["new", "--local-config", str(example / "claude.local.md")],
                                    input="\n".join(ANSWERS) + "\n", catch_exceptions=False)
    finally:
        os.chdir(cwd)
    assert result.exit_code == 0, result.output
    out = result.output
    assert "unknown knob(s) ['lora_rnk']; choose from" in out
    assert "lora_rank level 'x' must be a positive whole number" in out
    assert "model 'no-such-model': directory not found at" in out
    assert "dataset 'missing.json': file not found at" in out
    written = sorted((example / "experiments").iterdir())
    assert len(written) == 1 and written[0].name.startswith("cap_lora_comparison_")
    spec = load_yaml(written[0] / "experiment.yaml")
    assert spec["factors"] == {"lora_rank": [4, 16]}
    assert spec["models"] == ["tiny-llama-cap"]
    assert spec["controls"] == {"epochs": 1, "batch_size": 8, "max_seq_len": 64, "num_warmup_steps": 5, "system_prompt": ""}
    assert "200 warm-up steps is longer than the whole training (50 steps); give at most 50" in out
    assert "the name becomes a folder name: drop the '/'" in out
    assert "Batch size (examples per step)" in out and "per GPU" not in out
    assert spec["evaluation"]["tasks"][0]["name"] == "capitalization"
    assert (written[0] / "tiny-llama-cap_rank16" / "finetune.yaml").is_file()


def test_declining_writes_nothing(example: Path) -> None:
    cwd = os.getcwd()
    os.chdir(example)
    try:
        answers = [a for a in ANSWERS if a not in RETRIED]
        answers[-1] = "no"
        result = CliRunner().invoke(cli, ["new", "--local-config", str(example / "claude.local.md")],
                                    input="\n".join(answers) + "\n", catch_exceptions=False)
    finally:
        os.chdir(cwd)
    assert result.exit_code == 1
    assert result.stderr == "error: not approved: nothing was written\n"
    assert not (example / "experiments").exists()
