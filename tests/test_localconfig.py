"""claude.local.md: the program reads only its yaml block; mistakes name the key and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from planner.spec.local_settings import find_local_settings, load_local_settings
from planner.spec.errors import ConfigError
from planner.spec.localconfig import parse_local_settings

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
