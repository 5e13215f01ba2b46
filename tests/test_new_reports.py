"""What `new` reports: every problem in one go."""

from __future__ import annotations

import json
import re
from pathlib import Path

from planner.plan.render import duration
from tests.conftest import ROOT, load_yaml, run_cli, write_spec


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


def _summary(example: Path, name: str = "cap_5L_lora_comparison_demo") -> str:
    return (example / "experiments" / name / "experiment_summary.md").read_text()


def test_a_cpu_plan_shows_cpu_hours_and_cpu_batch_advice_alike_in_terminal_and_summary(example: Path) -> None:
    result = run_cli("new", "--spec", str(example / "experiment.yaml"), "--yes")
    assert result.exit_code == 0, result.output
    summary = _summary(example)
    compute = re.search(r"- \*\*Total compute:\*\* (.+)", summary)
    assert compute and compute.group(1).endswith("CPU job hours (no GPUs)")
    assert f"Compute: {compute.group(1)}." in result.output.replace("\n", " ")
    assert "GPU hours" not in summary and "GPU hours" not in result.output
    assert "CPU jobs: batch_size 8 as chosen" in summary and "GiB GPUs" not in summary
    assert "2 fine-tuned + 1 control)" in summary and "2 fine-tune runs + 1 control" in result.output


def test_a_gpu_plan_counts_every_gpu_alike_in_terminal_and_summary(example: Path) -> None:
    spec = write_spec(example, resources={"gpus": 2, "nodes": 2, "time": "auto"})
    result = run_cli("new", "--spec", str(spec), "--yes")
    assert result.exit_code == 0, result.output
    summary = _summary(example)
    compute = re.search(r"- \*\*Total compute:\*\* (.+)", summary)
    assert compute and compute.group(1).endswith(" GPU hours")
    assert f"Compute: {compute.group(1)}." in result.output.replace("\n", " ")
    est = json.loads((example / "experiments" / "cap_5L_lora_comparison_demo" / "estimates.json").read_text())
    jobs = sum(r.get("job_seconds") or r["train_seconds"] for r in est["runs"].values())  # job wall time, every GPU held
    assert compute.group(1) == f"{(jobs * 4 + est['eval_seconds_each'] * est['eval_count']) / 3600:.1f} GPU hours"
    # The example cluster is cpu_only: its "GPUs" are CPU processes, and the batch note sizes no GPU memory.
    assert "CPU jobs: batch_size 8 as chosen" in summary


def test_held_fixed_lists_only_what_no_run_changes(example: Path) -> None:
    assert run_cli("new", "--spec", str(example / "experiment.yaml"), "--yes").exit_code == 0
    fixed = _summary(example).split("- **Held fixed:**")[1].split("- **Slurm:**")[0]
    assert "`lora_alpha`" not in fixed  # 2 x rank: it varies with lora_rank
    assert "`epochs`: 2" in fixed and "`lora_rank`" not in fixed and "`seed`" not in fixed
    spec = write_spec(example, name="alpha_set", controls={**load_yaml(example / "experiment.yaml")["controls"], "lora_alpha": 8})
    assert run_cli("new", "--spec", str(spec), "--yes").exit_code == 0
    fixed = _summary(example, "alpha_set").split("- **Held fixed:**")[1].split("- **Slurm:**")[0]
    assert "`lora_alpha`: 8" in fixed


def test_after_estimate_all_runs_and_compute_estimates_agree(example: Path) -> None:
    assert run_cli("new", "--spec", str(example / "experiment.yaml"), "--yes").exit_code == 0
    exp = example / "experiments" / "cap_5L_lora_comparison_demo"
    before = json.loads((exp / "estimates.json").read_text())["runs"]
    result = run_cli("estimate", str(exp), "--logs", str(ROOT / "tests" / "fixtures" / "logs" / "real"))
    assert result.exit_code == 0, result.output
    after = json.loads((exp / "estimates.json").read_text())["runs"]
    assert after != before  # measured priors replaced the fallback ranges
    summary = (exp / "experiment_summary.md").read_text()
    all_runs = summary.split("## All Runs")[1].split("\n## ")[0]
    for run, figures in after.items():
        row = next(line for line in all_runs.splitlines() if line.startswith(f"| {run} |"))
        assert row.rstrip(" |").endswith("~" + duration(figures["train_seconds"])), row
