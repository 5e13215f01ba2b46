"""claude.local.md: the program reads only its yaml block; mistakes name the key and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from planner.spec.local_settings import find_local_settings, load_local_settings
from planner.spec.errors import ConfigError
from planner.spec.localconfig import parse_local_settings
from tests.conftest import run_cli

ROOT = Path(__file__).resolve().parent.parent

GOOD = """# My cluster

Prose with `models_dir: /not/this` inline code that must not be parsed.

```yaml
models_dir: /models
experiments_dir: exps
scratch_dir: /scratch
datasets_dir: /data
slurm: {account: grp, partition: gpu}
environment: {setup: [module load cuda]}
```
"""


def test_reads_only_the_yaml_block() -> None:
    settings = parse_local_settings(GOOD, "claude.local.md")
    assert settings.models_dir == "/models"
    assert settings.slurm.account == "grp"
    assert settings.environment.setup == ["module load cuda"]
    assert settings.resolved("/home/me").experiments_dir == "/home/me/exps"


def test_the_shipped_example_parses() -> None:
    settings = parse_local_settings((ROOT / "claude.local.md.example").read_text(), "claude.local.md.example")
    assert settings.slurm.array_parallelism == 16


def test_unknown_keys_name_the_nearest_valid_one() -> None:
    text = GOOD.replace("scratch_dir", "scrach_dir").replace("partition: gpu", "partiton: gpu")
    with pytest.raises(ConfigError) as err:
        parse_local_settings(text, "claude.local.md")
    lines = err.value.problems
    assert "claude.local.md: unknown key 'scrach_dir'; did you mean 'scratch_dir'?" in lines
    assert "claude.local.md: unknown key 'slurm.partiton'; did you mean 'partition'?" in lines
    assert "claude.local.md: missing required key 'scratch_dir'; add it" in lines


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("no block here", "no ```yaml block found"),
        (GOOD + "\n```yaml\nx: 1\n```\n", "2 ```yaml blocks found; keep exactly one"),
        ("```yaml\n[1, 2]\n```\n", "must be a mapping of settings"),
        (GOOD.replace("time: ", "").replace("slurm: {", "slurm: {time: soon, "), "slurm.time: not a Slurm time"),
    ],
)
def test_bad_files_get_one_clear_line(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_local_settings(text, "claude.local.md")
    assert message in "\n".join(err.value.lines())


def test_lookup_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    explicit, env, cwd_file, near = (tmp_path / n for n in ("a.md", "b.md", "cwd", "near"))
    for p in (explicit, env):
        p.write_text(GOOD)
    cwd_file.mkdir()
    near.mkdir()
    (near / "claude.local.md").write_text(GOOD)
    monkeypatch.chdir(cwd_file)
    monkeypatch.setenv("PLAN_EXPERIMENT_LOCAL", str(env))
    assert find_local_settings(explicit, near) == explicit
    assert find_local_settings(None, near) == env
    monkeypatch.delenv("PLAN_EXPERIMENT_LOCAL")
    assert find_local_settings(None, near) == near / "claude.local.md"
    (cwd_file / "claude.local.md").write_text(GOOD)
    assert find_local_settings(None, near) == cwd_file / "claude.local.md"
    (cwd_file / "claude.local.md").unlink()
    with pytest.raises(ConfigError, match="copy claude.local.md.example to claude.local.md"):
        find_local_settings(None, None)
    assert load_local_settings(explicit).experiments_dir == str(tmp_path / "exps")


def _with_devices(line: str) -> str:
    return GOOD.replace("slurm: {", f"{line}\nslurm: {{")


def test_devices_name_each_partitions_gpu_as_written() -> None:
    settings = parse_local_settings(_with_devices("devices: {gpu: h100, gpu-a100: NVIDIA A100-SXM4-40GB, l4q: l4}"),
                                    "claude.local.md")
    assert settings.devices == {"gpu": "h100", "gpu-a100": "NVIDIA A100-SXM4-40GB", "l4q": "l4"}
    assert parse_local_settings(GOOD, "claude.local.md").devices == {}


def test_an_unknown_device_is_one_line_naming_key_value_and_the_known_ones() -> None:
    with pytest.raises(ConfigError) as err:
        parse_local_settings(_with_devices("devices: {gpu: tpu9, cpuq: cpu}"), "claude.local.md")
    assert len(err.value.problems) == 1
    line = err.value.problems[0]
    assert "\n" not in line
    assert line.startswith("claude.local.md: devices.gpu: unknown device; use one of b200, h200, h100-sxm-80gb,")
    assert "a100-80gb" in line and line.endswith("(got 'tpu9')")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('devices: {"gpu\\n#SBATCH --x": h100}', "devices.'gpu\\n#SBATCH --x': not a partition name; use one partition's name per key"),
        ('devices: {"gpu,big": h100}', "devices.gpu,big: not a partition name"),
        ('devices: {"$(id)": h100}', "devices.$(id): not a partition name"),
        ("devices: {gpu: 100}", "devices.gpu: Input should be a valid string (got 100)"),
        ("devices: [h100]", "devices: Input should be a valid dictionary"),
    ],
)
def test_device_partitions_pass_the_partition_check(line: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_local_settings(_with_devices(line), "claude.local.md")
    assert len(err.value.problems) == 1 and "\n" not in err.value.problems[0]
    assert message in err.value.problems[0]


def test_the_shipped_example_of_devices_parses_once_uncommented() -> None:
    text = (ROOT / "claude.local.md.example").read_text()
    assert "# devices: {" in text
    settings = parse_local_settings(text.replace("# devices: {", "devices: {"), "claude.local.md.example")
    assert settings.devices == {"gpu": "h100", "gpu-a100": "a100-80gb"}
    assert "gpu_memory_gib" not in parse_local_settings(text, "claude.local.md.example").model_fields_set


def test_a_bad_device_stops_new_with_exit_code_2(example: Path) -> None:
    local = example / "claude.local.md"
    local.write_text(local.read_text().replace("gpu_memory_gib: 80", "gpu_memory_gib: 80\ndevices: {gpu: tpu9}"))
    result = run_cli("new", "--spec", str(example / "experiment.yaml"), "--yes", "--local-config", str(local))
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert lines[0] == f"error: {local}: 1 problem(s) in local settings"
    assert lines[1].startswith(f"  - {local}: devices.gpu: unknown device; use one of ")
    assert lines[1].endswith("(got 'tpu9')") and len(lines) == 2
    assert not (example / "experiments").exists()
