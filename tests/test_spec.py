"""The experiment spec: validation that reports every problem, and deterministic run expansion."""

from __future__ import annotations

import pytest

from planner.spec.errors import ConfigError
from planner.spec.runs import expand
from planner.spec.spec import load_spec_text, spec_to_yaml

SEED_000 = """
name: scaling_grid_2025-09-13
question: How do model size, learning rate and data size interact?
models: [m4M, m10M, m60M, m150M]
dataset: {path: data.json}
factors:
  learning_rate: [5e-07, 5e-06, 5e-05, 5e-04]
  train_samples: [1000, 10000, 100000]
replicates: {seeds: [1, 2]}
base_model_controls: true
evaluation:
  tasks: [{name: cap, script: tasks/capitalization/eval.py}]
"""

SEED_002 = """
name: cap_8L_lora_comparison_2025-10-22
question: Does LoRA rank change capitalization accuracy?
models: [Llama-3.2-1B-Instruct]
dataset: {path: words_8L_80P_10000.json}
factors:
  lora_rank: [4, 64]
  learning_rate: [1e-5, 1e-4]
paired: {}
replicates: {seeds: [42]}
base_model_controls: true
controls: {epochs: 2, batch_size: 4, system_prompt: ""}
evaluation:
  tasks: [{name: capitalization, script: tasks/capitalization/eval.py}]
  epochs: all
resources: {gpus: 1, time: auto}
"""


def test_seed_000_grid_gives_96_runs_and_4_controls_with_unique_names() -> None:
    plan = expand(load_spec_text(SEED_000, "seed000.yaml"))
    assert len(plan.finetune_runs) == 96
    assert len(plan.base_runs) == 4
    names = [r.name for r in plan.runs]
    assert len(set(names)) == 100
    assert names[0] == "m4M_lr5e-7_n1000_seed1"
    assert names[1] == "m4M_lr5e-7_n1000_seed2"
    assert "m150M_base" in names


def test_seed_002_names_and_evaluation_matrix() -> None:
    plan = expand(load_spec_text(SEED_002, "seed002.yaml"))
    assert [r.name for r in plan.runs] == [
        "Llama-3.2-1B-Instruct_rank4_lr1e-5",
        "Llama-3.2-1B-Instruct_rank4_lr1e-4",
        "Llama-3.2-1B-Instruct_rank64_lr1e-5",
        "Llama-3.2-1B-Instruct_rank64_lr1e-4",
        "Llama-3.2-1B-Instruct_base",
    ]
    # Fine-tuned runs are evaluated per epoch (2 epochs, `all`), the base model once.
    evals = [(e.run, e.epoch) for e in plan.evaluations]
    assert evals.count(("Llama-3.2-1B-Instruct_base", None)) == 1
    assert ("Llama-3.2-1B-Instruct_rank4_lr1e-5", 0) in evals and ("Llama-3.2-1B-Instruct_rank4_lr1e-5", 1) in evals
    assert len(plan.evaluations) == 4 * 2 + 1
    run = plan.runs[0]
    assert run.settings["lora_alpha"] == 8  # default 2 x rank
    assert run.settings["learning_rate"] == 1e-5  # `1e-5` is text to YAML 1.1; it is read as a number


def test_paired_factors_vary_together() -> None:
    text = SEED_002.replace("paired: {}", "paired: {lora_alpha: [16, 128], weight_decay: [0.0, 0.1]}")
    plan = expand(load_spec_text(text, "s.yaml"))
    assert len(plan.finetune_runs) == 2 * 4
    first = plan.finetune_runs[0]
    assert first.name == "Llama-3.2-1B-Instruct_alpha16_wd0_rank4_lr1e-5"
    assert (first.settings["lora_alpha"], first.settings["weight_decay"]) == (16, 0.0)


def test_seed_suffix_only_with_several_seeds() -> None:
    one = expand(load_spec_text(SEED_002, "s.yaml"))
    assert not any("seed" in r.name for r in one.runs)
    two = expand(load_spec_text(SEED_002.replace("seeds: [42]", "seeds: [42, 43]"), "s.yaml"))
    assert two.finetune_runs[0].name.endswith("_seed42")


def test_every_problem_is_reported_at_once() -> None:
    bad = """
name: "a/b"
models: []
dataset: {paht: x}
factors: {lora_rnk: [4], learning_rate: [1e-5, -1]}
controls: {epochs: 0, bacth_size: 3}
"""
    with pytest.raises(ConfigError) as err:
        load_spec_text(bad, "spec.yaml")
    problems = err.value.problems
    text = "\n".join(problems)
    assert "name: the name becomes a folder name: drop the '/' (got 'a/b')" in text
    assert "unknown key 'dataset.paht'; did you mean 'path'?" in text
    assert "factors.lora_rnk: unknown knob; did you mean 'lora_rank'?" in text
    assert "factors.learning_rate: level -1 must be a finite number > 0" in text
    assert "controls.epochs: 0 must be a positive whole number" in text
    assert "controls.bacth_size: unknown knob; did you mean 'batch_size'?" in text
    assert len(problems) >= 7


def test_newline_in_name_is_refused_with_the_fix() -> None:
    with pytest.raises(ConfigError) as err:
        load_spec_text(SEED_002.replace("name: cap_8L_lora_comparison_2025-10-22", 'name: "two\\nlines"'), "s.yaml")
    assert "remove newlines and control characters" in err.value.problems[0]


def test_evaluated_epochs_must_exist() -> None:
    text = SEED_002.replace("epochs: all", "epochs: [0, 2]")
    with pytest.raises(ConfigError) as err:
        load_spec_text(text, "s.yaml")
    assert "evaluation.epochs: [2] not trained by every run" in err.value.problems[0]


def test_spec_round_trips_through_yaml() -> None:
    spec = load_spec_text(SEED_002, "s.yaml")
    again = load_spec_text(spec_to_yaml(spec), "again.yaml")
    assert [r.name for r in expand(again).runs] == [r.name for r in expand(spec).runs]


def test_model_paths_name_runs_by_their_folder() -> None:
    text = SEED_002.replace("[Llama-3.2-1B-Instruct]", "[/models/Llama-3.2-3B-Instruct/]")
    plan = expand(load_spec_text(text, "s.yaml"))
    assert plan.runs[0].name.startswith("Llama-3.2-3B-Instruct_rank4")


def test_colliding_run_names_are_an_error() -> None:
    text = SEED_002.replace("[Llama-3.2-1B-Instruct]", "[/a/M, /b/M]")
    with pytest.raises(ConfigError, match="run names collide"):
        expand(load_spec_text(text, "s.yaml"))
