"""What `new` reports: every problem in one go."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import run_cli, write_spec


def test_spec_models_dataset_and_scripts_are_reported_together(example: Path) -> None:
    spec = write_spec(example, factors={"lora_rnk": [4]}, models=["no-such-model"], dataset={"path": "missing.json"},
                      evaluation={"tasks": [{"name": "cap", "script": "tasks/nope/eval.py"}], "epochs": "last"})
    result = run_cli("new", "--spec", str(spec), "--yes")
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert lines[0] == f"error: {spec}: 1 problem(s) in the experiment spec, and 3 with the models, dataset or scripts it names"
    assert lines[1] == f"  - {spec}: factors.lora_rnk: unknown knob; did you mean 'lora_rank'?"
    assert lines[2].startswith("  - model 'no-such-model': directory not found at ")
    assert lines[3].startswith("  - dataset 'missing.json': file not found at ")
    assert lines[4].startswith("  - evaluation script of task 'cap' not found at ")
    assert not (example / "experiments").exists()


def test_a_valid_spec_with_missing_resources_still_lists_them_all(example: Path) -> None:
    spec = write_spec(example, models=["no-such-model", "tiny-llama-cap"], dataset={"path": "missing.json"})
    result = run_cli("new", "--spec", str(spec), "--yes")
    assert result.exit_code == 3
    assert [line.split(":")[0] for line in result.stderr.splitlines()[1:]] == ["  - model 'no-such-model'", "  - dataset 'missing.json'"]
