"""Planning at scale: the fast YAML path writes exactly what PyYAML's pure-Python dumper writes."""

from __future__ import annotations

import shutil
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from planner.plan import pipeline, render
from planner.spec import loading
from planner.spec.local_settings import load_local_settings
from planner.spec.spec import parse_spec
from tests.conftest import load_yaml

FIXED = datetime(2025, 10, 22, 10, 0, 0)


def _prepare(example: Path, spec_data: dict[str, Any]) -> dict[str, str]:
    settings_path = example / "claude.local.md"
    spec = parse_spec(spec_data, "spec")
    prepared = pipeline.prepare(spec, example, load_local_settings(settings_path), settings_path, None, False,
                                ["plan-experiment", "new"], lambda: FIXED)
    return prepared.files


def test_fast_yaml_output_equals_the_pure_python_dumper(example: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hostile = "tiny \"m\" 'é' ü: #x"
    shutil.copytree(example / "models" / "tiny-llama-cap", example / "models" / hostile)
    spec_data = load_yaml(example / "experiment.yaml")
    spec_data.update(models=["tiny-llama-cap", hostile], factors={"lora_rank": [4, 16], "learning_rate": [1e-4, 0.5, 3]})
    spec_data["controls"] = {"epochs": 2, "system_prompt": "line one\nline 'two': \"x\" ünïcode # not a comment",
                             "prompt": "Q: {input}\nA:", "num_warmup_steps": 0}
    fast = _prepare(example, spec_data)
    assert loading.SAFE_DUMPER is yaml.CSafeDumper, "libyaml is expected here"
    monkeypatch.setattr(loading, "SAFE_DUMPER", yaml.SafeDumper)
    monkeypatch.setattr(render, "dump_block_mapping", loading.dump_yaml)
    slow = _prepare(example, spec_data)
    assert fast.keys() == slow.keys()
    assert len(fast) > 30
    different = [name for name in fast if fast[name] != slow[name]]
    assert different == []
    # And what was written reads back as the values planned.
    cfg = yaml.safe_load(fast[f"{hostile}_rank4_lr0.5/finetune.yaml"])
    assert cfg["optimizer"]["lr"] == 0.5


def test_colliding_run_names_are_refused_in_a_5000_run_grid(example: Path) -> None:
    # Two model folders with the same name collide (the check counts names once, not per run).
    spec_data = load_yaml(example / "experiment.yaml")
    (example / "other").mkdir()
    shutil.copytree(example / "models" / "tiny-llama-cap", example / "other" / "tiny-llama-cap")
    spec_data.update(models=["tiny-llama-cap", str(example / "other" / "tiny-llama-cap")],
                     factors={"lora_rank": list(range(1, 51)), "learning_rate": [i * 1e-5 for i in range(1, 101)]})
    spec_data["controls"] = {"epochs": 1}
    from planner.spec.errors import ConfigError
    from planner.spec.runs import expand

    with pytest.raises(ConfigError, match="run names collide"):
        expand(parse_spec(spec_data, "spec"))
