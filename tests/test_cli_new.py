"""`plan-experiment new`: the experiment folder, its refusal to overwrite, and its errors."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import load_yaml, run_cli, write_spec

SECTIONS = [
    "## Overview", "## Variables", "## All Runs", "## Resources", "## Evaluation Plan", "### Evaluation Matrix",
    "## Configuration", "## Compute Estimates", "## Naming Conventions", "## Status", "### Fine-tuning",
    "### Evaluations", "## Quick Reference", "## Notes",
]


def tree(path: Path) -> dict[str, bytes]:
    """Every file below ``path`` with its bytes."""
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def plan_example(example: Path, *extra: str) -> tuple[object, Path]:
    result = run_cli("new", "--spec", str(example / "experiment.yaml"), "--yes", *extra)
    return result, example / "experiments" / "cap_5L_lora_comparison_demo"


def test_new_writes_a_complete_experiment_folder(example: Path) -> None:
    result, exp = plan_example(example)
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[-2:] == [f"Wrote {exp}", f"Next: plan-experiment submit {exp}"]
    files = set(tree(exp))
    runs = ["tiny-llama-cap_rank4", "tiny-llama-cap_rank16"]
    for run in runs:
        assert {f"{run}/setup_finetune.yaml", f"{run}/finetune.yaml", f"{run}/train.sh",
                f"{run}/eval/capitalization_epoch0/eval_config.yaml", f"{run}/eval/capitalization_epoch0/eval.sh"} <= files
    assert {"experiment.yaml", "experiment_summary.md", "design-experiment.log", "estimates.json",
            "tiny-llama-cap_base/eval/capitalization/eval_config.yaml"} <= files
    assert not any(f.startswith("tiny-llama-cap_base/") and "finetune" in f for f in files)

    summary = (exp / "experiment_summary.md").read_text()
    positions = [summary.index("\n" + s + "\n") for s in SECTIONS]
    assert positions == sorted(positions), "sections out of seed 002's order"
    assert "- **Total Runs:** 3 (2 fine-tuned + 1 control)" in summary
    assert "| tiny-llama-cap_rank4 | pending | - | - | - | - |" in summary
    assert "| tiny-llama-cap_base | capitalization | - | pending | - | - | Base model |" in summary
    # No prior run (the example's scratch_dir is replaced by an empty one): the cost model times the CPU jobs.
    assert "**Modelled - verify with a test run.**" in summary and "Preliminary - verify" not in summary

    setup = load_yaml(exp / "tiny-llama-cap_rank16" / "setup_finetune.yaml")
    assert (setup["run_name"], setup["lora_rank"], setup["lora_alpha"], setup["learning_rate"]) == ("tiny-llama-cap_rank16", 16, 32, 0.01)
    ft = load_yaml(exp / "tiny-llama-cap_rank16" / "finetune.yaml")
    assert ft["output_dir"] == str(exp / "tiny-llama-cap_rank16")
    assert ft["model"]["lora_rank"] == 16

    recorded = load_yaml(exp / "experiment.yaml")
    prov = recorded["provenance"]
    assert prov["planner_version"] and prov["planned_at"] and prov["local_settings_file"].endswith("claude.local.md")
    assert prov["local_settings"]["models_dir"] == str(example / "models")
    assert set(prov) >= {"git_commit", "git_dirty"} or not (example / ".git").exists()

    log = (exp / "design-experiment.log").read_text()
    entries = re.findall(r"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\] ([A-Z_]+): ", log, re.M)
    assert entries[:2] == ["DECIDE_NAMING", "DECIDE_RUNS"]
    assert {"VERIFY_MODEL", "VERIFY_DATASET", "VERIFY_EVAL", "CHECK_DISK", "CALCULATE_TIME", "CREATE_SUMMARY"} <= set(entries)
    assert entries[-1] == "COMPLETE"
    assert "Command: ls -lh " in log and "Explanation: " in log


def test_second_new_without_force_changes_nothing(example: Path) -> None:
    _, exp = plan_example(example)
    before = tree(exp)
    result, _ = plan_example(example)
    assert result.exit_code == 4
    assert result.stderr == (
        f"error: experiment folder already exists: {exp}; choose another name, or pass --force to replace it "
        "(the old folder is kept as a backup beside it)\n"
    )
    assert tree(exp) == before


def test_force_replaces_and_keeps_a_backup(example: Path) -> None:
    _, exp = plan_example(example)
    (exp / "experiment_summary.md").write_text("my notes")
    result, _ = plan_example(example, "--force")
    assert result.exit_code == 0
    backups = list(exp.parent.glob(exp.name + ".replaced-*"))
    assert len(backups) == 1 and (backups[0] / "experiment_summary.md").read_text() == "my notes"
    assert "Replaced the old folder; it is kept at" in result.output


def test_bad_spec_exits_2_and_writes_nothing(example: Path) -> None:
    spec = write_spec(example, factors={"lora_rnk": [4]}, controls={"epochs": 0})
    result = run_cli("new", "--spec", str(spec), "--yes")
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        f"error: {spec}: 2 problem(s) in the experiment spec",
        f"  - {spec}: factors.lora_rnk: unknown knob; did you mean 'lora_rank'?",
        f"  - {spec}: controls.epochs: 0 must be a positive whole number",
    ]
    assert not (example / "experiments").exists()


def test_missing_model_and_dataset_stop_the_plan(example: Path) -> None:
    spec = write_spec(example, models=["no-such-model"], dataset={"path": "missing.json"})
    result = run_cli("new", "--spec", str(spec), "--yes")
    assert result.exit_code == 3
    lines = result.stderr.splitlines()
    assert lines[0] == "error: 2 resource(s) missing or unusable; nothing was written"
    assert lines[1].startswith("  - model 'no-such-model': directory not found at ")
    assert lines[2].startswith("  - dataset 'missing.json': file not found at ")
    assert not (example / "experiments").exists()
    assert not list(example.rglob("*.partial"))


def test_missing_eval_script_is_a_prerequisite_not_an_error(example: Path) -> None:
    tasks = [{"name": "capitalization", "script": "tasks/nope/eval.py"}]
    spec = write_spec(example, evaluation={"tasks": tasks, "epochs": "last"})
    result = run_cli("new", "--spec", str(spec), "--yes")
    assert result.exit_code == 0
    assert "prerequisite: write the evaluation script of task `capitalization`" in result.output.replace("\n", " ")
    summary = (example / "experiments" / "cap_5L_lora_comparison_demo" / "experiment_summary.md").read_text()
    assert "✗ prerequisite: script missing" in summary


def test_spec_file_errors_are_one_line(example: Path) -> None:
    result = run_cli("new", "--spec", str(example / "nope.yaml"), "--yes", "--local-config", str(example / "claude.local.md"))
    assert result.exit_code == 2
    assert result.stderr == f"error: --spec {example / 'nope.yaml'}: cannot read (No such file or directory); give the path of an experiment.yaml\n"


def test_hostile_names_are_quoted_in_every_script(example: Path, tmp_path: Path) -> None:
    hostile = "tiny \"m\" $(touch PWNED) 'x`y`'"
    shutil.copytree(example / "models" / "tiny-llama-cap", example / "models" / hostile)
    spec = write_spec(example, name="exp with 'quotes' \"and\" $(touch PWNED)", models=[hostile],
                      controls={"epochs": 1, "system_prompt": "line one\nline $(touch PWNED) two"})
    result = run_cli("new", "--spec", str(spec), "--yes")
    assert result.exit_code == 0, result.stderr
    exp = example / "experiments" / "exp with 'quotes' \"and\" $(touch PWNED)"
    scripts = sorted(exp.rglob("*.sh"))
    assert len(scripts) == 8  # 2 train.sh; eval.sh for 2 tasks x (2 runs at one epoch + the base model)
    for script in scripts:
        subprocess.run(["bash", "-n", str(script)], check=True)
        # The quoted folder in the script is the real folder: run the prologue up to `cd`.
        prologue = script.read_text().split('cd "$JOB_DIR"')[0] + 'printf %s "$JOB_DIR"'
        out = subprocess.run(["bash", "-c", prologue], capture_output=True, text=True, cwd=tmp_path, check=True).stdout
        assert out == str(script.parent)
    # Run every script for real, with stand-ins for tune and python: nothing in a name executes.
    stubs = tmp_path / "stubs"
    stubs.mkdir()
    for tool in ("tune", "python"):
        (stubs / tool).write_text("#!/bin/sh\nexit 0\n")
        (stubs / tool).chmod(0o755)
    for script in scripts:
        if script.name == "eval.sh" and "_epoch" in script.parent.name:
            epoch = script.parent.name.rsplit("_epoch", 1)[1]
            (script.parent.parent.parent / f"epoch_{epoch}").mkdir(exist_ok=True)
        env = {"PATH": f"{stubs}:/usr/bin:/bin", "HOME": str(tmp_path)}
        out = subprocess.run(["bash", str(script)], capture_output=True, text=True, cwd=tmp_path, env=env)
        assert out.returncode == 0, out.stdout + out.stderr
        assert load_yaml(script.parent / "job-state.json")["state"] == "COMPLETED"
    assert not list(tmp_path.rglob("PWNED*")) and not Path("PWNED").exists()
    setup = load_yaml(exp / f"{hostile}_rank4" / "setup_finetune.yaml")
    assert setup["system_prompt"] == "line one\nline $(touch PWNED) two"
    summary = (exp / "experiment_summary.md").read_text()
    assert f"| {hostile}_rank4 | pending |" in summary


@pytest.mark.train
def test_rendered_configs_pass_torchtune_validation(example: Path) -> None:
    pytest.importorskip("torchtune")
    _, exp = plan_example(example)
    tune = Path(shutil.which("tune") or Path(__import__("sys").executable).parent / "tune")
    for cfg in sorted(exp.glob("*/finetune.yaml")):
        out = subprocess.run([str(tune), "validate", str(cfg)], capture_output=True, text=True)
        assert out.returncode == 0 and "Config is well-formed!" in out.stdout, out.stdout + out.stderr


def test_estimates_json_feeds_submit(example: Path) -> None:
    _, exp = plan_example(example)
    data = json.loads((exp / "estimates.json").read_text())
    assert set(data["runs"]) == {"tiny-llama-cap_rank4", "tiny-llama-cap_rank16"}
    assert all(re.fullmatch(r"\d\d:\d\d:00", r["slurm_time"]) for r in data["runs"].values())


def test_multi_node_runs_use_the_distributed_recipe_and_rendezvous(example: Path) -> None:
    local = example / "claude.local.md"  # a GPU cluster: torchtune's own recipe
    local.write_text(local.read_text().replace("cpu_only: true", "cpu_only: false"))
    spec = write_spec(example, resources={"gpus": 4, "nodes": 2, "time": "auto"})
    assert run_cli("new", "--spec", str(spec), "--yes").exit_code == 0
    run = example / "experiments" / "cap_5L_lora_comparison_demo" / "tiny-llama-cap_rank4"
    script = (run / "train.sh").read_text()
    assert 'MASTER_NODE="$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)"' in script
    assert 'export MASTER_ADDR="${MASTER_ADDR:-$MASTER_NODE}"' in script
    assert ('tune run --nnodes 2 --nproc_per_node 4 --rdzv_backend c10d --rdzv_endpoint "$MASTER_ADDR:$MASTER_PORT" '
            f'--rdzv_id "$SLURM_JOB_ID" lora_finetune_distributed --config {run}/finetune.yaml') in script
    subprocess.run(["bash", "-n", str(run / "train.sh")], check=True)
    setup = load_yaml(run / "setup_finetune.yaml")
    assert (setup["gpus"], setup["nodes"], setup["recipe"]) == (4, 2, "recipes/llama2_custom_lora_distributed.yaml")


def test_planning_works_without_torch(example: Path) -> None:
    # A login node has no torch: planning, rendering and validation must not import it.
    code = (
        "import sys\n"
        "for name in ('torch', 'torchtune', 'torchao', 'sentencepiece', 'safetensors'): sys.modules[name] = None\n"
        "from planner.cli.main import main\n"
        f"sys.argv = ['plan-experiment', 'new', '--spec', {str(example / 'experiment.yaml')!r}, '--yes']\n"
        "main()\n"
    )
    out = subprocess.run([__import__("sys").executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert (example / "experiments" / "cap_5L_lora_comparison_demo" / "tiny-llama-cap_rank4" / "finetune.yaml").is_file()


def test_status_before_submit_shows_every_unit_pending(example: Path) -> None:
    _, exp = plan_example(example)
    before = (exp / "experiment_summary.md").read_text()
    result = run_cli("status", str(exp), "--watch", "--json")
    assert result.exit_code == 0
    assert result.stderr == f"nothing submitted yet: run `plan-experiment submit {exp}` first\n"
    report = json.loads(result.stdout)
    # 2 runs, and 2 tasks x (2 runs x 2 epochs + the base model) evaluations.
    assert report["counts"] == {"NOT_SUBMITTED": 12} and report["all_final"] is False
    assert (exp / "experiment_summary.md").read_text() == before
