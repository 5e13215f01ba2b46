"""``submit`` and ``status`` against a real Slurm cluster, end to end, through the CLI.

Every test plans the shipped capitalization example (tiny model, CPU) into its own
folder, submits it to the cluster, lets it train and evaluate, and checks what a user
sees: command output and exit codes, ``status --json``, the status tables of
experiment_summary.md, results.json files and the journal.

Skipped when no cluster answers (``bash scripts/slurm-cluster.sh start``); required
under ``CI=true``. The one-node cluster runs two 1-CPU jobs at a time, so a module run
takes a few minutes.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from slurm_support import require_slurm, scancel, wait_for_records
from submit_support import (
    EXAMPLE,
    PLAN_EXPERIMENT,
    block,
    cli,
    copy_example,
    eval_dirs,
    journal,
    journal_units,
    ok,
    plan,
    plan_units,
    slurm_job_ids,
    status_json,
    status_tables,
    table,
    unit_states,
    wait_final,
)

pytestmark = pytest.mark.slurm

# Lines a user writes by hand into experiment_summary.md: status must never lose them.
HAND_ABOVE = "Hand note above the status section: keep me."
HAND_BETWEEN = "Hand note between the two status tables: keep me too."
HAND_NOTES = "- Hand note in Notes: rank 16 looked odd on 2025-01-01."


@pytest.fixture(autouse=True)
def _cluster() -> None:
    require_slurm()


def add_hand_lines(summary: Path) -> None:
    """Write the three hand lines where a user would: above Status, between the tables, in Notes."""
    text = summary.read_text(encoding="utf-8")
    assert "\n## Status\n" in text and "\n## Notes\n" in text
    text = text.replace("\n## Status\n", f"\n{HAND_ABOVE}\n\n## Status\n", 1)
    end_ft = "<!-- plan-experiment:end finetune-status -->\n"
    text = text.replace(end_ft, f"{end_ft}\n{HAND_BETWEEN}\n", 1)
    text = text.rstrip("\n") + f"\n{HAND_NOTES}\n"
    summary.write_text(text, encoding="utf-8")


def assert_hand_lines(text: str) -> None:
    """Each hand line is there exactly once, and still outside the generated blocks."""
    for line in (HAND_ABOVE, HAND_BETWEEN, HAND_NOTES):
        assert text.count(line) == 1, f"hand line lost or duplicated: {line!r}"
    assert text.index(HAND_ABOVE) < text.index("## Status")
    assert (text.index("<!-- plan-experiment:end finetune-status -->") < text.index(HAND_BETWEEN)
            < text.index("<!-- plan-experiment:begin eval-status -->"))
    assert text.index("## Notes") < text.index(HAND_NOTES)


def assert_well_formed(text: str) -> None:
    """Every generated block's markers appear exactly once, in order, and its table parses."""
    from submit_support import table

    for name in ("compute-estimates", "finetune-status", "eval-status"):
        begin, end = f"<!-- plan-experiment:begin {name} -->", f"<!-- plan-experiment:end {name} -->"
        assert text.count(begin) == 1 and text.count(end) == 1, name
        assert text.index(begin) < text.index(end), name
    table(block(text, "finetune-status"))
    table(block(text, "eval-status"))


@dataclass
class Demo:
    """The shipped demo experiment, submitted once and followed until every job ended."""

    exp: Path
    first: subprocess.CompletedProcess[str]
    second: subprocess.CompletedProcess[str]
    stale_summary: str  # the summary right after submit (jobs not final): an out-of-date table
    by_jobs: str  # the summary when the last job ended, before anyone ran status: what the jobs wrote
    report: dict


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    """Plan the example unchanged, add hand lines, submit twice at once, wait for the end.

    Nobody runs ``status`` until every job has ended (sacct says so): the summary at that
    moment is what the jobs' own refreshes wrote.
    """
    require_slurm()
    out = tmp_path_factory.mktemp("demo")
    exp = plan(EXAMPLE / "experiment.yaml", out)
    add_hand_lines(exp / "experiment_summary.md")
    try:
        first = cli("submit", exp)
        second = cli("submit", exp)  # right after: every unit is submitted, pending or running
        stale = (exp / "experiment_summary.md").read_text(encoding="utf-8")
        ids = [t["job_id"] for s in journal(exp)["submissions"] for t in s["tasks"]]
        wait_for_records(slurm_job_ids(exp), ids, timeout_s=900, poll_s=2)
        by_jobs = (exp / "experiment_summary.md").read_text(encoding="utf-8")
        report = wait_final(exp)
        yield Demo(exp, first, second, stale, by_jobs, report)
    finally:
        scancel(*slurm_job_ids(exp))


def test_demo_submits_trains_evaluates_and_reports_completed(demo: Demo) -> None:
    exp = demo.exp
    runs, evals_planned = plan_units(exp)  # the shipped example decides how many epochs are evaluated
    base_evals = [e for e in evals_planned if e.split("/")[0] not in runs]
    assert len(runs) == 2 and base_evals and evals_planned[-len(base_evals):] == base_evals
    out = ok(demo.first)
    sub = journal(exp)["submissions"]
    # One array for the two trainings, then one evaluation submission per run (each waits
    # for its own run only); the base model's evaluations wait for nothing.
    assert [(s["kind"], s["executor"]) for s in sub] == [("train", "slurm")] + [("eval", "slurm")] * 3
    assert journal_units(sub) == runs + evals_planned
    train_id = sub[0]["job_id"]
    assert [t["job_id"] for t in sub[0]["tasks"]] == [f"{train_id}_0", f"{train_id}_1"]
    assert [s["dependency"] for s in sub[1:]] == [f"afterok:{train_id}_0", f"afterok:{train_id}_1", None]
    for run, eval_sub in zip(runs, sub[1:3]):
        assert {t["unit"].split("/")[0] for t in eval_sub["tasks"]} == {run}
    assert f"submitted train job {train_id} on slurm (2 task(s)): {', '.join(runs)}" in out
    assert f"after afterok:{train_id}_0" in out and "follow with: plan-experiment status" in out

    everything = runs + evals_planned
    report = demo.report
    assert report["all_final"] and not report["any_failed"] and not report["stale"]
    assert unit_states(report) == {u: "COMPLETED" for u in everything}
    assert report["counts"] == {"COMPLETED": len(everything)}
    assert {u["source"] for u in report["units"]} == {"sacct"}

    # The summary's tables say the same, with the job ids of the journal.
    ids = {t["unit"]: t["job_id"] for s in sub for t in s["tasks"]}
    finetune, evals = status_tables(exp)
    assert [(r["Run Name"], r["Status"], r["Job ID"]) for r in finetune] == [
        (run, "completed", ids[run]) for run in runs
    ]
    assert all(r["Completed"] != "-" for r in finetune)
    assert [(r["Run Name"], r["Task"], r["Status"], r["Job ID"]) for r in evals] == [
        (e.split("/")[0], "capitalization", "completed", ids[e]) for e in evals_planned
    ]
    assert all("exact_match=" in r["Notes"] and "(n=50)" in r["Notes"] for r in evals)
    assert all(r["Notes"].startswith("Base model") for r in evals[-len(base_evals):])

    folders = eval_dirs(exp)
    assert len(folders) == len(evals_planned)
    for folder in folders:
        assert (folder / "results.json").is_file(), f"no results.json in {folder}"
        assert (folder / "job-state.json").is_file()

    # The terminal view: exit 0 and every unit completed.
    n = len(everything)
    assert f"{n} units: {n} completed" in ok(cli("status", exp))


def test_jobs_fill_the_summary_without_anyone_running_status(demo: Demo) -> None:
    exp = demo.exp
    runs, evals_planned = plan_units(exp)
    ids = {t["unit"]: t["job_id"] for s in journal(exp)["submissions"] for t in s["tasks"]}
    text = demo.by_jobs
    assert_hand_lines(text)
    assert_well_formed(text)
    finetune, evals = table(block(text, "finetune-status")), table(block(text, "eval-status"))
    assert [(r["Run Name"], r["Status"], r["Job ID"]) for r in finetune] == [(run, "completed", ids[run]) for run in runs]
    for r in finetune:  # start, end and elapsed time of every training
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", r["Started"]) and r["Completed"] >= r["Started"], r
        assert re.search(r"(^|; )elapsed \d+:\d\d:\d\d", r["Notes"]), r
    assert [(f"{r['Run Name']}/{r['Task']}", r["Status"], r["Job ID"]) for r in evals] == [
        (f"{e.split('/')[0]}/capitalization", "completed", ids[e]) for e in evals_planned]
    for r in evals:  # start, end, elapsed time and accuracy of every evaluation
        assert re.search(r"started \d{4}-\d\d-\d\d \d\d:\d\d:\d\d; elapsed \d+:\d\d:\d\d; exact_match=[01]\.\d{3} \(n=50\)",
                         r["Notes"]), r
        assert r["Completed"] != "-"
    line = block(text, "status-refresh").strip()
    assert re.fullmatch(r"Tables refreshed \d{4}-\d\d-\d\d \d\d:\d\d:\d\d by job \d+(_\d+)?\.", line), line
    # Each job's log says what its refresh did.
    for unit, job in ids.items():
        folder = exp / unit if "/" not in unit else exp / unit.split("/")[0] / "eval" / unit.split("/")[1]
        assert f"plan-experiment: status tables refreshed by job {job} (" in (folder / f"slurm-{job}.out").read_text(), unit


def test_second_submit_submits_nothing(demo: Demo) -> None:
    exp = demo.exp
    runs, evals_planned = plan_units(exp)
    second = ok(demo.second)
    assert second.strip().splitlines()[-1] == "nothing to submit"
    assert "submitted" not in second.replace("skipped", "")
    skipped = [ln for ln in second.splitlines() if ln.startswith("skipped ")]
    assert [ln.split(":")[0] for ln in skipped] == [f"skipped {u}" for u in runs + evals_planned]
    assert all(" as job " in ln and "already " in ln for ln in skipped), skipped
    # And once everything has ended: still nothing, each unit "completed as job N".
    third = ok(cli("submit", exp))
    assert third.strip().splitlines()[-1] == "nothing to submit"
    assert sum("completed as job" in ln for ln in third.splitlines()) == len(runs + evals_planned)
    assert len(journal(exp)["submissions"]) == 4


def test_hand_lines_survive_refreshes_and_concurrent_status(demo: Demo) -> None:
    exp = demo.exp
    summary = exp / "experiment_summary.md"
    # They survived the refreshes of the whole run already (added before submit).
    assert_hand_lines(summary.read_text(encoding="utf-8"))
    # Three refreshes that each must rewrite the tables: start each from the
    # out-of-date summary of right after submit.
    current = summary.read_text(encoding="utf-8")
    assert block(demo.stale_summary, "eval-status") != block(current, "eval-status")
    for _ in range(3):
        summary.write_text(demo.stale_summary, encoding="utf-8")
        ok(cli("status", exp))
        text = summary.read_text(encoding="utf-8")
        assert_hand_lines(text)
        assert_well_formed(text)
        assert all(r["Status"] == "completed" for t in status_tables(exp) for r in t)

    # Ten refreshes at once: the experiment lock serialises them; the file stays whole.
    summary.write_text(demo.stale_summary, encoding="utf-8")
    procs = [subprocess.Popen([str(PLAN_EXPERIMENT), "status", str(exp)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(10)]
    results = [p.communicate(timeout=180) for p in procs]
    assert [p.returncode for p in procs] == [0] * 10, [err for _, err in results]
    text = summary.read_text(encoding="utf-8")
    assert_well_formed(text)
    assert_hand_lines(text)
    finetune, evals = status_tables(exp)
    runs, evals_planned = plan_units(exp)
    assert len(finetune) == len(runs) and len(evals) == len(evals_planned)
    assert all(r["Status"] == "completed" for r in finetune + evals)
    assert not list(exp.glob(".experiment_summary.md.*")), "a temporary file was left behind"


def test_failed_run_holds_its_evaluations_and_retry_failed_resubmits_only_it(tmp_path: Path) -> None:
    spec = copy_example(tmp_path / "src", {"name": "cap_fail_retry", "base_model_controls": False})
    exp = plan(spec, tmp_path / "out")
    bad, good = "tiny-llama-cap_rank16", "tiny-llama-cap_rank4"
    config = exp / bad / "finetune.yaml"
    original = config.read_text(encoding="utf-8")
    data = yaml.safe_load(original)
    data["dataset"]["data_files"] = str(tmp_path / "missing" / "words.json")
    config.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    try:
        ok(cli("submit", exp))
        report = wait_final(exp)
        states = unit_states(report)
        assert states[bad] == "FAILED"
        # kill_invalid_depend cancels it at once; it must never have run.
        assert states[f"{bad}/capitalization_epoch0"] == "CANCELLED"
        assert states[good] == "COMPLETED" and states[f"{good}/capitalization_epoch0"] == "COMPLETED"
        assert not (exp / bad / "eval" / "capitalization_epoch0" / "results.json").exists()
        assert (exp / good / "eval" / "capitalization_epoch0" / "results.json").is_file()

        failed = cli("status", exp)
        assert failed.returncode == 6
        assert "error: 2 job(s) failed:" in failed.stderr and "--retry-failed" in failed.stderr
        finetune, evals = status_tables(exp)
        assert {r["Run Name"]: r["Status"] for r in finetune} == {good: "completed", bad: "failed"}
        assert "exit code" in next(r["Notes"] for r in finetune if r["Run Name"] == bad)
        bad_eval = next(r for r in evals if r["Run Name"] == bad)
        assert bad_eval["Status"] == "cancelled" and bad_eval["Completed"] != "-"
        # sacct's reason for a kill_invalid_depend cancel is "Dependency"; the note that
        # should explain it is pinned by an xfail unit test in test_local_executor.py.
        assert next(u for u in report["units"] if u["unit"] == f"{bad}/capitalization_epoch0")["start"] is None

        # A plain submit does not retry, and says how to.
        plain = ok(cli("submit", exp))
        assert plain.strip().splitlines()[-1] == "nothing to submit"
        assert f"skipped {bad}: failed as job" in plain and "use --retry-failed to resubmit" in plain

        # Fix the cause, then retry: exactly the failed run and its evaluation go out.
        config.write_text(original, encoding="utf-8")
        before = len(journal(exp)["submissions"])
        retry = ok(cli("submit", exp, "--retry-failed"))
        new = journal(exp)["submissions"][before:]
        assert sorted(journal_units(new)) == [bad, f"{bad}/capitalization_epoch0"]
        assert all(s["retry"] for s in new)
        train = next(s for s in new if s["kind"] == "train")
        assert next(s for s in new if s["kind"] == "eval")["dependency"] == f"afterok:{train['job_id']}"
        assert f"skipped {good}: completed as job" in retry
        # The failed attempt's own record is kept aside, not mistaken for the new one.
        assert (exp / bad / "job-state.previous.json").is_file()

        report = wait_final(exp)
        assert unit_states(report) == {u: "COMPLETED" for u in (good, bad, f"{good}/capitalization_epoch0",
                                                                 f"{bad}/capitalization_epoch0")}
        assert all((d / "results.json").is_file() for d in eval_dirs(exp))
        assert "4 units: 4 completed" in ok(cli("status", exp))
    finally:
        scancel(*slurm_job_ids(exp))


HOSTILE_NAME = "cap \"dq\" 'sq' $(touch PWNED) `touch PWNED3` x"
HOSTILE_MODEL = "tiny \"m\" $(touch PWNED2) 'x'"
PWNED = ("PWNED", "PWNED2", "PWNED3")


def _pwned_files(*roots: Path) -> list[Path]:
    found = [root / name for root in roots for name in PWNED if (root / name).exists()]
    return found


def test_hostile_names_submit_and_run_without_shell_injection(tmp_path: Path) -> None:
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    home = Path.home()
    before = _pwned_files(cwd, tmp_path, home, Path("/tmp"), Path("/"))
    assert not before, f"leftover files from an earlier run: {before}"
    spec = copy_example(tmp_path / "src", {"name": HOSTILE_NAME, "factors": {"lora_rank": [4]}},
                        model_name=HOSTILE_MODEL)
    exp = plan(spec, tmp_path / "out", cwd=cwd)
    assert exp.name == HOSTILE_NAME
    run = f"{HOSTILE_MODEL}_rank4"
    try:
        out = ok(cli("submit", exp, cwd=cwd))
        assert "submitted train job" in out and run in out
        report = wait_final(exp)
        assert unit_states(report) == {
            run: "COMPLETED", f"{run}/capitalization_epoch0": "COMPLETED", f"{HOSTILE_MODEL}_base/capitalization": "COMPLETED",
        }
        finetune, evals = status_tables(exp)
        assert [(r["Run Name"], r["Status"]) for r in finetune] == [(run, "completed")]
        assert [r["Status"] for r in evals] == ["completed", "completed"]
        assert all((d / "results.json").is_file() for d in eval_dirs(exp))
    finally:
        scancel(*slurm_job_ids(exp))
    found = _pwned_files(cwd, tmp_path, home, Path("/tmp"), Path("/"), Path.cwd())
    found += [p for p in tmp_path.rglob("PWNED*")]
    assert not found, f"a name was run by a shell: {found}"


def test_newline_in_experiment_name_is_a_one_line_error(tmp_path: Path) -> None:
    spec = copy_example(tmp_path / "src", {"name": "cap\nsecond line"})
    proc = cli("new", "--spec", spec, "--yes", "--out", tmp_path / "out")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert lines == [
        f"error: {spec}: 1 problem(s) in the experiment spec",
        (f"  - {spec}: name: the name becomes a folder name: remove newlines and control characters "
         "(got 'cap\\nsecond line')"),
    ]
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_only_narrows_a_submit_and_unknown_names_are_refused(tmp_path: Path) -> None:
    spec = copy_example(tmp_path / "src", {"name": "cap_only"})
    exp = plan(spec, tmp_path / "out")
    unknown = cli("submit", exp, "--only", "tiny-llama-cap_rank5")
    assert unknown.returncode == 2 and unknown.stdout == ""
    assert unknown.stderr.strip().splitlines() == [
        "error: 1 unknown run name(s); see the run names in experiment_summary.md",
        "  - --only 'tiny-llama-cap_rank5': no such run; did you mean 'tiny-llama-cap_rank4'?",
    ]
    assert not (exp / "journal.json").exists()
    try:
        out = ok(cli("submit", exp, "--only", "tiny-llama-cap_rank16"))
        sub = journal(exp)["submissions"]
        assert journal_units(sub) == ["tiny-llama-cap_rank16", "tiny-llama-cap_rank16/capitalization_epoch0"]
        assert "tiny-llama-cap_rank4" not in out and "tiny-llama-cap_base" not in out
        # The units left out are still not submitted.
        states = unit_states(status_json(exp))
        assert states["tiny-llama-cap_rank4"] == "NOT_SUBMITTED"
        assert states["tiny-llama-cap_base/capitalization"] == "NOT_SUBMITTED"
        assert states["tiny-llama-cap_rank16"] in {"SUBMITTED", "PENDING", "RUNNING", "COMPLETED"}
    finally:
        scancel(*slurm_job_ids(exp))
