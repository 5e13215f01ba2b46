"""Jobs refresh their experiment's status tables as they end (no scheduler needed here).

What a user notices: the summary's tables change when jobs end, with nobody running
``status``; a job never fails or waits long because of it; many jobs ending at once lose
no update and no hand-written byte. The same on a real Slurm cluster is in
test_job_refresh_slurm.py.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import pytest
from submit_support import (
    block,
    cli,
    copy_example,
    journal,
    ok,
    plan,
    plan_units,
    poll,
    replace_job_command,
    run_folders,
    status_tables,
)

from planner.jobs import slurm_query
from planner.folder.experiment import load_experiment
from planner.status.job_refresh import request_path
from planner.status.refresh import collect, refresh
from planner.folder.journal import Journal, Submission, TaskEntry
from planner.jobs.sacct import JobRecord

HAND = ("Hand line one: keep me.", "Hand line two, between the tables.", "- Hand line three in Notes.")


def add_hand_lines(summary: Path) -> None:
    """Three lines a user writes by hand: above Status, between the tables, in Notes."""
    text = summary.read_text(encoding="utf-8")
    text = text.replace("\n## Status\n", f"\n{HAND[0]}\n\n## Status\n", 1)
    end_ft = "<!-- plan-experiment:end finetune-status -->\n"
    text = text.replace(end_ft, f"{end_ft}\n{HAND[1]}\n", 1)
    summary.write_text(text.rstrip("\n") + f"\n{HAND[2]}\n", encoding="utf-8")


def assert_hand_lines(text: str) -> None:
    """Each hand line exactly once, where it was written."""
    assert [text.count(h) for h in HAND] == [1, 1, 1]
    assert text.index(HAND[0]) < text.index("## Status") < text.index(HAND[1]) < text.index("## Notes") < text.index(HAND[2])


def refresh_line(exp: Path) -> str:
    """The summary's line that says when and by what the tables were refreshed."""
    return block((exp / "experiment_summary.md").read_text(encoding="utf-8"), "status-refresh").strip()


def job_refresh(exp: Path, job_id: str, *extra: str, env: dict[str, str] | None = None,
                timeout_s: float = 60) -> subprocess.CompletedProcess[str]:
    """The command a job script runs as it ends."""
    return subprocess.run([sys.executable, "-m", "planner.status.job_refresh", str(exp), job_id, *extra],
                          capture_output=True, text=True, timeout=timeout_s, check=False, cwd="/", env=env)


def utc(offset_s: float = 0) -> str:
    """A job-state.json time."""
    t = datetime.fromtimestamp(time.time() + offset_s, timezone.utc)
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def state_json(job_id: str, state: str, exit_code: int | None) -> str:
    """A job's own record, as the job scripts write it."""
    return json.dumps({"state": state, "job_id": job_id, "started": utc(-3), "ended": utc(),
                       "exit_code": exit_code, "host": "test"}) + "\n"


def journal_for(exp: Path, units: list[str], executor: str, ids: list[str]) -> None:
    """journal.json as a submit of ``units`` as jobs ``ids`` on ``executor`` would write it."""
    sub = Submission(number=1, time="2025-01-31T11:00:00", executor=executor, kind="train", job_id=ids[0].split("_")[0],
                     dependency=None, parameters={},
                     tasks=[TaskEntry(unit=u, job_id=j, script=str(exp / u / "train.sh")) for u, j in zip(units, ids)])
    (exp / "journal.json").write_text(Journal(experiment=exp.name, submissions=[sub]).to_json(), encoding="utf-8")


@pytest.fixture
def many(tmp_path: Path) -> Path:
    """A planned experiment of 20 fine-tune runs and no evaluations, with three hand lines."""
    spec = copy_example(tmp_path / "src", {"name": "cap_many", "base_model_controls": False,
                                           "factors": {"lora_rank": [4]},
                                           "replicates": {"seeds": list(range(1, 21))},
                                           "evaluation": {"tasks": []}})
    exp = plan(spec, tmp_path / "out")
    add_hand_lines(exp / "experiment_summary.md")
    return exp


def test_twenty_jobs_ending_at_once_lose_no_update(many: Path) -> None:
    exp = many
    runs = plan_units(exp)[0]
    assert len(runs) == 20
    ids = [f"local-{999000000 + i}" for i in range(20)]  # above any pid_max: jobs whose process has ended
    journal_for(exp, runs, "local", ids)
    # Each job writes its own record and then refreshes, all at once; a short lock wait
    # makes most of them leave their refresh to whoever holds the lock.
    script = 'printf "%s" "$3" > "$2/job-state.json" && exec "$4" -m planner.status.job_refresh "$1" "$5" --lock-wait 0.2'
    procs = [subprocess.Popen(["bash", "-c", script, "job", str(exp), str(exp / run), state_json(j, "COMPLETED", 0),
                               sys.executable, j], cwd="/", stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for run, j in zip(runs, ids)]
    outs = [p.communicate(timeout=180) for p in procs]
    assert [p.returncode for p in procs] == [0] * 20, outs
    lines = [out.strip() for out, _ in outs]
    assert all(ln.startswith("plan-experiment: status tables ") and "\n" not in ln for ln in lines), lines
    assert not [err for _, err in outs if err.strip()], "a refresh wrote to stderr"
    finetune, _ = status_tables(exp)
    assert [(r["Run Name"], r["Status"], r["Job ID"]) for r in finetune] == [(r, "completed", j) for r, j in zip(runs, ids)]
    assert all(r["Started"] != "-" and r["Completed"] != "-" and "elapsed 0:00:03" in r["Notes"] for r in finetune)
    assert_hand_lines((exp / "experiment_summary.md").read_text(encoding="utf-8"))
    assert not list((exp / ".plan-experiment" / "refresh-requests").iterdir()), "a request was never served"
    assert refresh_line(exp).startswith("Tables refreshed ") and " by job local-" in refresh_line(exp)


def test_a_lock_held_too_long_is_a_line_and_the_holder_serves_the_request(many: Path) -> None:
    exp = many
    runs = plan_units(exp)[0][:1]
    journal_for(exp, runs, "local", ["local-999999991"])
    (exp / runs[0] / "job-state.json").write_text(state_json("local-999999991", "FAILED", 3), encoding="utf-8")
    loaded = load_experiment(exp)
    with loaded.lock():
        t0 = time.monotonic()
        proc = job_refresh(exp, "local-999999991", "--lock-wait", "1")
        waited = time.monotonic() - t0
    assert proc.returncode == 0 and proc.stderr == ""
    assert proc.stdout.strip() == ("plan-experiment: status tables not refreshed by job local-999999991: another refresh "
                                   "held the experiment's lock for 1 s; it refreshes again for this job before it lets go")
    assert waited < 10
    assert request_path(loaded, "local-999999991").exists()
    assert status_tables(exp)[0][0]["Status"] == "pending"
    # The next refresh from any job serves the request left behind.
    ok_proc = job_refresh(exp, "local-999999992")
    assert ok_proc.stdout.startswith("plan-experiment: status tables refreshed by job local-999999992")
    row = status_tables(exp)[0][0]
    assert (row["Status"], row["Job ID"]) == ("failed", "local-999999991") and "exit code 3" in row["Notes"]
    assert not request_path(loaded, "local-999999991").exists()
    # status says how current the tables were before it, and that it refreshed them now.
    out = cli("status", exp).stdout
    assert re.search(r"refreshed \d{4}-\d\d-\d\d \d\d:\d\d:\d\d by `plan-experiment status` \(before that: "
                     r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d by job local-999999992\)", out), out
    assert refresh_line(exp).endswith("by `plan-experiment status`.")


@contextmanager
def read_only(folder: Path) -> Iterator[None]:
    """Make a folder read-only for this user (root ignores modes: the immutable flag then)."""
    mode = folder.stat().st_mode
    folder.chmod(0o555)
    immutable = False
    try:
        if os.geteuid() == 0:
            try:
                proc = subprocess.run(["chattr", "+i", str(folder)], capture_output=True, text=True, check=False)
            except FileNotFoundError:
                pytest.skip("running as root without chattr (e2fsprogs): cannot make a folder read-only")
            if proc.returncode != 0:
                pytest.skip(f"running as root and chattr +i is refused here ({proc.stderr.strip()}): cannot make a folder read-only")
            immutable = True
        yield
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(folder)], check=True)
        folder.chmod(mode)


def test_read_only_experiment_folder_is_a_line_and_status_catches_up(many: Path) -> None:
    exp = many
    runs = plan_units(exp)[0][:1]
    journal_for(exp, runs, "local", ["local-999999993"])
    (exp / runs[0] / "job-state.json").write_text(state_json("local-999999993", "COMPLETED", 0), encoding="utf-8")
    before = (exp / "experiment_summary.md").read_text(encoding="utf-8")
    with read_only(exp):
        proc = job_refresh(exp, "local-999999993")
    assert proc.returncode == 0 and proc.stderr == ""
    line = proc.stdout.strip()
    assert line.startswith(f"plan-experiment: status tables not refreshed: cannot write {exp}/"), line
    assert "the experiment folder is read-only here" in line and "catches up once it is writable" in line
    assert (exp / "experiment_summary.md").read_text(encoding="utf-8") == before
    ok(cli("status", exp))
    assert status_tables(exp)[0][0]["Status"] == "completed"
    assert refresh_line(exp).endswith("by `plan-experiment status`.")


def python_without_planner(folder: Path) -> Path:
    """A ``python3`` that cannot import the planner (no site-packages, no PYTHONPATH)."""
    folder.mkdir(parents=True, exist_ok=True)
    wrapper = folder / "python3"
    wrapper.write_text(f"#!/bin/sh\nexec {sys.executable} -I -S \"$@\"\n", encoding="utf-8")
    wrapper.chmod(0o755)
    # A node whose environment has torchtune: the job script then leaves PATH alone.
    (folder / "tune").write_text("#!/bin/sh\nexit 0\n", encoding="utf-8")
    (folder / "tune").chmod(0o755)
    return wrapper


def test_job_on_a_node_without_the_planner_keeps_its_exit_code_and_says_why(many: Path, tmp_path: Path) -> None:
    exp = many
    run = run_folders(exp)[0]
    script = run / "train.sh"
    replace_job_command(script, "(exit 3)")
    text = script.read_text(encoding="utf-8")
    planner_python = f"local py={sys.executable} "
    assert planner_python in text
    # The planning interpreter is not on this node; the node's python3 has no planner.
    script.write_text(text.replace(planner_python, "local py=/nonexistent/python "), encoding="utf-8")
    bin_dir = tmp_path / "node-bin"
    python_without_planner(bin_dir)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
    env["PLAN_EXPERIMENT_JOB_ID"] = "4242"
    t0 = time.monotonic()
    proc = subprocess.run(["bash", str(script)], capture_output=True, text=True, env=env, timeout=120, check=False)
    assert proc.returncode == 3, proc.stderr
    assert time.monotonic() - t0 < 20
    assert json.loads((run / "job-state.json").read_text())["exit_code"] == 3
    log = (run / "slurm-4242.out").read_text(encoding="utf-8")
    assert (f"plan-experiment: status tables not refreshed: {bin_dir / 'python3'} could not run the planner (exit 1: "
            "is plan-experiment installed for it?); `plan-experiment status` catches up") in log


def test_jobs_on_the_local_executor_refresh_the_summary_without_status(tmp_path: Path) -> None:
    spec = copy_example(tmp_path / "src", {"name": "cap_local_refresh", "base_model_controls": False})
    exp = plan(spec, tmp_path / "out")
    add_hand_lines(exp / "experiment_summary.md")
    good, bad = (p.name for p in sorted(run_folders(exp), key=lambda p: p.name != "tiny-llama-cap_rank4"))
    replace_job_command(exp / good / "train.sh", "sleep 1; mkdir -p epoch_0")
    replace_job_command(exp / bad / "train.sh", "sleep 1; (exit 3)")
    for ev in exp.glob("*/eval/*/eval.sh"):
        replace_job_command(ev, """sleep 1; printf '{"exact_match": 0.25, "n": 4}\\n' > results.json""")
    ok(cli("submit", exp, "--executor", "local"))
    ids = {t["unit"]: t["job_id"] for s in journal(exp)["submissions"] for t in s["tasks"]}
    states = [exp / good / "job-state.json", exp / bad / "job-state.json",
              exp / good / "eval" / "capitalization_epoch0" / "job-state.json",
              exp / bad / "eval" / "capitalization_epoch0" / "job-state.json"]

    def ended() -> bool:
        # Every job's record final, and every job's process gone (its refresh ran before).
        from planner.jobs.executors import local_pid_alive
        records = [json.loads(p.read_text()) if p.exists() else {} for p in states]
        return (all(r.get("state") in ("COMPLETED", "FAILED", "CANCELLED") for r in records)
                and not any(local_pid_alive(j) for j in ids.values()))

    assert poll(ended, 240), "local jobs did not end"
    text = (exp / "experiment_summary.md").read_text(encoding="utf-8")
    assert_hand_lines(text)
    finetune, evals = status_tables(exp)
    assert {r["Run Name"]: r["Status"] for r in finetune} == {good: "completed", bad: "failed"}
    assert "exit code 3" in next(r["Notes"] for r in finetune if r["Run Name"] == bad)
    assert {r["Run Name"]: r["Status"] for r in evals} == {good: "completed", bad: "cancelled"}
    good_eval = next(r for r in evals if r["Run Name"] == good)
    assert "exact_match=0.250 (n=4)" in good_eval["Notes"] and "started " in good_eval["Notes"]
    assert " by job " in refresh_line(exp)
    assert not list((exp / ".plan-experiment" / "refresh-requests").iterdir())


# --- the scheduler's view merged with the jobs' own records (failure paths, faked) --------


@pytest.fixture
def slurm_exp(many: Path) -> Path:
    """Two runs journalled as tasks 0 and 1 of Slurm array 500."""
    runs = plan_units(many)[0][:2]
    journal_for(many, runs, "slurm", ["500_0", "500_1"])
    return many


def _record(job_id: str, state: str, exit_code: int = 0) -> JobRecord:
    array, task = job_id.split("_")
    return JobRecord(job_id=job_id, raw_id=None, array_job_id=array, array_task_id=int(task), state=state,  # type: ignore[arg-type]
                     raw_state=state, reason=None, exit_code=exit_code, signal=0, submit=None,
                     start=datetime(2025, 1, 31, 11), end=None, elapsed_s=None, node_list=None, name="t")


def test_a_jobs_own_final_record_beats_lagging_accounting_and_is_not_cached(slurm_exp: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    exp = load_experiment(slurm_exp)
    runs = plan_units(slurm_exp)[0][:2]
    (slurm_exp / runs[0] / "job-state.json").write_text(state_json("500_0", "COMPLETED", 0), encoding="utf-8")
    (slurm_exp / runs[1] / "job-state.json").write_text(state_json("500_1", "FAILED", 3), encoding="utf-8")
    # Accounting has not seen task 0 end; it saw task 1 fail with the wrapper's exit code.
    monkeypatch.setattr(slurm_query, "sacct", lambda ids, timeout_s=30.0: [_record("500_0", "RUNNING"),
                                                                             _record("500_1", "FAILED", 1)])
    report, calls = refresh(exp, datetime.now())
    assert calls == 1
    by = {u.unit: u for u in report.units}
    assert (by[runs[0]].state, by[runs[0]].source) == ("COMPLETED", "job file")
    assert (by[runs[1]].state, by[runs[1]].exit_code) == ("FAILED", 3)  # the script's code, not the wrapper's
    cache = exp.read_cache()
    assert "500_0" not in cache["final"], "a job's own record must not hide the scheduler's final word"
    assert "500_1" in cache["final"]


def test_rows_stay_as_they_were_when_the_scheduler_cannot_be_asked(slurm_exp: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    exp = load_experiment(slurm_exp)
    runs = plan_units(slurm_exp)[0][:2]
    monkeypatch.setattr(slurm_query, "sacct", lambda ids, timeout_s=30.0: [_record("500_0", "RUNNING"),
                                                                             _record("500_1", "PENDING")])
    refresh(exp, datetime.now())

    def down(*_: object, **__: object) -> list[JobRecord]:
        raise slurm_query.SchedulerQueryError("sacct: error: slurmdbd not responding", ["sacct"], "")

    monkeypatch.setattr(slurm_query, "sacct", down)
    monkeypatch.setattr(slurm_query, "squeue", down)
    got = collect(exp, exp.read_journal(), exp.read_cache())
    assert got.stale
    assert {j: (i.state, i.source) for j, i in got.jobs.items()} == {"500_0": ("RUNNING", "last refresh"),
                                                                     "500_1": ("PENDING", "last refresh")}
    report, _ = refresh(exp, datetime.now(), by="job 500_1")
    finetune, _ = status_tables(slurm_exp)
    assert [(r["Run Name"], r["Status"]) for r in finetune][:2] == [(runs[0], "running"), (runs[1], "pending")]
    assert all("from last refresh" in r["Notes"] for r in finetune[:2])
    assert refresh_line(slurm_exp).startswith("Tables refreshed ")
    assert "by job 500_1. The scheduler could not be asked (sacct: error: slurmdbd not responding)" in refresh_line(slurm_exp)
    assert report.previous_refresh and report.previous_refresh["by"] == "`plan-experiment status`"


def test_a_job_stopped_by_a_signal_records_it_and_refreshes_before_it_exits(many: Path) -> None:
    exp = many
    run = plan_units(exp)[0][0]
    journal_for(exp, [run], "local", ["local-999999994"])
    replace_job_command(exp / run / "train.sh", "sleep 60")
    env = {**os.environ, "PLAN_EXPERIMENT_JOB_ID": "local-999999994"}
    # Its own session, so the signal reaches the whole job as Slurm's does (scancel, time limit).
    proc = subprocess.Popen(["bash", str(exp / run / "train.sh")], env=env, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert poll(lambda: (exp / run / "slurm-local-999999994.out").exists(), 30)
    time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGTERM)
    proc.communicate(timeout=60)
    assert proc.returncode == 143
    record = json.loads((exp / run / "job-state.json").read_text())
    assert (record["state"], record["exit_code"]) == ("FAILED", 143)
    row = status_tables(exp)[0][0]
    assert (row["Status"], row["Job ID"]) == ("failed", "local-999999994") and "exit code 143" in row["Notes"]
    assert "plan-experiment: status tables refreshed by job local-999999994" in (
        exp / run / "slurm-local-999999994.out").read_text(encoding="utf-8")


def test_summary_markers_edited_away_are_a_line_and_an_older_summary_without_the_refresh_line_still_refreshes(
        many: Path) -> None:
    exp = many
    summary = exp / "experiment_summary.md"
    run = plan_units(exp)[0][0]
    journal_for(exp, [run], "local", ["local-999999995"])
    (exp / run / "job-state.json").write_text(state_json("local-999999995", "COMPLETED", 0), encoding="utf-8")
    # Planned before jobs refreshed: no refresh-line block. The tables are refreshed all the same.
    text = summary.read_text(encoding="utf-8")
    old = text.replace(block(text, "status-refresh"), "\n").replace(
        "<!-- plan-experiment:begin status-refresh -->\n<!-- plan-experiment:end status-refresh -->\n", "")
    assert "status-refresh" not in old
    summary.write_text(old, encoding="utf-8")
    assert job_refresh(exp, "local-999999995").stdout.startswith("plan-experiment: status tables refreshed by job")
    assert status_tables(exp)[0][0]["Status"] == "completed" and "status-refresh" not in summary.read_text()
    # A table's marker removed by hand: nothing is written, the job's log says what to restore.
    broken = summary.read_text(encoding="utf-8").replace("<!-- plan-experiment:begin eval-status -->\n", "")
    summary.write_text(broken, encoding="utf-8")
    proc = job_refresh(exp, "local-999999995")
    assert proc.returncode == 0 and proc.stderr == ""
    assert proc.stdout.startswith("plan-experiment: status tables not refreshed: ") and "restore the markers" in proc.stdout
    assert summary.read_text(encoding="utf-8") == broken
