"""The time a fine-tune job asks for: spec, then claude.local.md, then auto capped by MaxTime.

The precedence and the scontrol parser are unit-tested; a fake ``scontrol`` on PATH plays a
partition with a short MaxTime (the shared cluster's own limit must not be changed); the real
cluster checks that an explicit one-minute limit is what Slurm holds for the job.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from slurm_support import require_slurm, scancel
from submit_support import EXAMPLE, cli, copy_example, journal, ok, plan

from planner.jobs import slurm_query
from planner.jobs.time_request import (
    AUTO_MIN_SECONDS,
    auto_floor_seconds,
    parse_partition_max_time,
    signal_offset,
    slurm_limit_minutes,
    train_time_request,
)

SCONTROL_PARTITIONS = """PartitionName=debug
   AllowGroups=ALL AllowAccounts=ALL AllowQos=ALL
   AllocNodes=ALL Default=YES QoS=N/A
   MaxNodes=UNLIMITED MaxTime=00:30:00 MinNodes=0 LLN=NO MaxCPUsPerNode=UNLIMITED
   State=UP TotalCPUs=2 TotalNodes=1

PartitionName=long
   AllocNodes=ALL Default=NO QoS=N/A
   MaxNodes=UNLIMITED MaxTime=2-00:00:00 MinNodes=0
   State=UP

PartitionName=open
   MaxTime=UNLIMITED
"""


@pytest.mark.parametrize(
    ("spec", "local", "auto", "max_s", "want", "source"),
    [
        ("00:01:00", "02:00:00", "03:00:00", None, "00:01:00", "spec"),  # the spec wins over both
        ("00:01:00", "auto", "03:00:00", 60, "00:01:00", "spec"),  # explicit: never capped
        (None, "00:05:00", "03:00:00", None, "00:05:00", "claude.local.md"),  # no spec time: local settings
        ("auto", "00:05:00", "03:00:00", None, "03:00:00", "estimate"),  # auto in the spec beats local settings
        (None, "auto", "03:00:00", None, "03:00:00", "estimate"),
        (None, "auto", "03:00:00", 1800, "00:30:00", "capped"),  # auto capped by MaxTime
        ("auto", "auto", "1-12:00:00", 86400, "1-00:00:00", "capped"),
        ("auto", "auto", "00:15:00", 1800, "00:15:00", "estimate"),  # under the cap: unchanged
        ("auto", "auto", None, None, "01:00:00", "default"),  # no estimate at all
    ],
)
def test_precedence_spec_then_local_settings_then_auto(spec: str | None, local: str, auto: str | None,
                                                       max_s: int | None, want: str, source: str) -> None:
    got = train_time_request(spec, local, auto, max_s)
    assert got.time == want
    assert source in got.source
    assert got.capped == (source == "capped")


@pytest.mark.parametrize(
    ("time", "stop", "want"),
    [
        ("00:01:00", 120, 15),  # the default warning is longer than the limit: a quarter of it
        ("00:01:30", 120, 15),  # Slurm holds whole minutes: one minute, so 15 s
        ("00:05:00", 600, 75),  # stop_before_limit longer than the limit itself
        ("00:06:00", 120, 90),  # 120 s would leave the job less than three quarters
        ("00:08:00", 120, 120),  # exactly a quarter: as asked
        ("02:00:00", 120, 120),  # a normal limit: stop_before_limit as asked
        ("1-00:00:00", 3600, 3600),
        ("00:10:00", 0, 0),  # 0: as asked
        ("00:00:30", 120, 15),  # below a minute Slurm still holds one minute
    ],
)
def test_the_warning_is_always_well_inside_the_limit(time: str, stop: int, want: int) -> None:
    got = signal_offset(time, stop)
    assert got == want
    assert got <= slurm_limit_minutes(time) * 60 // 4


def test_auto_requests_never_go_below_the_floor() -> None:
    assert AUTO_MIN_SECONDS == 15 * 60 and auto_floor_seconds(120) == 15 * 60 and auto_floor_seconds(600) == 40 * 60
    # An estimates.json holding less (written by hand, or by an older version) is raised.
    got = train_time_request("auto", "auto", "00:05:00", None, 120)
    assert got.time == "00:15:00" and "raised to the shortest auto request" in got.source
    # A long stop_before_limit raises the floor, so that its warning is never cut.
    assert train_time_request("auto", "auto", "00:15:00", None, 600).time == "00:40:00"
    # MaxTime still wins: a request above it is refused.
    capped = train_time_request("auto", "auto", "00:05:00", 600, 120)
    assert capped.time == "00:10:00" and capped.capped
    # An explicit time is never changed, however short.
    assert train_time_request("00:01:00", "auto", "00:05:00", None, 120).time == "00:01:00"


def test_partition_max_time_from_scontrol_output() -> None:
    assert parse_partition_max_time(SCONTROL_PARTITIONS, None) == 1800  # the Default=YES partition
    assert parse_partition_max_time(SCONTROL_PARTITIONS, "debug") == 1800
    assert parse_partition_max_time(SCONTROL_PARTITIONS, "long") == 2 * 86400
    assert parse_partition_max_time(SCONTROL_PARTITIONS, "open") is None  # UNLIMITED: no cap
    assert parse_partition_max_time(SCONTROL_PARTITIONS, "nosuch") is None
    assert parse_partition_max_time("", None) is None


def _fake_scontrol(folder: Path) -> dict[str, str]:
    """A PATH whose ``scontrol`` answers ping and prints a 30-minute default partition (no config: dry runs only)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "partitions.txt").write_text(SCONTROL_PARTITIONS)
    script = folder / "scontrol"
    script.write_text(f'#!/bin/sh\nif [ "$1 $2" = "show partition" ]; then cat {folder}/partitions.txt; exit 0; fi\n'
                      'if [ "$1" = ping ]; then echo "Slurmctld(primary) at fake is UP"; exit 0; fi\nexit 1\n')
    script.chmod(0o755)
    env = dict(os.environ)
    env["PATH"] = f"{folder}{os.pathsep}{env['PATH']}"
    return env


def test_auto_is_capped_by_the_partition_max_time_and_logged(tmp_path: Path) -> None:
    # No prior runs: the cost model's estimate of 300 epochs at batch 1 (120,000 steps of ~20 ms) exceeds 30 minutes.
    example = yaml.safe_load((EXAMPLE / "experiment.yaml").read_text())
    spec = copy_example(tmp_path / "src", {"resources": {"gpus": 0, "time": "auto"},
                                           "controls": {**example["controls"], "epochs": 300, "batch_size": 1},
                                           "evaluation": {**example["evaluation"], "epochs": "last"}}, one_epoch=False)
    local = spec.parent / "claude.local.md"
    local.write_text(local.read_text().replace("scratch_dir: ../../tests/fixtures/logs/real", "scratch_dir: data"))
    env = _fake_scontrol(tmp_path / "bin")
    ok(cli("new", "--spec", spec, "--yes", "--out", tmp_path / "out", env=env))
    exp = tmp_path / "out" / "cap_5L_lora_comparison_demo"
    runs = json.loads((exp / "estimates.json").read_text())["runs"]
    assert runs and all(r["slurm_time"] != "00:30:00" for r in runs.values())
    assert {r["time_request"] for r in runs.values()} == {"00:30:00"}
    log = (exp / "design-experiment.log").read_text()
    assert "Time request capped by the partition's MaxTime" in log and "MaxTime 00:30:00" in log
    summary = (exp / "experiment_summary.md").read_text()
    assert "**Slurm time request per run:** 00:30:00" in summary
    assert "likely to hit the time limit" in summary  # the preliminary estimate is longer than 30 minutes
    dry = ok(cli("submit", exp, "--dry-run", "--executor", "slurm", env=env))
    assert "#SBATCH --time=30\n" in dry


def test_explicit_time_reaches_summary_and_dry_run(tmp_path: Path) -> None:
    spec = copy_example(tmp_path / "src", {"resources": {"gpus": 0, "time": "00:01:00"}})
    exp = plan(spec, tmp_path / "out")
    runs = json.loads((exp / "estimates.json").read_text())["runs"]
    assert {r["time_request"] for r in runs.values()} == {"00:01:00"}
    summary = (exp / "experiment_summary.md").read_text()
    assert "**Slurm time request per run:** 00:01:00 (from resources.time in the spec" in summary
    assert "time=00:01:00" in summary
    # The cost model's job (15 s start-up, a few seconds of loop) fits the minute: no warning. The
    # 300-epoch test above shows the warning where the estimate is longer than the request.
    assert "likely to hit the time limit" not in summary
    # The default stop_before_limit (120 s) is longer than the limit: the warning is a quarter of it.
    assert "--signal=USR2@15 (resources.stop_before_limit 120 s is more than a quarter of the 1-minute limit)" in summary
    log = (exp / "design-experiment.log").read_text()
    assert "DECIDE_TIME_REQUEST: Time request and warning before the limit" in log
    assert "Decision: --time=00:01:00, --signal=USR2@15" in log
    env = _fake_scontrol(tmp_path / "bin")  # the preview needs no cluster
    dry = ok(cli("submit", exp, "--dry-run", "--executor", "slurm", env=env))
    assert re.findall(r"#SBATCH --time=(\d+)", dry)[0] == "1"
    train_script = dry.split("#!/bin/bash")[1]
    assert "#SBATCH --signal=USR2@15\n" in train_script and "--requeue" in train_script


def test_evaluation_jobs_are_warned_inside_their_limit_too(tmp_path: Path) -> None:
    spec = copy_example(tmp_path / "src", {"resources": {"gpus": 0, "time": "02:00:00", "eval_time": "00:02:00"}})
    exp = plan(spec, tmp_path / "out")
    dry = ok(cli("submit", exp, "--dry-run", "--executor", "slurm", env=_fake_scontrol(tmp_path / "bin")))
    signals = re.findall(r"#SBATCH --signal=USR2@(\d+)", dry)
    times = re.findall(r"#SBATCH --time=(\d+)", dry)
    assert times[0] == "120" and signals[0] == "120"  # training: stop_before_limit as asked
    assert set(times[1:]) == {"2"} and set(signals[1:]) == {"30"}  # evaluations: a quarter of two minutes


def test_local_settings_time_when_the_spec_gives_none(tmp_path: Path) -> None:
    spec = copy_example(tmp_path / "src", {"resources": {"gpus": 0}})
    exp = plan(spec, tmp_path / "out")  # the example's claude.local.md says time: "00:15:00"
    runs = json.loads((exp / "estimates.json").read_text())["runs"]
    assert {r["time_request"] for r in runs.values()} == {"00:15:00"}
    assert yaml.safe_load((exp / "experiment.yaml").read_text())["resources"]["time"] is None


@pytest.mark.slurm
def test_real_partition_max_time_matches_sinfo() -> None:
    require_slurm()
    limit = subprocess.run(["sinfo", "-h", "-o", "%P %l"], capture_output=True, text=True, check=True).stdout
    default = next(line.split() for line in limit.splitlines() if line.split()[0].endswith("*"))
    got = slurm_query.partition_max_time(None)
    if default[1] == "infinite":
        assert got is None
    else:
        assert got is not None and got > 0
    assert slurm_query.partition_max_time(default[0].rstrip("*")) == got


@pytest.mark.slurm
def test_explicit_one_minute_limit_is_what_slurm_holds(tmp_path: Path) -> None:
    """Issue 16: resources.time "00:01:00" submits with a one-minute limit, dry or real."""
    require_slurm()
    spec = copy_example(tmp_path / "src", {"name": "time_limit_1min", "factors": {"lora_rank": [4]},
                                            "base_model_controls": False, "resources": {"gpus": 0, "time": "00:01:00"}})
    exp = plan(spec, tmp_path / "out")
    dry = ok(cli("submit", exp, "--dry-run", "--executor", "slurm"))
    dry_times = re.findall(r"#SBATCH --time=(\d+)", dry)
    jobs: list[str] = []
    try:
        ok(cli("submit", exp, "--executor", "slurm"))
        train = next(s for s in journal(exp)["submissions"] if s["kind"] == "train")
        jobs = [s["job_id"] for s in journal(exp)["submissions"]]
        shown = subprocess.run(["scontrol", "show", "job", train["job_id"]], capture_output=True, text=True, check=False).stdout
        if not shown:  # ended and forgotten already: accounting keeps the limit too
            time.sleep(1)
            shown = subprocess.run(["sacct", "-n", "-X", "-j", train["job_id"], "-o", "Timelimit"], capture_output=True,
                                   text=True, check=True).stdout
            assert "00:01:00" in shown
        else:
            assert "TimeLimit=00:01:00" in shown
        scripts = list((exp / ".plan-experiment").rglob(f"{train['job_id']}_submission.sh"))
        assert scripts, "submitit keeps the sbatch script it sent"
        real_times = re.findall(r"#SBATCH --time=(\d+)", scripts[0].read_text())
        assert real_times == ["1"] and dry_times[0] == real_times[0]
    finally:
        scancel(*jobs)


def test_estimate_keeps_the_explicit_request(tmp_path: Path) -> None:
    spec = copy_example(tmp_path / "src", {"resources": {"gpus": 0, "time": "00:01:00"}})
    exp = plan(spec, tmp_path / "out")
    out = ok(cli("estimate", exp))
    assert "00:01:00" in out
    runs = json.loads((exp / "estimates.json").read_text())["runs"]
    assert {r["time_request"] for r in runs.values()} == {"00:01:00"}
    assert "likely to hit the time limit" not in (exp / "experiment_summary.md").read_text()
    assert "**Slurm time request per run:** 00:01:00" in (exp / "experiment_summary.md").read_text()
