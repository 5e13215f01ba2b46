"""Our own files, damaged: each is repaired (a cache is rebuilt) or is a one-line error naming it.

Every case damages one file of a planned experiment folder, then runs ``status``,
``status --no-write`` and ``submit --dry-run`` as a user would. None may end in a traceback;
an error names the damaged file and what to do, with exit code 2; the damaged file is left
as it was (nothing the user may still need is lost).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from submit_support import copy_example, plan

from tests.conftest import run_cli

EXP_NAME = "cap_5L_lora_comparison_demo"
FIRST_RUN = "tiny-llama-cap_rank4"


def _journal(job_id: object, executor: str = "slurm", **changes: object) -> str:
    sub = {"number": 1, "time": "2025-01-01T00:00:00", "executor": executor, "kind": "train", "job_id": job_id,
           "dependency": None, "parameters": {"name": "x"},
           "tasks": [{"unit": FIRST_RUN, "job_id": job_id if executor == "local" else f"{job_id}_0", "script": "train.sh",
                      "index": 0}], **changes}
    return json.dumps({"version": 1, "experiment": EXP_NAME, "submissions": [sub]})


def _write(rel: str, text: str | bytes) -> Callable[[Path], None]:
    def damage(exp: Path) -> None:
        path = exp / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text)
    return damage


def _both(*steps: Callable[[Path], None]) -> Callable[[Path], None]:
    def damage(exp: Path) -> None:
        for step in steps:
            step(exp)
    return damage


def _edit_estimates(key: str, value: object) -> Callable[[Path], None]:
    """One value of the first run's entry in the planned estimates.json replaced."""
    def damage(exp: Path) -> None:
        data = json.loads((exp / ESTIMATES).read_text())
        data["runs"][FIRST_RUN][key] = value
        (exp / ESTIMATES).write_text(json.dumps(data))
    return damage


def _summary_folder(exp: Path) -> None:
    (exp / "experiment_summary.md").unlink()
    (exp / "experiment_summary.md").mkdir()


def _internal_file(exp: Path) -> None:
    shutil.rmtree(exp / ".plan-experiment", ignore_errors=True)
    (exp / ".plan-experiment").write_text("not a folder")


def _lock_folder(exp: Path) -> None:
    (exp / ".plan-experiment" / "lock").mkdir(parents=True)


CACHE = ".plan-experiment/status-cache.json"
JOURNAL = "journal.json"
ESTIMATES = "estimates.json"
JOB_STATE = f"{FIRST_RUN}/job-state.json"
DEAD_LOCAL = "local-999999999"

# name -> (damage, file an error must name or None when it is repaired, which commands may refuse)
CASES: dict[str, tuple[Callable[[Path], None], str | None, set[str]]] = {
    "cache is a list": (_write(CACHE, "[]"), None, set()),
    "cache is null": (_write(CACHE, "null"), None, set()),
    "cache final is a list": (_write(CACHE, '{"final": [], "last_good_refresh": 5}'), None, set()),
    "cache entry of the wrong shape": (_both(_write(JOURNAL, _journal(DEAD_LOCAL, "local")),
                                            _write(CACHE, json.dumps({"final": {DEAD_LOCAL: {"state": 3, "start": "yesterday"}}}))),
                                       None, set()),
    "cache entry with a bad time": (_both(_write(JOURNAL, _journal(DEAD_LOCAL, "local")),
                                         _write(CACHE, json.dumps({"final": {DEAD_LOCAL: {"state": "COMPLETED", "end": "soon"}}}))),
                                    None, set()),
    "cache not json": (_write(CACHE, "{"), None, set()),
    "cache not utf-8": (_write(CACHE, b"\xff\xfe{"), None, set()),
    "journal is a list": (_write(JOURNAL, "[]"), JOURNAL, {"status", "status --no-write", "submit --dry-run"}),
    "journal is null": (_write(JOURNAL, "null"), JOURNAL, {"status", "status --no-write", "submit --dry-run"}),
    "journal not json": (_write(JOURNAL, '{"submissions": ['), JOURNAL, {"status", "status --no-write", "submit --dry-run"}),
    "journal not utf-8": (_write(JOURNAL, b"\xff\xfe"), JOURNAL, {"status", "status --no-write", "submit --dry-run"}),
    "journal submissions is a mapping": (_write(JOURNAL, '{"submissions": {}}'), JOURNAL,
                                         {"status", "status --no-write", "submit --dry-run"}),
    "journal submission is a list": (_write(JOURNAL, '{"submissions": [[]]}'), JOURNAL,
                                     {"status", "status --no-write", "submit --dry-run"}),
    "journal tasks is a string": (_write(JOURNAL, _journal("5", tasks="x")), JOURNAL,
                                  {"status", "status --no-write", "submit --dry-run"}),
    "journal job id is hostile": (_write(JOURNAL, _journal("1;touch owned")), JOURNAL,
                                  {"status", "status --no-write", "submit --dry-run"}),
    "journal job id is a list": (_write(JOURNAL, _journal([1])), JOURNAL, {"status", "status --no-write", "submit --dry-run"}),
    "journal job id is numeric": (_write(JOURNAL, _journal(999999999)), None, set()),
    "journal lacks keys": (_write(JOURNAL, '{"submissions": [{"number": 1}]}'), JOURNAL,
                           {"status", "status --no-write", "submit --dry-run"}),
    "estimates slurm_time soon": (_edit_estimates("slurm_time", "soon"), ESTIMATES,
                                  {"status", "status --no-write", "submit --dry-run"}),
    "estimates time_request with a newline": (_edit_estimates("time_request", "01:00:00\ntouch owned"), ESTIMATES,
                                              {"status", "status --no-write", "submit --dry-run"}),
    "estimates train_seconds text": (_edit_estimates("train_seconds", "fast"), ESTIMATES,
                                     {"status", "status --no-write", "submit --dry-run"}),
    "estimates run is a list": (_write(ESTIMATES, json.dumps({"runs": {FIRST_RUN: [1]}})), ESTIMATES, {"status", "status --no-write", "submit --dry-run"}),
    "estimates is a list": (_write(ESTIMATES, "[]"), ESTIMATES, {"status", "status --no-write", "submit --dry-run"}),
    "estimates not json": (_write(ESTIMATES, "{"), ESTIMATES, {"status", "status --no-write", "submit --dry-run"}),
    "estimates not utf-8": (_write(ESTIMATES, b"\xff{"), ESTIMATES, {"status", "status --no-write", "submit --dry-run"}),
    "journal is a folder": (lambda exp: (exp / JOURNAL).mkdir(), JOURNAL, {"status", "status --no-write", "submit --dry-run"}),
    "job-state of the wrong shape, local job gone": (_both(_write(JOURNAL, _journal(DEAD_LOCAL, "local")),
                                                          _write(JOB_STATE, "[1, 2]")), None, set()),
    "job-state with wrong types, local job gone": (_both(_write(JOURNAL, _journal(DEAD_LOCAL, "local")),
                                                        _write(JOB_STATE, '{"state": 5, "started": 7, "ended": "soon", "exit_code": "x"}')),
                                                  None, set()),
    "job-state of the wrong shape, sacct down": (_both(_write(JOURNAL, _journal("999999999")),
                                                      _write(JOB_STATE, '{"state": ["x"], "job_id": "999999999_0", "started": 12}')),
                                                None, set()),
    "summary deleted": (lambda exp: (exp / "experiment_summary.md").unlink(), None, set()),
    "summary not utf-8": (_write("experiment_summary.md", b"\xff\xfe# summary"), None, set()),
    "summary is a folder": (_summary_folder, None, set()),
    ".plan-experiment is a file": (_internal_file, ".plan-experiment", {"status"}),
    "lock is a folder": (_lock_folder, ".plan-experiment/lock", {"status"}),
}

COMMANDS = {"status": ["status"], "status --no-write": ["status", "--no-write"],
            "submit --dry-run": ["submit", "--dry-run", "--executor", "local"]}


@pytest.fixture(scope="module")
def planned(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("planned")
    return plan(copy_example(root / "src"), root / "out")


@pytest.fixture()
def sacct_down(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """sacct and squeue fail as when slurmdbd and slurmctld are down (the stale path)."""
    stubs = tmp_path / "stubs"
    stubs.mkdir()
    for name in ("sacct", "squeue", "scontrol"):
        (stubs / name).write_text("#!/bin/sh\necho 'slurm_load_jobs error: Unable to contact slurm controller' >&2\nexit 1\n")
        (stubs / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{stubs}{os.pathsep}{os.environ['PATH']}")


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("case", sorted(CASES))
def test_damaged_state_file(planned: Path, tmp_path: Path, case: str, command: str, sacct_down: None) -> None:
    damage, named, refusing = CASES[case]
    exp = tmp_path / EXP_NAME
    shutil.copytree(planned, exp, symlinks=True)
    damage(exp)
    before = {p: p.read_bytes() for p in exp.rglob("*") if p.is_file() and p.name in (JOURNAL, ESTIMATES)}
    result = run_cli(*COMMANDS[command][:1], str(exp), *COMMANDS[command][1:])
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert "Traceback" not in result.output + result.stderr
    if command in refusing:
        assert result.exit_code == 2, (result.exit_code, result.output, result.stderr)
        assert len(errors) == 1 and named is not None and named in errors[0], result.stderr
    else:
        assert result.exit_code in (0, 6), (result.exit_code, result.output, result.stderr)
        # Exit 6: the dead local job is reported as failed, which is the truth, not a refusal.
        assert all(result.exit_code == 6 and "job(s) failed" in e for e in errors), result.stderr
    # The damaged journal or estimates are evidence the user may need: never rewritten by a refusal.
    if result.exit_code == 2:
        assert before == {p: p.read_bytes() for p in before}
    assert not list(tmp_path.rglob("owned"))


def test_summary_problem_is_reported_as_a_warning(planned: Path, tmp_path: Path) -> None:
    exp = tmp_path / EXP_NAME
    shutil.copytree(planned, exp, symlinks=True)
    _write(JOURNAL, _journal(DEAD_LOCAL, "local"))(exp)  # something submitted: status writes its tables
    _write(JOB_STATE, json.dumps({"state": "COMPLETED", "job_id": DEAD_LOCAL, "exit_code": 0}))(exp)
    (exp / "experiment_summary.md").unlink()
    result = run_cli("status", str(exp))
    assert result.exit_code == 0, result.output
    assert "experiment_summary.md: missing" in result.output
    assert not (exp / "experiment_summary.md").exists(), "a deleted summary is not silently recreated half-empty"
