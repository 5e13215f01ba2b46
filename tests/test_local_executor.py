"""Without Slurm: the demo on the local executor, and the pure rules of submit and status.

``test_demo_runs_locally_without_slurm`` runs the README's demo command with every Slurm
client hidden from PATH, so ``auto`` must pick the local executor and still take every
job to COMPLETED. The other tests exercise ``planner.jobs.submission`` and
``planner.status.report`` with a hand-made journal and job states: no scheduler, no files.
"""

from __future__ import annotations

import os
import re
import sys
from datetime import datetime
from pathlib import Path

import pytest
import yaml
from analyze_support import check_demo_analysis
from submit_support import EXAMPLE, block, cli, env_with_path, plan_units, table

from planner.folder.journal import Journal, Submission, TaskEntry
from planner.spec.runs import Plan, expand
from planner.spec.spec import parse_spec
from planner.jobs.scheduler import JobInfo
from planner.status.report import build_report, table_rows
from planner.jobs.submission import Selection, array_chunks, select

SLURM_CLIENTS = frozenset({"sbatch", "squeue", "sacct", "scontrol", "srun", "sinfo", "scancel", "salloc", "sacctmgr"})

R4, R16, BASE = "tiny-llama-cap_rank4", "tiny-llama-cap_rank16", "tiny-llama-cap_base"
E4, E16, EBASE = f"{R4}/capitalization_epoch0", f"{R16}/capitalization_epoch0", f"{BASE}/capitalization"
NOW = datetime(2025, 1, 31, 12, 0, 0)


def bin_without_slurm(folder: Path) -> Path:
    """A folder of symlinks to every program in /usr/bin and /bin except Slurm's clients."""
    folder.mkdir()
    for source in (Path("/usr/bin"), Path("/bin")):
        for program in source.iterdir():
            link = folder / program.name
            if program.name not in SLURM_CLIENTS and not link.exists() and not link.is_symlink():
                link.symlink_to(program)
    return folder


def test_demo_runs_locally_without_slurm(tmp_path: Path) -> None:
    bin_dir = bin_without_slurm(tmp_path / "bin")
    env = env_with_path([Path(sys.executable).parent, bin_dir])
    assert not any((Path(p) / "sbatch").exists() for p in env["PATH"].split(os.pathsep))
    out = tmp_path / "demo"
    proc = cli("demo", "--out", out, cwd=tmp_path, env=env, timeout_s=900)
    assert proc.returncode == 0, f"demo exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    assert "2/5 submit on the local executor" in proc.stdout
    exp = out / "cap_5L_lora_comparison_demo"
    runs, evals_planned = plan_units(exp)  # the shipped example decides how many epochs are evaluated
    n = len(runs) + len(evals_planned)
    assert f"{n} units: {n} completed" in proc.stdout
    assert f"Summary: {exp / 'experiment_summary.md'}" in proc.stdout.replace("\n", "")
    text = (exp / "experiment_summary.md").read_text(encoding="utf-8")
    finetune = table(block(text, "finetune-status"))
    evals = table(block(text, "eval-status"))
    assert [(r["Run Name"], r["Status"]) for r in finetune] == [(R4, "completed"), (R16, "completed")]
    assert [r["Status"] for r in evals] == ["completed"] * len(evals_planned)
    assert all(re.fullmatch(r"local-\d+", r["Job ID"]) for r in finetune + evals)
    for key in evals_planned:
        run, name = key.split("/")
        assert (exp / run / "eval" / name / "results.json").is_file(), key
    check_demo_analysis(exp, proc.stdout)


# --- pure rules -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def plan() -> Plan:
    """The shipped example's plan, one epoch evaluated: two LoRA ranks + a base-model control, one eval each."""
    data = yaml.safe_load((EXAMPLE / "experiment.yaml").read_text(encoding="utf-8"))
    data["controls"]["epochs"] = 1
    data["evaluation"]["epochs"] = "last"
    data["evaluation"]["tasks"] = data["evaluation"]["tasks"][:1]  # capitalization only: unit names spelled out below
    plan = expand(parse_spec(data, "experiment.yaml"))
    assert [r.name for r in plan.finetune_runs] == [R4, R16]
    assert [e.key for e in plan.evaluations] == [E4, E16, EBASE]
    return plan


def _groups(sel: Selection) -> list[tuple[list[str], str | None, str | None]]:
    return [([e.key for e in g.evaluations], g.after_run, g.after_job) for g in sel.eval_groups]


def test_select_first_submit_sends_everything_each_eval_after_its_own_run(plan: Plan) -> None:
    sel = select(plan, {}, None, False)
    assert [r.name for r in sel.train] == [R4, R16]
    # Each evaluation waits for its own run's new training; the base control waits for nothing.
    assert _groups(sel) == [([E4], R4, None), ([E16], R16, None), ([EBASE], None, None)]
    assert sel.skipped == [] and not sel.empty


def test_select_is_idempotent_for_active_and_completed_units(plan: Plan) -> None:
    states = {R4: ("7_0", "RUNNING"), R16: ("7_1", "PENDING"), E4: ("8", "PENDING"), E16: ("9", "SUBMITTED"),
              EBASE: ("10", "COMPLETED")}
    for retry in (False, True):  # --retry-failed never resubmits what is active or done
        sel = select(plan, states, None, retry)
        assert sel.empty and sel.train == [] and _groups(sel) == []
        assert sel.skipped == [
            (R4, "already running as job 7_0"), (R16, "already pending as job 7_1"),
            (E4, "already pending as job 8"), (E16, "already submitted as job 9"),
            (EBASE, "completed as job 10"),
        ]


def test_select_holds_back_evaluations_while_training_failed(plan: Plan) -> None:
    states = {R4: ("7_0", "COMPLETED"), R16: ("7_1", "FAILED"), E4: ("8", "COMPLETED"), E16: ("9", "CANCELLED"),
              EBASE: ("10", "COMPLETED")}
    sel = select(plan, states, None, False)
    assert sel.empty
    assert dict(sel.skipped)[R16] == "failed as job 7_1; use --retry-failed to resubmit"
    assert dict(sel.skipped)[E16] == "cancelled as job 9; use --retry-failed to resubmit"
    # An evaluation never submitted (e.g. left out by --only) is held back too, and says why.
    del states[E16]
    sel = select(plan, states, None, False)
    assert sel.empty and dict(sel.skipped)[E16] == "its training failed; fix it and use --retry-failed"


def test_select_retry_failed_resubmits_the_run_and_its_evaluations_only(plan: Plan) -> None:
    states = {R4: ("7_0", "COMPLETED"), R16: ("7_1", "OUT_OF_MEMORY"), E4: ("8", "COMPLETED"), E16: ("9", "CANCELLED"),
              EBASE: ("10", "COMPLETED")}
    sel = select(plan, states, None, True)
    assert [r.name for r in sel.train] == [R16]
    assert _groups(sel) == [([E16], R16, None)]  # after the new training, not the failed job
    assert sel.skipped == [(R4, "completed as job 7_0"), (E4, "completed as job 8"), (EBASE, "completed as job 10")]


def test_select_retry_of_an_evaluation_alone_has_no_dependency(plan: Plan) -> None:
    states = {R4: ("7_0", "COMPLETED"), R16: ("7_1", "COMPLETED"), E4: ("8", "TIMEOUT"), E16: ("9", "COMPLETED"),
              EBASE: ("10", "LOST")}
    assert select(plan, states, None, False).empty
    sel = select(plan, states, None, True)
    assert sel.train == [] and _groups(sel) == [([E4, EBASE], None, None)]


def test_select_waits_on_an_existing_training_job(plan: Plan) -> None:
    # Training submitted earlier with --only, its evaluation not: it waits for that job.
    sel = select(plan, {R4: ("7_0", "RUNNING"), R16: ("7_1", "COMPLETED")}, None, False)
    assert sel.train == []
    assert _groups(sel) == [([E4], R4, "7_0"), ([E16, EBASE], None, None)]


def test_select_only_narrows_to_the_named_runs(plan: Plan) -> None:
    sel = select(plan, {}, {R16}, False)
    assert [r.name for r in sel.train] == [R16]
    assert _groups(sel) == [([E16], R16, None)]
    sel = select(plan, {}, {BASE}, False)
    assert sel.train == [] and _groups(sel) == [([EBASE], None, None)]


def test_select_unknown_state_is_not_resubmitted(plan: Plan) -> None:
    sel = select(plan, {R4: ("7_0", "SPECIAL_EXIT")}, {R4}, True)
    assert sel.train == [] and dict(sel.skipped)[R4] == "state SPECIAL_EXIT as job 7_0"


@pytest.mark.parametrize(
    ("count", "max_size", "chunks"),
    [
        (0, 1001, []),
        (1, 1001, [(0, 1)]),
        (1000, 1001, [(0, 1000)]),
        # MaxArraySize=1001 allows indices 0..1000: 1001 tasks fit in one array.
        (1001, 1001, [(0, 1001)]),
        (1002, 1001, [(0, 1001), (1001, 1002)]),
        (2500, 1000, [(0, 1000), (1000, 2000), (2000, 2500)]),
        (5, 1, [(0, 1), (1, 2), (2, 3), (3, 4), (4, 5)]),
    ],
)
def test_array_chunks_keep_the_highest_index_below_max_array_size(count: int, max_size: int,
                                                                  chunks: list[tuple[int, int]]) -> None:
    got = array_chunks(count, max_size)
    assert got == chunks
    # Each chunk is its own array indexed from 0, so its highest index is its length - 1.
    assert all(stop - start - 1 < max_size for start, stop in got)
    assert sum(stop - start for start, stop in got) == count


def test_array_chunks_refuses_a_nonsense_limit() -> None:
    with pytest.raises(ValueError, match="MaxArraySize must be at least 1"):
        array_chunks(3, 0)


def _journal() -> Journal:
    """Train array 7 (both runs), evals 8 and 9 after their run, base eval 10; then R16 retried as 11/12."""
    def sub(number: int, kind: str, job: str, tasks: list[TaskEntry], dep: str | None = None,
            retry: bool = False) -> Submission:
        return Submission(number=number, time="2025-01-31T11:00:00", executor="slurm", kind=kind,  # type: ignore[arg-type]
                          job_id=job, dependency=dep, parameters={}, tasks=tasks, retry=retry)

    return Journal(experiment="cap_5L_lora_comparison_demo", submissions=[
        sub(1, "train", "7", [TaskEntry(unit=R4, job_id="7_0", script="train.sh", index=0), TaskEntry(unit=R16, job_id="7_1", script="train.sh", index=1)]),
        sub(2, "eval", "8", [TaskEntry(unit=E4, job_id="8", script="eval.sh")], "afterok:7_0"),
        sub(3, "eval", "9", [TaskEntry(unit=E16, job_id="9", script="eval.sh")], "afterok:7_1"),
        sub(4, "eval", "10", [TaskEntry(unit=EBASE, job_id="10", script="eval.sh")]),
        sub(5, "train", "11", [TaskEntry(unit=R16, job_id="11", script="train.sh")], retry=True),
        sub(6, "eval", "12", [TaskEntry(unit=E16, job_id="12", script="eval.sh")], "afterok:11", retry=True),
    ])


def test_build_report_uses_each_units_newest_job(plan: Plan) -> None:
    t0, t1 = datetime(2025, 1, 31, 11, 0, 0), datetime(2025, 1, 31, 11, 0, 24)
    jobs = {
        "7_0": JobInfo("COMPLETED", exit_code=0, start=t0, end=t1, elapsed_s=24),
        "7_1": JobInfo("FAILED", exit_code=1, start=t0, end=t1, elapsed_s=6),  # superseded by 11
        "8": JobInfo("COMPLETED", exit_code=0, start=t1, end=t1, elapsed_s=5),
        "11": JobInfo("FAILED", exit_code=1, start=t0, end=t1, elapsed_s=6),
        "12": JobInfo("CANCELLED", reason="DependencyNeverSatisfied", end=t1),
    }
    report = build_report(plan, _journal(), jobs, NOW, {E4: "exact_match=0.800 (n=50)"}, {R4: 30.0})
    by_unit = {u.unit: u for u in report.units}
    assert [(u.unit, u.state, u.job_id) for u in report.units] == [
        (R4, "COMPLETED", "7_0"), (R16, "FAILED", "11"), (E4, "COMPLETED", "8"), (E16, "CANCELLED", "12"),
        (EBASE, "SUBMITTED", "10"),  # no source knows job 10 yet: submitted, not lost
    ]
    assert by_unit[EBASE].source == "journal"
    assert not report.all_final and report.any_failed
    assert report.counts() == {"COMPLETED": 2, "FAILED": 1, "CANCELLED": 1, "SUBMITTED": 1}
    assert [u.unit for u in report.submitted] == [R4, R16, E4, E16, EBASE]

    ft, ev = table_rows(report, plan)
    assert [(r.run, r.status, r.job_id, r.started, r.completed, r.notes) for r in ft] == [
        (R4, "completed", "7_0", "2025-01-31 11:00:00", "2025-01-31 11:00:24", "elapsed 0:00:24; predicted 0:00:30 (-20%)"),
        (R16, "failed", "11", "2025-01-31 11:00:00", "2025-01-31 11:00:24", "exit code 1; elapsed 0:00:06"),
    ]
    assert [(r.run, r.task, r.epoch, r.status, r.job_id, r.completed, r.notes) for r in ev] == [
        (R4, "capitalization", 0, "completed", "8", "2025-01-31 11:00:24",
         "started 2025-01-31 11:00:24; elapsed 0:00:05; exact_match=0.800 (n=50)"),
        (R16, "capitalization", 0, "cancelled", "12", "2025-01-31 11:00:24", "training failed"),
        (BASE, "capitalization", None, "submitted", "10", None, "Base model"),
    ]

    # Job 10 ends: now every submitted unit is final.
    jobs["10"] = JobInfo("COMPLETED", exit_code=0, start=t1, end=t1, elapsed_s=4)
    report = build_report(plan, _journal(), jobs, NOW)
    assert report.all_final and report.any_failed


def test_build_report_before_any_submit_is_all_pending(plan: Plan) -> None:
    report = build_report(plan, Journal(experiment="x"), {}, NOW)
    assert {u.state for u in report.units} == {"NOT_SUBMITTED"}
    assert not report.all_final and not report.any_failed and report.submitted == []
    ft, ev = table_rows(report, plan)
    assert [r.status for r in ft + ev] == ["pending"] * 5
    assert ev[2].notes == "Base model" and ft[0].notes is None


def test_pending_reason_shows_in_notes_and_running_has_no_end(plan: Plan) -> None:
    jobs = {"7_0": JobInfo("RUNNING", start=NOW, end=None), "7_1": JobInfo("PENDING", reason="Resources"),
            "8": JobInfo("PENDING", reason="Dependency"), "9": JobInfo("PENDING", reason="None")}
    report = build_report(plan, _journal(), jobs, NOW)
    ft, ev = table_rows(report, plan)
    assert (ft[0].status, ft[0].completed, ft[0].notes) == ("running", None, None)
    assert ev[0].notes == "waiting: Dependency"


def test_dependency_cancel_as_sacct_reports_it_explains_itself(plan: Plan) -> None:
    # What sacct printed on the test cluster for an afterok job whose training failed:
    # State=CANCELLED, Reason=Dependency, Start=None.
    jobs = {"7_0": JobInfo("COMPLETED"), "11": JobInfo("FAILED", exit_code=1),
            "12": JobInfo("CANCELLED", reason="Dependency", end=NOW, raw_state="CANCELLED")}
    _, ev = table_rows(build_report(plan, _journal(), jobs, NOW), plan)
    assert ev[1].notes == "training failed"


def test_a_users_cancel_is_not_blamed_on_training(plan: Plan) -> None:
    jobs = {"7_0": JobInfo("COMPLETED"), "11": JobInfo("RUNNING"),
            "12": JobInfo("CANCELLED", reason="Dependency", end=NOW, raw_state="CANCELLED by 1000")}
    _, ev = table_rows(build_report(plan, _journal(), jobs, NOW), plan)
    assert ev[1].notes == "cancelled"


def test_out_of_memory_and_timeout_say_what_to_change(plan: Plan) -> None:
    jobs = {"7_0": JobInfo("OUT_OF_MEMORY", exit_code=0, end=NOW), "11": JobInfo("TIMEOUT", end=NOW)}
    journal = _journal()
    ft, _ = table_rows(build_report(plan, journal, jobs, NOW), plan)
    assert ft[0].status == "out_of_memory"
    assert "host memory ran out: raise resources.mem" in (ft[0].notes or "")
    assert ft[1].status == "timeout"
    assert "raise the time request" in (ft[1].notes or "")
