"""Planning at scale: the fast YAML path writes exactly what PyYAML's pure-Python dumper writes."""

from __future__ import annotations

import os
import random
import re
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
    try:
        return pipeline.staged_files(prepared)
    finally:
        pipeline.abandon(prepared)


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
    # The log records how long the scan took; that is the one figure allowed to differ.
    for files in (fast, slow):
        files["design-experiment.log"] = re.sub(r" in \d+\.\d+s", " in Ns", files["design-experiment.log"])
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


def _random_value(rng: random.Random, depth: int) -> Any:
    kind = rng.randrange(9 if depth < 4 else 6)
    if kind == 0:
        return rng.choice([0, 1, -7, 10**12, 3.5, 1e-5, 0.0, -0.0, 1.0, float(rng.randrange(100)), True, False, None])
    if kind in (1, 2, 3):
        alphabet = "ab cé:#-'\"\n\t\r{}[],&*!|>%@`ü0123456789\x85\u2028\ufeff\x7f\x01😀"
        return "".join(rng.choice(alphabet) for _ in range(rng.choice([0, 1, 5, 20, 39, 40, 41, 90, 150])))
    if kind in (4, 5):
        return rng.choice(["plain", "/a/path/x.yaml", "yes", "null", "1e-5", "~", "", "2025-10-22",
                           "/a/very/long/path/without/spaces/" * 5, "a long sentence with spaces " * 5,
                           "_x", "a-b", "1_000", "0x1F", "1.5", "-5", "inf", "NaN", ".5", "on", "Off", "y", "n",
                           "a/b.c-d_e", "/tmp/x/epoch_0", "12:30", "1:20:00", "tiny-llama-cap_rank4_lr1e-4"])
    if kind in (6, 7):
        return {f"k{i}" if rng.random() < 0.8 else rng.choice(["a b", "yes", "1", "é", "-x", "on", "null", "a/b", "_k", "k" * 122, "k" * 123, "k" * 128, "k" * 129, "k" * 200]): _random_value(rng, depth + 1)
                for i in range(rng.randrange(4))}
    return [_random_value(rng, depth + 1) for _ in range(rng.randrange(4))]


@pytest.mark.parametrize("options", [dict(sort_keys=False, allow_unicode=True, width=100),
                                     dict(sort_keys=False, default_flow_style=False, allow_unicode=True),
                                     # PyYAML's own order and leaf layout: dumped whole.
                                     dict(allow_unicode=True, width=100),
                                     dict(sort_keys=False, default_flow_style=None, allow_unicode=True)])
def test_piecewise_dumping_equals_one_dump_on_random_documents(options: dict[str, Any]) -> None:
    rng = random.Random(7)
    for _ in range(400):
        # Keys of 128 characters or more are written as "? key" (no longer a simple key).
        doc = {(f"top{i}" if rng.random() < 0.9 else "t" * rng.choice([122, 123, 128, 129, 300])): _random_value(rng, 0)
               for i in range(rng.randrange(1, 6))}
        expected = yaml.dump(doc, Dumper=yaml.SafeDumper, **options)
        assert loading.dump_yaml(doc, **options) == expected, doc
        assert loading.dump_block_mapping(doc, **options) == expected, doc
        assert loading.dump_block_mapping(doc, **options) == expected, doc  # again, from the cache of pieces


@pytest.mark.parametrize("doc", [
    # Printable characters that YAML reads as line breaks: quoted text spans lines, indented.
    {"top": {"k": "\u2028"}}, {"top": {"a": {"k": "x\u2029y"}}}, {"top": ["a\u2028 b"]},
    # Keys from 123 characters are explicit ("? key") for PyYAML (with their !!str tag), from 129 for libyaml.
    *({"k" * n: 1.5, "top": {"k" * n: {"x": 1}}} for n in (122, 123, 128, 129)),
    # Quoted text folds at a space past the wrap width: where its line starts counts.
    {"top": {"a" * 60: "x y " * 8}}, {"top": {"a" * 60: "'x y'"}}, {"top": {"a" * 90: "a b"}},
])
def test_piecewise_dumping_of_line_breaks_long_keys_and_wrapping(doc: dict[str, Any]) -> None:
    options = dict(sort_keys=False, allow_unicode=True, width=100)
    assert loading.dump_block_mapping(doc, **options) == yaml.dump(doc, Dumper=yaml.SafeDumper, **options)


def test_rendering_in_several_processes_writes_the_same_files(
        example: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Large plans render and write their runs in forked processes: the folder must not change by a byte."""
    spec_data = load_yaml(example / "experiment.yaml")
    spec_data.update(factors={"lora_rank": [2, 4, 8], "learning_rate": [1e-4, 3e-4, 1e-3]},
                     replicates={"seeds": [1, 2]})
    spec_data["controls"] = {"epochs": 2}
    monkeypatch.setattr(pipeline, "usable_cpus", lambda: 2)
    monkeypatch.setattr(pipeline, "PARALLEL_RENDER_RUNS", 10**9)
    serial = _prepare(example, spec_data)
    monkeypatch.setattr(pipeline, "PARALLEL_RENDER_RUNS", 2)
    pids = example / "renderers.txt"
    real = pipeline.render_runs

    def render_runs(*args: Any) -> dict[str, str]:
        with open(pids, "a", encoding="utf-8") as handle:
            handle.write(f"{os.getpid()}\n")
        return real(*args)

    monkeypatch.setattr(pipeline, "render_runs", render_runs)
    parallel = _prepare(example, spec_data)
    rendered_by = set(pids.read_text().split())
    assert rendered_by and str(os.getpid()) not in rendered_by  # the runs were rendered in the children
    for files in (serial, parallel):
        files["design-experiment.log"] = re.sub(r" in \d+\.\d+s", " in Ns", files["design-experiment.log"])
    assert list(parallel) == list(serial) and len(serial) > 100
    assert [name for name in serial if serial[name] != parallel[name]] == []


def test_a_renderer_killed_part_way_has_its_runs_written_again_by_new_itself(
        example: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A forked renderer killed after writing some of its runs (out of memory, say): its
    stretch is rendered and written again by the parent, over what it left, byte for byte."""
    spec_data = load_yaml(example / "experiment.yaml")
    spec_data.update(factors={"lora_rank": [2, 4, 8], "learning_rate": [1e-4, 3e-4, 1e-3]})
    spec_data["controls"] = {"epochs": 2}
    monkeypatch.setattr(pipeline, "usable_cpus", lambda: 2)
    monkeypatch.setattr(pipeline, "PARALLEL_RENDER_RUNS", 10**9)
    serial = _prepare(example, spec_data)
    monkeypatch.setattr(pipeline, "PARALLEL_RENDER_RUNS", 2)
    monkeypatch.setattr(pipeline, "WRITE_BATCH_RUNS", 2)
    parent = os.getpid()
    real = pipeline.write_files
    killed = example / "killed.txt"

    def write_files(folder: Path, files: dict[str, str]) -> None:
        real(folder, files)
        if os.getpid() != parent and any(name.startswith("tiny-llama-cap_rank8") for name in files):
            killed.write_text(str(os.getpid()))  # the second child, after its first runs are on disk
            os.kill(os.getpid(), 9)

    monkeypatch.setattr(pipeline, "write_files", write_files)
    parallel = _prepare(example, spec_data)
    assert killed.exists()
    for files in (serial, parallel):
        files["design-experiment.log"] = re.sub(r" in \d+\.\d+s", " in Ns", files["design-experiment.log"])
    assert list(parallel) == list(serial) and len(serial) > 50
    assert [name for name in serial if serial[name] != parallel[name]] == []
