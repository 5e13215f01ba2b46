"""Recovery on the real Slurm cluster: out of memory, ``scontrol requeue``, the time limit.

Each test plans one LoRA run of the shipped example, submits it through the CLI, and
checks what a user sees afterwards (``status --json``, the status table, the journal,
design-experiment.log, the run's files). Nothing is faked except the documented
out-of-memory injection, which makes the real recipe raise torch's own error on CPU.
No process of ours may run outside Slurm meanwhile (the jobs recover by themselves).

Skipped without a cluster; required under ``CI=true``. Slow: the time-limit test waits
for Slurm's minute-granular limit and its 30-second timer.
"""

from __future__ import annotations

import math
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from recovery_support import (
    OOM_ENV,
    events,
    job_state,
    our_processes_outside_slurm,
    plan_one_run,
    resolved_config,
    run_folder,
    submit,
    train_unit,
)
from slurm_support import require_slurm, scancel

from planner.spec.units import parse_job_time
from submit_support import journal, poll, slurm_job_ids, status_json, status_tables

pytestmark = pytest.mark.slurm


@pytest.fixture()
def cluster() -> None:
    require_slurm()


@pytest.fixture()
def cleanup() -> Iterator[list[Path]]:
    exps: list[Path] = []
    yield exps
    for exp in exps:
        scancel(*slurm_job_ids(exp))


def _train_job(exp: Path) -> str:
    (sub,) = [s for s in journal(exp)["submissions"] if s["kind"] == "train"]
    return str(sub["tasks"][0]["job_id"])


def _wait_watching(exp: Path, timeout_s: float) -> dict:
    """wait_final, checking on every refresh that nothing of ours runs outside Slurm."""
    deadline = time.monotonic() + timeout_s
    outside: list[str] = []
    while True:
        outside += our_processes_outside_slurm(str(exp))
        report = status_json(exp)
        if report["all_final"]:
            break
        if time.monotonic() > deadline:
            pytest.fail(f"{exp.name}: not final after {timeout_s:g}s: {[(u['unit'], u['state']) for u in report['units']]}")
        time.sleep(2)
    assert outside == [], f"processes of ours outside Slurm: {outside}"
    return report


def test_out_of_memory_retries_with_half_the_batch(cluster: None, cleanup: list[Path], tmp_path: Path) -> None:
    exp = plan_one_run(tmp_path, "rec_oom", epochs=1)
    cleanup.append(exp)
    submit(exp, "slurm", {OOM_ENV: "2"})
    report = _wait_watching(exp, 900)
    unit = train_unit(report)
    assert unit["state"] == "COMPLETED", unit
    assert "batch 8 -> 2 x4 after out-of-memory (2 retries)" in unit["recovery"]
    run = run_folder(exp)
    cfg = resolved_config(run)
    assert (cfg["batch_size"], cfg["gradient_accumulation_steps"]) == (2, 4)  # effective batch 8, as planned
    log = next(run.glob("slurm-*.out")).read_text(encoding="utf-8", errors="replace")
    assert log.count("torch.OutOfMemoryError: CUDA out of memory") == 2
    assert [e["kind"] for e in events(exp)] == ["out-of-memory-retry", "out-of-memory-retry"]
    state = job_state(run)
    assert state["state"] == "COMPLETED" and len(state["recovery"]["deviations"]) == 2
    design = (exp / "design-experiment.log").read_text(encoding="utf-8")
    assert "RECOVERY: " in design and "batch 8 -> 4 x2 after out-of-memory" in design
    finetune, evals = status_tables(exp)
    assert "batch 8 -> 2 x4 after out-of-memory" in (finetune[0]["Notes"] or "")
    # One evaluation per task of the example (capitalization, retention), each of the one epoch.
    assert evals and {r["Status"] for r in evals} == {"completed"}


def test_scontrol_requeue_resumes_from_the_last_epoch(cluster: None, cleanup: list[Path], tmp_path: Path) -> None:
    exp = plan_one_run(tmp_path, "rec_requeue", epochs=2, controls={"batch_size": 2},
                       examples=2500)
    cleanup.append(exp)
    submit(exp, "slurm")
    job, run = _train_job(exp), run_folder(exp)
    assert poll(lambda: (run / "recipe_state" / "recipe_state.pt").is_file(), 900, 0.2), "epoch 0 never saved"
    assert not (run / "epoch_1").exists(), "epoch 1 finished before the requeue: make epochs longer"
    subprocess.run(["scontrol", "requeue", job], check=True, capture_output=True, timeout=30)
    report = _wait_watching(exp, 900)
    unit = train_unit(report)
    assert unit["state"] == "COMPLETED" and unit["attempts"] == 2, unit
    assert "2 attempts (1: interrupted" in unit["recovery"]
    assert (run / "epoch_1" / "adapter_model.pt").is_file()
    log = (run / f"slurm-{job}.out").read_text(encoding="utf-8", errors="replace")
    assert "resuming from epoch_0" in log
    assert "restarted" in [e["kind"] for e in events(exp)]
    epoch0 = run / "eval" / "capitalization_epoch0"
    assert len(list(epoch0.glob("slurm-*.out"))) == 1 and (epoch0 / "results.json").is_file()


def test_time_limit_stops_requeues_and_resumes(cluster: None, cleanup: list[Path], tmp_path: Path) -> None:
    """The job's limit is cut to just above its first epoch once that epoch is saved.

    Slurm's limit is in whole minutes and its timer runs every 30 s, so the limit is set
    from what epoch 0 took (a user does the same with `scontrol update TimeLimit`):
    long enough for an attempt that resumes at epoch 1, too short for both epochs. That
    needs an epoch of two minutes or more (19,200 steps: about two minutes on two quiet
    cores, more under load, which only widens the margin).
    """
    stop_before = 60
    exp = plan_one_run(tmp_path, "rec_time", epochs=2, controls={"batch_size": 1},
                       resources={"stop_before_limit": stop_before},
                       examples=24000)
    cleanup.append(exp)
    submit(exp, "slurm")
    job, run = _train_job(exp), run_folder(exp)
    assert poll(lambda: (run / "recipe_state" / "recipe_state.pt").is_file(), 3600, 0.5), "epoch 0 never saved"
    started = job_state(run)["started"]
    t0 = parse_job_time(started)
    assert t0 is not None
    first_epoch = time.time() - t0.timestamp()  # start-up and epoch 0: what the resumed attempt needs
    minutes = math.ceil((first_epoch + stop_before + 30 + 20) / 60)
    subprocess.run(["scontrol", "update", f"jobid={job}", f"TimeLimit={minutes}"], check=True, capture_output=True,
                   timeout=30)
    if (run / "epoch_1").exists():
        pytest.skip("epoch 1 finished before the limit took effect (machine much faster than assumed)")
    report = _wait_watching(exp, 3600)
    unit = train_unit(report)
    assert unit["state"] == "COMPLETED" and unit["attempts"] == 2, unit
    assert "1: requeued (time limit, epoch_0 saved)" in unit["recovery"]
    assert (run / "epoch_0" / "adapter_model.pt").is_file() and (run / "epoch_1" / "adapter_model.pt").is_file()
    log = (run / f"slurm-{job}.out").read_text(encoding="utf-8", errors="replace")
    assert "asked to stop before the time limit" in log and "resuming from epoch_0" in log
    assert [e["kind"] for e in events(exp)][:2] == ["requeued", "restarted"]
    epoch0 = run / "eval" / "capitalization_epoch0"
    assert len(list(epoch0.glob("slurm-*.out"))) == 1 and (epoch0 / "results.json").is_file()


@pytest.mark.parametrize(("limit", "resources", "warned_at"), [
    ("00:01:00", {}, 15),  # the default stop_before_limit (120 s) is twice the limit
    ("00:02:00", {"stop_before_limit": 600, "eval_time": "00:01:00"}, 30),  # evaluations warned too
])
def test_a_limit_shorter_than_its_warning_trains_to_completed(cluster: None, cleanup: list[Path], tmp_path: Path,
                                                               limit: str, resources: dict, warned_at: int) -> None:
    """The warning comes a quarter of the limit before it at most, and kills nothing of ours.

    Slurm may send it up to a minute early, so with these limits it may come as the job
    starts: the supervisor, the training and the job scripts ignore it or decide on it,
    and the tiny model trains to COMPLETED within the limit (or after its own requeue).
    """
    exp = plan_one_run(tmp_path, f"rec_short_{warned_at}", epochs=2, resources={"time": limit, **resources})
    cleanup.append(exp)
    submit(exp, "slurm")
    job, run = _train_job(exp), run_folder(exp)
    sub = next(s for s in journal(exp)["submissions"] if s["kind"] == "train")
    (script,) = list((exp / ".plan-experiment").rglob(f"{sub['job_id']}_submission.sh"))
    assert f"#SBATCH --signal=USR2@{warned_at}\n" in script.read_text()
    report = _wait_watching(exp, 600)
    unit = train_unit(report)
    log = (run / f"slurm-{job}.out").read_text(encoding="utf-8", errors="replace")
    assert unit["state"] == "COMPLETED", (unit, log[-3000:])
    outcomes = [a["outcome"] for a in job_state(run)["recovery"]["attempts"]]
    assert outcomes[-1] == "COMPLETED" and set(outcomes) <= {"REQUEUED", "COMPLETED"}, outcomes
    assert (run / "epoch_1" / "adapter_model.pt").is_file()
    if "eval_time" in resources:
        assert {u["state"] for u in report["units"]} == {"COMPLETED"}, report["units"]


NODE_FAIL_ENV = "PLAN_EXPERIMENT_TEST_NODE_FAIL"


def _node_state(node: str) -> str:
    proc = subprocess.run(["sinfo", "-h", "-n", node, "-o", "%T"], capture_output=True, text=True, timeout=30, check=False)
    return proc.stdout.strip()


def test_node_failure_is_requeued_and_resumes(cluster: None, cleanup: list[Path], tmp_path: Path) -> None:
    """The node is set DOWN under a running training job, then back: Slurm requeues it (--requeue).

    Setting a node DOWN stops every job on it, so this runs only where the cluster is the
    test's own: set PLAN_EXPERIMENT_TEST_NODE_FAIL=1 there; elsewhere point SLURM_CONF at a
    private cluster (docs/slurm-cluster.md) and set it.
    """
    if os.environ.get(NODE_FAIL_ENV) != "1":
        pytest.skip(f"sets a node DOWN: only on a cluster of its own ({NODE_FAIL_ENV}=1)")
    exp = plan_one_run(tmp_path, "rec_node", epochs=2, controls={"batch_size": 2}, examples=2500)
    cleanup.append(exp)
    submit(exp, "slurm")
    job, run = _train_job(exp), run_folder(exp)
    assert poll(lambda: (run / "recipe_state" / "recipe_state.pt").is_file(), 900, 0.2), "epoch 0 never saved"
    node = subprocess.run(["squeue", "-h", "-j", job, "-o", "%N"], capture_output=True, text=True, timeout=30,
                          check=True).stdout.strip()
    assert node, "the training job is not running on a node"
    try:
        subprocess.run(["scontrol", "update", f"nodename={node}", "state=down", "reason=plan-experiment recovery test"],
                       check=True, capture_output=True, timeout=30)
        assert poll(lambda: "NODE_FAIL" in subprocess.run(
            ["sacct", "-D", "-X", "-n", "-P", "-j", job, "-o", "State"], capture_output=True, text=True, timeout=30,
            check=False).stdout, 120, 1), "the job was not ended by the node failure"
    finally:
        # Restore the node whatever happened (ReturnToService may already have).
        subprocess.run(["scontrol", "update", f"nodename={node}", "state=resume"], capture_output=True, timeout=30,
                       check=False)
    assert poll(lambda: _node_state(node) in ("idle", "mixed", "allocated"), 120, 1), _node_state(node)
    report = _wait_watching(exp, 900)
    unit = train_unit(report)
    assert unit["state"] == "COMPLETED" and unit["attempts"] == 2, unit
    assert "1: interrupted (node failure (NODE_FAIL))" in unit["recovery"]
    assert (run / "epoch_1" / "adapter_model.pt").is_file()
    log = (run / f"slurm-{job}.out").read_text(encoding="utf-8", errors="replace")
    assert "resuming from epoch_0" in log
    restarted = [e["text"] for e in events(exp) if e["kind"] == "restarted"]
    assert len(restarted) == 1 and "after node failure (NODE_FAIL)" in restarted[0]
