"""Helpers for the recovery tests: plan one fine-tune run of the example, submit it, inspect it.

Import from test modules (``from recovery_support import ...``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import psutil
from submit_support import cli, copy_example, journal, ok, plan

OOM_ENV = "PLAN_EXPERIMENT_FAULT_OOM_ABOVE_BATCH"


def capitalization_data(count: int) -> dict[str, list[dict[str, str]]]:
    """A capitalization dataset of ``count`` 5-letter words made by the task's own generator."""
    from train_support import load_task_module

    return dict(load_task_module("generate").build_dataset(word_length=5, train_pct=80, count=count, seed=0))


def plan_one_run(root: Path, name: str, *, epochs: int = 1, resources: dict[str, Any] | None = None,
                 controls: dict[str, Any] | None = None, examples: int | None = None) -> Path:
    """Plan the example with one LoRA rank, no base control, every epoch evaluated; return the folder.

    ``examples``: train on a generated dataset of that many words instead of the example's
    500, so that epochs last long enough to be interrupted.
    """
    import yaml

    spec = copy_example(root / "src", one_epoch=False)
    data = yaml.safe_load(spec.read_text(encoding="utf-8"))
    if examples:
        fname = f"words_5L_80P_{examples}.json"
        (root / "src" / "data" / fname).write_text(json.dumps(capitalization_data(examples)), encoding="utf-8")
        data["dataset"] = {"path": fname}
    data["name"] = name
    data["factors"] = {"lora_rank": [4]}
    data["base_model_controls"] = False
    data["controls"] = {**data["controls"], "epochs": epochs, **(controls or {})}
    data["evaluation"]["epochs"] = "all"
    data["resources"] = {"gpus": 0, "time": "00:15:00", **(resources or {})}
    spec.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return plan(spec, root / "exps")


def submit(exp: Path, executor: str, extra_env: dict[str, str] | None = None) -> str:
    """``plan-experiment submit`` with the given environment additions (what a user exports)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(extra_env or {})}
    return ok(cli("submit", exp, "--executor", executor, env=env, timeout_s=180))


def run_folder(exp: Path) -> Path:
    """The one fine-tune run's folder."""
    (run,) = [p for p in exp.iterdir() if (p / "train.sh").is_file()]
    return run


def train_unit(report: dict[str, Any]) -> dict[str, Any]:
    """The fine-tune unit of a ``status --json`` report."""
    (unit,) = [u for u in report["units"] if u["kind"] == "train"]
    return unit


def events(exp: Path) -> list[dict[str, Any]]:
    """The journal's job events."""
    return list(journal(exp).get("events", []))


def resolved_config(run: Path) -> dict[str, Any]:
    """The config torchtune resolved and wrote (torchtune_config.yaml: overrides applied)."""
    import yaml

    return dict(yaml.safe_load((run / "torchtune_config.yaml").read_text(encoding="utf-8")))


def job_state(folder: Path) -> dict[str, Any]:
    """A job folder's job-state.json."""
    return dict(json.loads((folder / "job-state.json").read_text(encoding="utf-8")))


def our_processes_outside_slurm(marker: str) -> list[str]:
    """Processes whose command line names ``marker`` (an experiment folder) that Slurm did not start.

    On the one-node cluster the submitting host is also the compute node: a process of
    ours that Slurm did not start (no slurmstepd among its ancestors) runs on the
    submitting host's account, which recovery must never need.
    """
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            cmdline = " ".join(proc.info["cmdline"] or [])
            if marker not in cmdline or proc.pid == os.getpid():
                continue
            if any(p.name().startswith("slurmstepd") for p in proc.parents()):
                continue
            # While Slurm tears an attempt down (a requeue), a job's srun can outlive its
            # slurmstepd for a moment; Slurm's environment still marks it as the job's.
            if "SLURM_JOB_ID" not in proc.environ():
                found.append(f"{proc.pid}: {cmdline[:200]}")
        except psutil.Error:
            continue
    return found
