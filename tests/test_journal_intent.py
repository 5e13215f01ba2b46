"""No job id is lost and nothing is submitted twice when journal.json cannot be written.

``submit`` writes each submission before sbatch (unconfirmed) and its ids right after. A
write that fails after sbatch (a full disk) leaves the unconfirmed entry; the next
``submit`` or ``status`` finds the jobs by their unique job name and records them. A fake
scheduler covers every crash point; the real cluster covers the full-disk case end to end.
"""

from __future__ import annotations

import errno
import json
import subprocess
from datetime import datetime
from pathlib import Path

import pytest
from slurm_support import require_slurm, scancel
from submit_support import cli, copy_example, journal, ok, plan

from planner.folder import experiment as experiment_module
from planner.jobs import slurm_query
from planner.jobs.scheduler import JobRequest, QueryResult
from planner.jobs.slurm import SlurmScheduler
from planner.folder.experiment import load_experiment
from planner.jobs.submitting import submit
from planner.spec.errors import StateWriteError


class FakeSlurm:
    """A scheduler that hands out array ids and remembers each job's name."""

    kind = "slurm"

    def __init__(self) -> None:
        self.by_name: dict[str, str] = {}
        self.next_id = 100

    def max_array_size(self) -> int:
        return 1001

    def max_time_seconds(self, partition: str | None) -> int | None:
        return None

    def submit(self, scripts: list[Path], request: JobRequest, wait_for: list[Path | None]) -> list[str]:
        self.next_id += 1
        self.by_name[request.name] = str(self.next_id)
        return [f"{self.next_id}_{i}" for i in range(len(scripts))]

    def preview(self, scripts: list[Path], request: JobRequest) -> str:
        return ""

    def query(self, jobs: object, timeout_s: float) -> QueryResult:
        return QueryResult()  # nothing known yet: every submitted job counts as submitted

    def find(self, name: str) -> list[str]:
        return [self.by_name[name]] if name in self.by_name else []


def _fail_write(monkeypatch: pytest.MonkeyPatch, on_call: int) -> list[int]:
    """Make the on_call-th durable write of journal.json fail as a full disk does."""
    real = experiment_module.atomic_write_text
    calls = [0]

    def write(path: Path, text: str, durable: bool = True) -> None:
        if path.name == "journal.json":
            calls[0] += 1
            if calls[0] == on_call:
                raise OSError(errno.ENOSPC, "No space left on device")
        real(path, text, durable)

    monkeypatch.setattr(experiment_module, "atomic_write_text", write)
    return calls


@pytest.fixture()
def exp_path(tmp_path: Path) -> Path:
    return plan(copy_example(tmp_path / "src", {"base_model_controls": False}), tmp_path / "out")


def _journal(exp: Path) -> dict:
    return json.loads((exp / "journal.json").read_text())


def test_disk_full_after_sbatch_loses_no_id_and_submits_nothing_twice(exp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeSlurm()
    monkeypatch.setattr(slurm_query, "job_ids_by_name", fake.find)
    _fail_write(monkeypatch, on_call=2)  # 1: the intent before sbatch; 2: the ids right after
    with pytest.raises(StateWriteError, match="cannot record job 101") as err:
        submit(load_experiment(exp_path), fake, None, False, datetime.now())
    assert "nothing is submitted twice" in str(err.value)
    on_disk = _journal(exp_path)["submissions"]
    assert len(on_disk) == 1 and on_disk[0]["confirmed"] is False and on_disk[0]["tag"]
    monkeypatch.undo()
    monkeypatch.setattr(slurm_query, "job_ids_by_name", fake.find)
    result = submit(load_experiment(exp_path), fake, None, False, datetime.now())
    subs = _journal(exp_path)["submissions"]
    train = [s for s in subs if s["kind"] == "train"]
    assert len(train) == 1 and train[0]["job_id"] == "101" and train[0]["confirmed"] is True
    assert [t["job_id"] for t in train[0]["tasks"]] == ["101_0", "101_1"]
    assert sum("-train-" in n for n in fake.by_name) == 1, "the training went out twice"
    assert not any("never reached" in n for n in result.notes)
    evals = [s for s in subs if s["kind"] == "eval"]
    assert evals and all(s["dependency"].startswith("afterok:101_") for s in evals)


def test_crash_before_sbatch_leaves_an_intent_that_is_dropped_and_resubmitted(exp_path: Path,
                                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeSlurm()
    monkeypatch.setattr(slurm_query, "job_ids_by_name", fake.find)

    class Crash(BaseException):  # like kill -9: nothing catches it
        pass

    def crash(*args: object) -> list[str]:
        raise Crash  # kill -9 between the intent and sbatch

    monkeypatch.setattr(fake, "submit", crash)
    with pytest.raises(Crash):
        submit(load_experiment(exp_path), fake, None, False, datetime.now())
    assert _journal(exp_path)["submissions"][0]["confirmed"] is False
    monkeypatch.undo()
    monkeypatch.setattr(slurm_query, "job_ids_by_name", fake.find)
    result = submit(load_experiment(exp_path), fake, None, False, datetime.now())
    assert any("never reached Slurm" in n for n in result.notes)
    train = [s for s in _journal(exp_path)["submissions"] if s["kind"] == "train"]
    assert len(train) == 1 and train[0]["confirmed"] and train[0]["job_id"] == "101"


def test_unanswered_slurm_holds_unconfirmed_units_back(exp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeSlurm()
    _fail_write(monkeypatch, on_call=2)
    with pytest.raises(StateWriteError):
        submit(load_experiment(exp_path), fake, None, False, datetime.now())
    monkeypatch.undo()

    def down(name: str) -> list[str]:
        raise slurm_query.SchedulerQueryError("squeue did not answer within 30s", ["squeue"])

    monkeypatch.setattr(slurm_query, "job_ids_by_name", down)
    result = submit(load_experiment(exp_path), fake, None, False, datetime.now())
    assert sum("-train-" in n for n in fake.by_name) == 1, "a training that may be running was sent again"
    assert any("held back" in n for n in result.notes)
    assert all("train" != s.kind for s in result.submissions)


def test_full_disk_before_sbatch_submits_nothing(exp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeSlurm()
    _fail_write(monkeypatch, on_call=1)
    with pytest.raises(StateWriteError, match="nothing more was submitted"):
        submit(load_experiment(exp_path), fake, None, False, datetime.now())
    assert fake.next_id == 100 and not (exp_path / "journal.json").exists()


@pytest.mark.slurm
def test_real_sbatch_then_full_disk_then_submit_and_status_recover(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    require_slurm()
    name = f"intent_{tmp_path.name[-12:]}".replace("-", "_")
    exp = plan(copy_example(tmp_path / "src", {"name": name, "base_model_controls": False, "factors": {"lora_rank": [4]}}),
               tmp_path / "out")
    _fail_write(monkeypatch, on_call=2)
    loaded = load_experiment(exp)
    try:
        with pytest.raises(StateWriteError) as err:
            submit(loaded, SlurmScheduler(loaded.internal / "submitit"), None, False, datetime.now())
        monkeypatch.undo()
        array = str(err.value).split("cannot record job ", 1)[1].split(" ", 1)[0]
        assert journal(exp)["submissions"][0]["confirmed"] is False
        # status finds the job by its name at once (in memory with --no-write)
        report = json.loads(ok(cli("status", exp, "--json", "--no-write")))
        assert [u["job_id"] for u in report["units"] if u["kind"] == "train"] == [f"{array}_0"]
        out = ok(cli("submit", exp, "--executor", "slurm"))
        subs = journal(exp)["submissions"]
        train = [s for s in subs if s["kind"] == "train"]
        assert len(train) == 1 and train[0]["job_id"] == array and train[0]["confirmed"], out
        tag = train[0]["tag"]
        named = subprocess.run(["sacct", "-X", "-n", "-P", "--format=JobID,JobName", "-S", "now-1hours"],
                               capture_output=True, text=True, check=True).stdout
        live = subprocess.run(["squeue", "-h", "-o", "%F|%j"], capture_output=True, text=True, check=True).stdout
        arrays = {line.split("|")[0].split("_")[0] for line in (named + live).splitlines() if line.endswith(tag)}
        assert arrays == {array}, "the training was submitted twice"
        assert all(s["dependency"] == f"afterok:{array}_0" for s in subs if s["kind"] == "eval")
    finally:
        scancel(*[s["job_id"] for s in journal(exp)["submissions"] if s["job_id"]])
