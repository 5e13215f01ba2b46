"""Configs planned before the domain layout still run: their tokenizer hook path resolves.

``finetune.yaml`` and ``eval_config.yaml`` files written by earlier versions name the hook
``planner.core.recipes.prompted_tokenizer``; torchtune imports it by that path on the
compute node. The old path is a kept contract; new configs name ``planner.torchtune``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.train

ROOT = Path(__file__).resolve().parent.parent
TOKENIZER = ROOT / "examples/capitalization/models/tiny-llama-cap/tokenizer.model"


def _tokens(component: str, **hook: str) -> list[int]:
    from omegaconf import OmegaConf
    from torchtune import config as tt_config
    from torchtune.data import Message

    node: dict[str, Any] = {
        "_component_": component,
        "path": str(TOKENIZER),
        **hook,
    }
    tokenizer = tt_config.instantiate(OmegaConf.create(node))
    tokens, _ = tokenizer.tokenize_messages([Message(role="user", content="flootdum"), Message(role="assistant", content="Flootdum")])
    return list(tokens)


def test_old_hook_path_builds_the_same_prompted_tokenizer() -> None:
    pytest.importorskip("torchtune")
    hook = {"base_component": "torchtune.models.llama2.llama2_tokenizer", "prompt": "Capitalize: {input}."}
    old = _tokens("planner.core.recipes.prompted_tokenizer", **hook)
    new = _tokens("planner.torchtune.hook.prompted_tokenizer", **hook)
    plain = _tokens("torchtune.models.llama2.llama2_tokenizer")
    assert old == new
    assert old != plain  # the hook wrapped the user message in the prompt
