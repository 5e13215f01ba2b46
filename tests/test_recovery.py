"""Recovery decisions and records, fast: the batch after out-of-memory, recovery.json, status notes.

The real thing (torchtune running out of memory, requeues, the time limit) is exercised in
test_recovery_train.py (CPU) and test_recovery_slurm.py (the real cluster).
"""

from __future__ import annotations

import json
import os
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from planner.jobs.fault_injection import oom_threshold
from planner.jobs.train_supervisor import parse_args, resume_point, saved_epochs
from planner.spec.errors import ConfigError
from planner.folder.journal import Journal, JournalEvent, Submission, TaskEntry
from planner.jobs.recovery import (
    Attempt,
    Deviation,
    RecoveryState,
    is_out_of_memory,
    smaller_batch,
    status_note,
)
from planner.spec.runs import expand
from planner.spec.spec import parse_spec
from planner.jobs.scheduler import JobInfo
from planner.status.report import build_report, table_rows

SPEC = {
    "name": "rec",
    "models": ["m"],
    "dataset": {"path": "d.json"},
    "factors": {"lora_rank": [4]},
    "base_model_controls": False,
    "controls": {"epochs": 2, "batch_size": 8},
}


@pytest.mark.parametrize(("batch", "accum", "expected"), [
    (8, 1, (4, 2)), (4, 2, (2, 4)), (2, 4, (1, 8)), (6, 1, (3, 2)), (5, 1, (1, 5)), (12, 3, (6, 6)),
])
def test_smaller_batch_keeps_the_effective_batch(batch: int, accum: int, expected: tuple[int, int]) -> None:
    got = smaller_batch(batch, accum)
    assert got == expected
    assert got[0] * got[1] == batch * accum


def test_batch_one_cannot_shrink() -> None:
    assert smaller_batch(1, 8) is None


def test_out_of_memory_is_recognised_the_way_torch_prints_it() -> None:
    assert is_out_of_memory("Traceback ...\ntorch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB")
    assert is_out_of_memory("[rank0]: RuntimeError: CUDA out of memory. Tried to allocate")
    assert not is_out_of_memory("ValueError: Adapter weights not found")


def _state() -> RecoveryState:
    state = RecoveryState.planned(8, 1)
    state.deviations.append(Deviation("t", "12", "out-of-memory", 8, 1, 4, 2))
    state.batch, state.accumulation = 4, 2
    state.attempts += [Attempt(1, "12", "t0", "t1", "INTERRUPTED", "stopped by the scheduler", None, 1),
                       Attempt(2, "12", "t2", "t3", "COMPLETED", None, 0, 2)]
    return state


def test_recovery_json_round_trips_and_rejects_other_files() -> None:
    state = _state()
    assert RecoveryState.from_json(state.to_json()) == state
    assert "\n" not in state.to_json().rstrip("\n")  # job-state.json embeds it on one line
    with pytest.raises(ValueError):
        RecoveryState.from_json('{"state": "COMPLETED"}')
    with pytest.raises(ValueError):
        RecoveryState.from_json("not json")


def test_status_note_says_what_changed_and_how_often_the_job_started() -> None:
    note = status_note(_state(), "12")
    assert note is not None
    assert "batch 8 -> 4 x2 after out-of-memory" in note
    assert "2 attempts (1: interrupted (stopped by the scheduler); 2: completed)" in note
    # A later job (resubmitted) keeps the smaller batch but has one attempt of its own.
    assert status_note(_state(), "99") == "batch 8 -> 4 x2 after out-of-memory"


def test_status_table_and_json_carry_the_recovery() -> None:
    plan = expand(parse_spec(SPEC, "spec"))
    run = plan.finetune_runs[0].name
    journal = _journal(run)
    report = build_report(plan, journal, {"12": JobInfo(state="COMPLETED", elapsed_s=30)}, datetime(2025, 1, 1),
                          recovery={run: _state()})
    unit = next(u for u in report.units if u.unit == run)
    assert unit.attempts == 2
    assert json.loads(report.to_json())["units"][0]["attempts"] == 2
    ft, _ = table_rows(report, plan)
    assert ft[0].notes is not None and "batch 8 -> 4 x2 after out-of-memory" in ft[0].notes


def _journal(run: str) -> Journal:
    task = TaskEntry(unit=run, job_id="12", script="train.sh")
    return Journal(experiment="rec", submissions=[Submission(number=1, time="t", executor="slurm", kind="train",
                                                             job_id="12", dependency=None, parameters={}, tasks=[task])])


def test_journal_keeps_job_events_and_reads_older_journals() -> None:
    journal = Journal(experiment="rec", events=[JournalEvent(time="t", unit="r", job_id="12", kind="requeued", text="x")])
    assert Journal.from_json(journal.to_json(), "journal.json").events == journal.events
    assert Journal.from_json('{"experiment": "rec", "submissions": []}', "journal.json").events == []


def _epoch(run: Path, n: int, mtime: float) -> None:
    (run / f"epoch_{n}").mkdir(parents=True)
    path = run / f"epoch_{n}" / "adapter_model.pt"
    path.write_bytes(b"x")
    os.utime(path, (mtime, mtime))


def _recipe_state(run: Path, mtime: float) -> None:
    (run / "recipe_state").mkdir(exist_ok=True)
    path = run / "recipe_state" / "recipe_state.pt"
    path.write_bytes(b"x")
    os.utime(path, (mtime, mtime))


def test_resume_point_is_the_newest_epoch_with_its_recipe_state(tmp_path: Path) -> None:
    now = time.time()
    assert resume_point(tmp_path, 3) is None  # nothing saved: start from the base model
    _epoch(tmp_path, 0, now - 100)
    assert resume_point(tmp_path, 3) is None  # no recipe state: cannot resume
    _recipe_state(tmp_path, now - 90)
    assert resume_point(tmp_path, 3) == 0


def test_an_epoch_saved_without_its_recipe_state_is_moved_aside_not_deleted(tmp_path: Path) -> None:
    now = time.time()
    _epoch(tmp_path, 0, now - 100)
    _recipe_state(tmp_path, now - 90)
    _epoch(tmp_path, 1, now - 10)  # the save of epoch 1 was cut short before its recipe state
    assert resume_point(tmp_path, 3) == 0
    assert saved_epochs(tmp_path) == [0]
    assert [p.name.startswith("incomplete_epoch_1_") for p in tmp_path.iterdir() if "incomplete" in p.name] == [True]


def test_a_finished_training_is_not_resumed(tmp_path: Path) -> None:
    now = time.time()
    _epoch(tmp_path, 0, now - 100)
    _recipe_state(tmp_path, now - 90)
    _epoch(tmp_path, 1, now - 10)  # the last epoch writes no recipe state
    assert resume_point(tmp_path, 2) is None
    assert saved_epochs(tmp_path) == [0, 1]


def test_fault_injection_setting_is_checked() -> None:
    assert oom_threshold({}) is None
    assert oom_threshold({"PLAN_EXPERIMENT_FAULT_OOM_ABOVE_BATCH": "2"}) == 2
    with pytest.raises(ValueError, match="whole number"):
        oom_threshold({"PLAN_EXPERIMENT_FAULT_OOM_ABOVE_BATCH": "two"})


def test_supervisor_takes_the_training_command_after_the_separator() -> None:
    args = parse_args(["--run-dir", "r", "--job-id", "1", "--no-resume", "--", "tune", "run", "x", "--config", "c"])
    assert args.command == ["tune", "run", "x", "--config", "c"]
    assert args.resume is False and args.oom_retries == 3


def test_recovery_limits_are_validated_in_the_spec() -> None:
    spec = parse_spec({**SPEC, "resources": {"oom_retries": 0, "attempts": 1, "resume": False}}, "spec")
    assert (spec.resources.oom_retries, spec.resources.attempts, spec.resources.resume) == (0, 1, False)
    with pytest.raises(ConfigError) as err:
        parse_spec({**SPEC, "resources": {"attempts": 0, "oom_retries": -1}}, "spec")
    text = " ".join(err.value.problems)
    assert "attempts" in text and "oom_retries" in text


def test_train_sh_runs_the_supervisor_with_the_specs_limits(example: Path) -> None:
    import subprocess

    from conftest import run_cli, write_spec

    spec = write_spec(example, resources={"gpus": 0, "time": "00:10:00", "oom_retries": 1, "attempts": 2,
                                          "resume": False})
    assert run_cli("new", "--spec", str(spec), "--yes").exit_code == 0
    script = (example / "experiments" / "cap_5L_lora_comparison_demo" / "tiny-llama-cap_rank4" / "train.sh").read_text()
    assert "-m planner.jobs.train_supervisor" in script
    assert "--oom-retries 1 --attempts 2 --no-resume" in script
    assert "trap '' USR2" in script  # the shell and tee leave Slurm's stop warning to the supervisor
    # An environment whose python lacks the package falls back to the planning interpreter.
    assert f"SUPERVISOR_PYTHON={sys.executable}" in script or f"SUPERVISOR_PYTHON={Path(sys.executable).parent}/python" in script
    subprocess.run(["bash", "-n", "-c", script], check=True)


_CHILD = """
import os, pathlib, sys, time
here = pathlib.Path(sys.argv[1])
(here / "child.pid").write_text(str(os.getpid()))
while not (here / "go").exists():
    time.sleep(0.02)
print("trained")
"""


def _wait_for(path: Path, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


def test_the_time_limit_warning_kills_neither_supervisor_nor_training(tmp_path: Path) -> None:
    """Slurm sends SIGUSR2 to every process of the job, maybe as it starts: nothing of ours dies of it.

    The supervisor starts with the signal ignored (train.sh's trap), is warned before the
    training exists and again while it runs, with the training warned too; with nothing
    saved yet requeuing would not help, so the training goes on and completes.
    """
    import signal
    import subprocess

    run = tmp_path / "run"
    run.mkdir()
    (run / "finetune.yaml").write_text("epochs: 1\nbatch_size: 2\n")
    (tmp_path / "child.py").write_text(_CHILD)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "planner.jobs.train_supervisor", "--run-dir", str(run), "--job-id", "7", "--",
         sys.executable, str(tmp_path / "child.py"), str(tmp_path)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
        preexec_fn=lambda: signal.signal(signal.SIGUSR2, signal.SIG_IGN))  # as train.sh starts it
    try:
        os.kill(proc.pid, signal.SIGUSR2)  # before the training exists
        _wait_for(tmp_path / "child.pid")
        child = int((tmp_path / "child.pid").read_text())
        os.kill(proc.pid, signal.SIGUSR2)
        os.kill(child, signal.SIGUSR2)
        time.sleep(0.3)
        (tmp_path / "go").touch()
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    text = out.decode()
    assert proc.returncode == 0, text
    assert "trained" in text and "requeuing would not help; training on" in text
    state = json.loads((run / "recovery.json").read_text())
    assert [a["outcome"] for a in state["attempts"]] == ["COMPLETED"]


def test_job_scripts_ignore_the_time_limit_warning(example: Path) -> None:
    """train.sh and eval.sh ignore SIGUSR2 from their first line on: only the supervisor acts on it."""
    from conftest import run_cli, write_spec

    spec = write_spec(example, resources={"gpus": 0, "time": "00:10:00"})
    assert run_cli("new", "--spec", str(spec), "--yes").exit_code == 0
    exp = example / "experiments" / "cap_5L_lora_comparison_demo"
    for script in (exp / "tiny-llama-cap_rank4" / "train.sh", exp / "tiny-llama-cap_base" / "eval" / "capitalization" / "eval.sh"):
        lines = script.read_text().splitlines()
        code = [line for line in lines if line and not line.startswith("#")]
        assert code[:2] == ["set -uo pipefail", "trap '' USR2"], (script.name, code[:3])


def test_why_the_previous_attempt_ended_comes_from_sacct_duplicates() -> None:
    from planner.jobs.recovery import interruption

    assert interruption(["NODE_FAIL", "RUNNING"]) == "node failure (NODE_FAIL)"
    assert interruption(["REQUEUED", "PREEMPTED", "RUNNING"]) == "preempted (PREEMPTED)"
    assert interruption(["CANCELLED by 0", "RUNNING"]) == "cancelled (CANCELLED)"
    assert interruption(["RUNNING"]) == interruption([]) == "stopped by the scheduler"


def _record(job_id: str, state: str, reason: str | None = None) -> Any:
    from planner.jobs.sacct import JobRecord

    return JobRecord(job_id=job_id, raw_id=job_id, array_job_id=None, array_task_id=None, state=state, raw_state=state,
                     reason=reason, exit_code=None, signal=None, submit=None, start=None, end=None, elapsed_s=None,
                     node_list=None, name="x")


def test_a_node_failure_slurm_requeued_is_not_reported_as_ended(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Accounting shows NODE_FAIL until the requeued attempt starts; the controller holds the job again.

    The real sequence runs in test_recovery_slurm.py on a cluster of its own; here the two
    answers are given, because a shared cluster cannot lose a node on demand.
    """
    from planner.jobs import slurm

    scheduler = slurm.SlurmScheduler(tmp_path)
    monkeypatch.setattr(slurm.slurm_query, "sacct", lambda ids, timeout, wanted=None: [_record("12", "NODE_FAIL")])
    monkeypatch.setattr(slurm.slurm_query, "squeue", lambda ids, timeout, wanted=None: [_record("12", "PENDING", "BeginTime")])
    got = scheduler.query({"12": tmp_path}, 5)
    assert got.jobs["12"].state == "PENDING"
    assert got.jobs["12"].reason == "requeued after NODE_FAIL (BeginTime)"
    # Not requeued (no --requeue, or attempts used up): the node failure stands.
    monkeypatch.setattr(slurm.slurm_query, "squeue", lambda ids, timeout, wanted=None: [])
    assert scheduler.query({"12": tmp_path}, 5).jobs["12"].state == "NODE_FAIL"
