"""status keeps working when the scheduler's answers misbehave.

Stub ``sacct``/``squeue`` scripts on PATH play what a site can produce: bytes that are not
UTF-8, a pending range of a hundred million tasks, a wrapper script that hangs with a child.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import psutil
import pytest
from submit_support import cli, copy_example, plan

from planner.jobs import slurm_query
from planner.jobs.sacct import parse_sacct

FIRST_RUN = "tiny-llama-cap_rank4"
SECOND_RUN = "tiny-llama-cap_rank16"
HUGE_RANGE = "999_[0-99999999]|999|PENDING|0:0|Priority|2025-01-01T00:00:00|Unknown|Unknown|0|None assigned|cap-train\n"


def _stub(folder: Path, name: str, body: str) -> None:
    folder.mkdir(exist_ok=True)
    (folder / name).write_bytes(b"#!/bin/sh\n" + body.encode("utf-8", errors="surrogateescape"))
    (folder / name).chmod(0o755)


def _env(stubs: Path) -> dict[str, str]:
    return {**os.environ, "PATH": f"{stubs}{os.pathsep}{os.environ['PATH']}"}


def _submitted(tmp_path: Path) -> Path:
    """A planned experiment whose journal says its two runs are tasks 0 and 1 of Slurm array 999."""
    exp = plan(copy_example(tmp_path / "src", {"base_model_controls": False}), tmp_path / "out")
    sub = {"number": 1, "time": "2025-01-01T00:00:00", "executor": "slurm", "kind": "train", "job_id": "999",
           "dependency": None, "parameters": {"name": "cap-train"},
           "tasks": [{"unit": FIRST_RUN, "job_id": "999_0", "script": "a", "index": 0},
                     {"unit": SECOND_RUN, "job_id": "999_1", "script": "b", "index": 1}]}
    (exp / "journal.json").write_text(json.dumps({"experiment": exp.name, "submissions": [sub]}))
    return exp


def test_non_utf8_bytes_from_sacct_do_not_stop_status(tmp_path: Path) -> None:
    exp = _submitted(tmp_path)
    stubs = tmp_path / "stubs"
    line = "999_0|999_0|RUNNING|0:0|Non\udcffe|2025-01-01T00:00:00|2025-01-01T00:00:01|Unknown|5|vm|n\udcfeame"
    _stub(stubs, "sacct", f"printf '%s\\n' '{line}'\n")
    _stub(stubs, "squeue", "printf 'x\\377\\376|\\n'\n")
    proc = cli("status", exp, "--json", env=_env(stubs), timeout_s=60)
    assert proc.returncode == 0, proc.stderr
    units = {u["unit"]: u for u in json.loads(proc.stdout)["units"]}
    assert units[FIRST_RUN]["state"] == "RUNNING"


def test_a_pending_range_of_a_hundred_million_tasks_does_not_hang_status(tmp_path: Path) -> None:
    exp = _submitted(tmp_path)
    stubs = tmp_path / "stubs"
    _stub(stubs, "sacct", f"printf '%s' '{HUGE_RANGE}'\n")
    _stub(stubs, "squeue", "exit 0\n")
    started = time.monotonic()
    proc = cli("status", exp, "--json", env=_env(stubs), timeout_s=60)
    assert proc.returncode == 0, proc.stderr
    units = {u["unit"]: u["state"] for u in json.loads(proc.stdout)["units"] if u["kind"] == "train"}
    assert units == {FIRST_RUN: "PENDING", SECOND_RUN: "PENDING"}
    print(f"status over a 10^8-task pending range: {time.monotonic() - started:.1f} s")


def test_parse_expands_only_the_tasks_asked_for() -> None:
    started = time.monotonic()
    assert parse_sacct(HUGE_RANGE) == []  # more tasks than Slurm allows: garbled, skipped
    got = parse_sacct(HUGE_RANGE, wanted={"999_0", "999_7", "998_1"})
    assert [r.job_id for r in got] == ["999_0", "999_7"] and all(r.state == "PENDING" for r in got)
    assert time.monotonic() - started < 5, "a range was expanded task by task"


def test_a_hung_sacct_wrapper_is_killed_with_its_child(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stubs = tmp_path / "stubs"
    _stub(stubs, "sacct", f"sleep 300 &\necho $! > {tmp_path}/child\nwait\n")
    monkeypatch.setenv("PATH", f"{stubs}{os.pathsep}{os.environ['PATH']}")
    started = time.monotonic()
    with pytest.raises(slurm_query.SchedulerQueryError, match="did not answer within 1s"):
        slurm_query.sacct(["999"], timeout_s=1)
    assert time.monotonic() - started < 10
    child = int((tmp_path / "child").read_text())
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            if psutil.Process(child).status() == psutil.STATUS_ZOMBIE:
                break
        except psutil.NoSuchProcess:
            break
        time.sleep(0.1)
    else:
        pytest.fail(f"the wrapper's child {child} still runs")
