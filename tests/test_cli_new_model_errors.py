"""`plan-experiment new` on a model folder torchtune cannot use: exit 3, one line, nothing written."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import run_cli


def plan(example: Path) -> object:
    return run_cli("new", "--spec", str(example / "experiment.yaml"), "--yes")


def assert_nothing_written(example: Path) -> None:
    assert not (example / "experiments").exists()
    assert not list(example.rglob("*.partial"))


def test_model_without_tokenizer_exits_3_with_one_line(example: Path) -> None:
    model = example / "models" / "tiny-llama-cap"
    (model / "tokenizer.model").unlink()
    result = plan(example)
    assert result.exit_code == 3, result.output
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: model 'tiny-llama-cap': no tokenizer file in ")
    assert str(model) in lines[0]
    assert "(looked for tokenizer.model, original/tokenizer.model)" in lines[0]
    assert "Traceback" not in result.output
    assert_nothing_written(example)


def test_model_torchtune_cannot_build_exits_3_with_one_line(example: Path) -> None:
    """Any model the recipe registry refuses is a missing resource, not a traceback."""
    config = example / "models" / "tiny-llama-cap" / "config.json"
    cfg = json.loads(config.read_text())
    config.write_text(json.dumps({**cfg, "tie_word_embeddings": True}))
    result = plan(example)
    assert result.exit_code == 3, result.output
    lines = result.stderr.splitlines()
    assert lines == ["error: model 'tiny-llama-cap': tied word embeddings are not supported by torchtune's llama2 builder; "
                     "nothing was written"], result.stderr
    assert_nothing_written(example)
