"""The installable wheel: built from the sources, installed (not editable) into a new venv,
it plans the shipped example from another directory.

It builds without build isolation when this interpreter has a recent enough setuptools
(offline), else with it; it installs the wheel's dependencies from the package index pip is
configured with (its cache makes a rerun quick), and takes about a minute.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import EXAMPLE, ROOT, load_yaml, original_user_file

# What a source tree holds that is not source: never copied into the build.
NOT_SOURCE = shutil.ignore_patterns(
    ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", "*.pyc", ".pytest_cache", ".mypy_cache",
    "experiments", "demo-output", ".cache", ".work",
)


def _setuptools_major() -> int:
    """Major version of this interpreter's setuptools; 0 without one (then pip builds isolated)."""
    try:
        return int(importlib.metadata.version("setuptools").split(".")[0])
    except (importlib.metadata.PackageNotFoundError, ValueError):
        return 0


def run(argv: list[str], cwd: Path, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    assert proc.returncode == 0, f"{' '.join(argv)} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.mark.timeout(600)
def test_installed_wheel_plans_the_shipped_example_from_another_directory(tmp_path: Path) -> None:
    # No PYTHONPATH: the new venv must import the installed wheel, never this checkout.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    # The test's home is its own: pip would not see the index the user configured in theirs.
    # pip only reads that file (its cache is the test's).
    pip_conf = original_user_file("pip", "pip.conf")
    if "PIP_CONFIG_FILE" not in env and pip_conf.is_file():
        env["PIP_CONFIG_FILE"] = str(pip_conf)
    src, dist, venv, elsewhere, out = (tmp_path / n for n in ("src", "dist", "venv", "elsewhere", "out"))
    # A copy of the sources: an in-tree build would leave build/ and *.egg-info in the checkout.
    shutil.copytree(ROOT, src, ignore=NOT_SOURCE)
    isolation = ["--no-build-isolation"] if _setuptools_major() >= 77 else []  # pyproject's build requirement
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", *isolation, "-q", "-w", str(dist), str(src)], tmp_path, env, 300)
    (wheel,) = dist.glob("plan_experiment-*.whl")
    shutil.rmtree(src)  # nothing may come from the sources any more

    run([sys.executable, "-m", "venv", str(venv)], tmp_path, env, 120)
    python, tool = venv / "bin" / "python", venv / "bin" / "plan-experiment"
    run([str(python), "-m", "pip", "install", "-q", str(wheel)], tmp_path, env, 480)
    where = run([str(python), "-c", "import planner, planner.paths as p; print(planner.__file__); print(p.RECIPES_DIR)"],
                tmp_path, env, 60).stdout.split()
    assert all(Path(w).is_relative_to(venv) for w in where), where

    elsewhere.mkdir()
    result = run([str(tool), "new", "--spec", str(EXAMPLE / "experiment.yaml"), "--yes", "--out", str(out)], elsewhere, env, 120)
    exp = out / "cap_5L_lora_comparison_demo"
    assert result.stdout.splitlines()[-2:] == [f"Wrote {exp}", f"Next: plan-experiment submit {exp}"]
    files = {str(p.relative_to(exp)) for p in exp.rglob("*") if p.is_file()}
    assert {"experiment.yaml", "experiment_summary.md", "design-experiment.log", "estimates.json",
            "tiny-llama-cap_base/eval/capitalization/eval.sh",
            "tiny-llama-cap_base/eval/capitalization/eval_config.yaml"} <= files
    for run_name in ("tiny-llama-cap_rank4", "tiny-llama-cap_rank16"):
        assert {f"{run_name}/{f}" for f in ("setup_finetune.yaml", "finetune.yaml", "train.sh")} <= files
        assert {f"{run_name}/eval/capitalization_epoch{e}/{f}" for e in (0, 1) for f in ("eval.sh", "eval_config.yaml")} <= files
    finetune = load_yaml(exp / "tiny-llama-cap_rank4" / "finetune.yaml")
    assert finetune["model"]["lora_rank"] == 4 and finetune["model"]["_component_"] == "torchtune.models.llama2.lora_llama2"
    # The shipped task's script comes from the installed package, and is there.
    eval_sh = (exp / "tiny-llama-cap_base" / "eval" / "capitalization" / "eval.sh").read_text()
    script = next(w for w in eval_sh.split() if w.endswith("capitalization/eval.py"))
    assert Path(script).is_relative_to(venv) and Path(script).is_file(), script
    assert "## Compute Estimates" in (exp / "experiment_summary.md").read_text()

    # The demo's model and data are not package data: one line and exit 2, no traceback.
    demo = subprocess.run([str(tool), "demo", "--out", str(tmp_path / "demo")], cwd=elsewhere, env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert demo.returncode == 2, demo.stderr
    assert demo.stderr.startswith("error: the demo needs a checkout of plan-experiment (") and len(demo.stderr.splitlines()) == 1
