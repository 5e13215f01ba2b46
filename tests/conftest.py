"""Shared fixtures: a copy of the shipped example and a CLI runner that returns full output."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result

from planner.cli.main import cli

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "capitalization"


@pytest.fixture()
def example(tmp_path: Path) -> Path:
    """A private copy of examples/capitalization (spec, local settings, data, tiny model)."""
    dest = tmp_path / "example"
    shutil.copytree(EXAMPLE, dest)
    text = (dest / "claude.local.md").read_text()
    text = text.replace("experiments_dir: ../../experiments", "experiments_dir: experiments")
    (dest / "claude.local.md").write_text(text.replace("scratch_dir: ../../tests/fixtures/logs/real", "scratch_dir: experiments"))
    return dest


def load_yaml(path: Path) -> dict:
    """Read a YAML file."""
    return yaml.safe_load(path.read_text())


def write_spec(example: Path, **changes: object) -> Path:
    """Write a modified copy of the example spec beside the original; return its path."""
    spec = load_yaml(example / "experiment.yaml")
    spec.update(changes)
    path = example / "spec.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def run_cli(*args: str, cwd: Path | None = None, input: str | None = None) -> Result:
    """Invoke plan-experiment in-process; stdout and stderr kept apart."""
    runner = CliRunner()
    if cwd is None:
        return runner.invoke(cli, list(args), input=input, catch_exceptions=False)
    with runner.isolated_filesystem(temp_dir=cwd):
        import os

        os.chdir(cwd)
        return runner.invoke(cli, list(args), input=input, catch_exceptions=False)


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the prior-run scan cache of each test private."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))


def pytest_addoption(parser: pytest.Parser) -> None:
    """``--update-golden`` rewrites tests/golden/ from what the code writes now (review the diff)."""
    parser.addoption("--update-golden", action="store_true", default=False,
                     help="rewrite the golden files under tests/golden/ instead of comparing with them")


#: (what, seconds) measured by the slow distributed tests; printed at the end of the run
#: so that CI's log shows what they add to it.
DISTRIBUTED_TIMINGS: list[tuple[str, float]] = []


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print the time the multi-process and two-node tests took, when they ran."""
    if DISTRIBUTED_TIMINGS:
        terminalreporter.section("time added by the distributed tests")
        for what, seconds in DISTRIBUTED_TIMINGS:
            terminalreporter.write_line(f"{what}: {seconds:.0f} s")
        total = sum(s for _, s in DISTRIBUTED_TIMINGS)
        terminalreporter.write_line(f"total: {total:.0f} s")
