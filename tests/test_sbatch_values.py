"""No value from claude.local.md, the spec or a path ever becomes a shell command in a batch script.

``#SBATCH`` lines are comments to bash: a newline inside a value ends the comment and runs
the rest. Every value that reaches such a line is checked against what Slurm accepts (one
table), at load time (exit 2, nothing written) and again where the script is made.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml
from submit_support import cli, copy_example, ok, plan

from planner.jobs.scheduler import JobRequest
from planner.jobs.slurm import check_request
from planner.spec.errors import ConfigError
from planner.spec.slurm_values import SBATCH_PATTERNS, sbatch_value_problem

KEYS = ["account", "partition", "qos", "constraint", "mem"]
# Each would run `touch owned` if it reached an #SBATCH line or a shell unquoted.
HOSTILE = ["myacct\ntouch owned\n#", "x\rtouch owned", "x\n", "$(touch owned)", "`touch owned`", "a;touch owned", "a b",
           "'a'", "", "x\x00y"]
GOOD = {"account": "my-group_1", "partition": "gpu,cpu", "qos": "normal", "constraint": "a100|h100&nvlink", "mem": "32G"}


def _local_with(spec: Path, key: str, value: str) -> None:
    local = spec.parent / "claude.local.md"
    text = local.read_text()
    head, block, tail = re.split(r"(```yaml\n.*?```)", text, flags=re.DOTALL)
    data = yaml.safe_load(block.removeprefix("```yaml\n").removesuffix("```"))
    data["slurm"][key] = value
    local.write_text(head + "```yaml\n" + yaml.safe_dump(data) + "```" + tail)


@pytest.mark.parametrize("key", KEYS)
@pytest.mark.parametrize("value", HOSTILE)
def test_table_refuses_every_hostile_value(key: str, value: str) -> None:
    assert sbatch_value_problem(key, value) is not None


@pytest.mark.parametrize(("key", "value"), sorted(GOOD.items()))
def test_table_accepts_what_slurm_accepts(key: str, value: str) -> None:
    assert sbatch_value_problem(key, value) is None


@pytest.mark.parametrize("value", ["99:99:99", "1:60", "soon", "", "1-2:3:4:5", "00:01:00\n"])
def test_bad_times_are_refused(value: str) -> None:
    assert sbatch_value_problem("time", value) is not None


@pytest.mark.parametrize("value", ["5", "30:00", "01:00:00", "2-00", "1-12:30", "1-00:00:00"])
def test_slurm_time_formats_are_accepted(value: str) -> None:
    assert sbatch_value_problem("time", value) is None


@pytest.mark.parametrize("key", KEYS)
@pytest.mark.parametrize("where", ["claude.local.md", "spec"])
def test_new_refuses_a_newline_in_any_slurm_value(tmp_path: Path, key: str, where: str) -> None:
    value = "myacct\ntouch owned\n#"
    if where == "spec":
        spec = copy_example(tmp_path / "src", {"resources": {"gpus": 0, "time": "auto", key: value}})
    else:
        spec = copy_example(tmp_path / "src")
        _local_with(spec, key, value)
    proc = cli("new", "--spec", spec, "--yes", "--out", tmp_path / "out", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and f"{key}: Slurm expects" in proc.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    assert not list(tmp_path.rglob("owned"))


@pytest.mark.parametrize("key", KEYS)
def test_submit_refuses_a_value_edited_into_experiment_yaml(tmp_path: Path, key: str) -> None:
    exp = plan(copy_example(tmp_path / "src"), tmp_path / "out")
    data = yaml.safe_load((exp / "experiment.yaml").read_text())
    data["provenance"]["local_settings"]["slurm"][key] = "x\ntouch owned\n#"
    (exp / "experiment.yaml").write_text(yaml.safe_dump(data))
    proc = cli("submit", exp, "--dry-run", "--executor", "local", cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert f"slurm.{key}" in proc.stderr and "experiment.yaml" in proc.stderr
    data["provenance"]["local_settings"]["slurm"][key] = None
    data["resources"][key] = "x\ntouch owned\n#"
    (exp / "experiment.yaml").write_text(yaml.safe_dump(data))
    proc = cli("submit", exp, "--dry-run", "--executor", "local", cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and f"resources.{key}" in proc.stderr, proc.stderr
    assert not list(tmp_path.rglob("owned"))


def test_the_last_guard_refuses_what_slipped_past_loading(tmp_path: Path) -> None:
    request = JobRequest(name="n", time="01:00:00", gpus=0, nodes=1, cpus_per_task=1, mem="2G\ntouch owned",
                         account=None, partition=None, constraint=None, qos=None, array_parallelism=1)
    with pytest.raises(ConfigError, match="mem="):
        check_request(request, tmp_path)
    request.mem = "2G"
    with pytest.raises(ConfigError, match="experiment folder"):
        check_request(request, tmp_path / "a\ntouch owned")
    check_request(request, tmp_path)


def test_batch_script_with_every_accepted_value_has_only_sbatch_comments(tmp_path: Path) -> None:
    """The dry-run script, run by bash up to its command, runs nothing from the values."""
    spec = copy_example(tmp_path / "src", {"resources": {"gpus": 0, "time": "00:20:00", **GOOD}})
    exp = plan(spec, tmp_path / "out")
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "scontrol").write_text('#!/bin/sh\n[ "$1" = ping ] && echo "Slurmctld(primary) at fake is UP" && exit 0\nexit 1\n')
    (fake / "scontrol").chmod(0o755)
    import os

    env = {**os.environ, "PATH": f"{fake}{os.pathsep}{os.environ['PATH']}"}
    dry = ok(cli("submit", exp, "--dry-run", "--executor", "slurm", env=env))
    script = dry.split("-" * 72)[0]
    params = script.split("# Parameters\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert params and all(line.startswith("#SBATCH --") for line in params)
    for key, value in GOOD.items():
        assert any(line.startswith(f"#SBATCH --{key}=") and value in line for line in params), key
    header = script.split("# command", 1)[0]
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir()
    subprocess.run(["bash", "-c", header], cwd=sandbox, check=True)
    assert not list(sandbox.iterdir())


def test_every_pattern_refuses_newlines() -> None:
    for key in SBATCH_PATTERNS:
        assert sbatch_value_problem(key, "a\nb") is not None, key


@pytest.mark.parametrize("value", ["100:00:00", "1000:00:00", "48:00:00", "90", "120:30", "0-23", "7-00:00:00",
                                   "1:60", "99:99:99", "1-24", "1-2:3:4:5", "00:01:00\n", "01:00:00\n", " 1:00", "0",
                                   "00:00:00", "1-0:00", "soon", ""])
def test_one_rule_decides_a_slurm_time_wherever_it_is_read(value: str) -> None:
    # claude.local.md and the spec's resources (slurm_time_problem), the #SBATCH table (sbatch_value_problem)
    # and estimates.json's times (is_slurm_time) agree; whole hours past 99 are a time Slurm takes, a zero
    # limit (Slurm's "no limit") and a trailing newline are not.
    from planner.spec.slurm_values import is_slurm_time, slurm_time_problem

    good = value in ("100:00:00", "1000:00:00", "48:00:00", "90", "120:30", "0-23", "7-00:00:00", "1-0:00")
    assert (slurm_time_problem(value) is None) is good
    assert (sbatch_value_problem("time", value) is None) is good
    assert is_slurm_time(value) is good
