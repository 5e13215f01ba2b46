"""Shared fixtures: a copy of the shipped example, a CLI runner that returns full output, and
a private home and cache folder for every test.

No test may read or write the real user's files: every test runs with its own ``HOME`` and
XDG folders (the prior-run scan cache and the index of planned experiments live in the
XDG cache folder), and the commands, local jobs and Slurm jobs it starts inherit them
(Slurm sends the submitting environment to a job unless told otherwise).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
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


#: The environment the test session started in, before any fixture changed it: where the
#: real user's files are, so that a test can check they were left alone.
ORIGINAL_ENV: dict[str, str] = dict(os.environ)

#: Each test's own home and XDG folders, relative to its private user folder.
PRIVATE_FOLDERS = {
    "HOME": "home",
    "XDG_CACHE_HOME": "home/.cache",
    "XDG_CONFIG_HOME": "home/.config",
    "XDG_DATA_HOME": "home/.local/share",
    "XDG_STATE_HOME": "home/.local/state",
}
#: Set by a user to point tools at folders of their own; unset, each tool falls back on the
#: private folders above. PLAN_EXPERIMENT_LOCAL would make every command read the user's
#: claude.local.md instead of the test's.
USER_POINTERS = ("PLAN_EXPERIMENT_LOCAL", "MPLCONFIGDIR", "HF_HOME", "HF_DATASETS_CACHE", "TORCH_HOME",
                 "TRITON_CACHE_DIR", "PIP_CACHE_DIR")


def _isolate(user: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point HOME and the XDG folders into ``user`` and unset the user's pointers; return ``user``."""
    for name, rel in PRIVATE_FOLDERS.items():
        folder = user / rel
        folder.mkdir(parents=True, exist_ok=True)
        monkeypatch.setenv(name, str(folder))
    for name in USER_POINTERS:
        monkeypatch.delenv(name, raising=False)
    return user


# One fixture per scope: a module-scoped fixture (a planned experiment several tests
# share) is set up before any function-scoped one, so it needs private folders of its own.
@pytest.fixture(scope="session", autouse=True)
def _private_home_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Private folders for session-scoped fixtures."""
    with pytest.MonkeyPatch.context() as mp:
        yield _isolate(tmp_path_factory.mktemp("user-session"), mp)


@pytest.fixture(scope="module", autouse=True)
def _private_home_module(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Private folders for the module-scoped fixtures of each test module."""
    with pytest.MonkeyPatch.context() as mp:
        yield _isolate(tmp_path_factory.mktemp("user-module"), mp)


@pytest.fixture(autouse=True)
def _private_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Give each test its own home, cache and config folders; return its private user folder.

    Set in ``os.environ``, so subprocesses, submitit's local processes and Slurm jobs the
    test starts get them too.
    """
    return _isolate(tmp_path_factory.mktemp("user"), monkeypatch)


def original_user_file(*xdg_config_parts: str) -> Path:
    """A file in the real user's XDG config folder (``$XDG_CONFIG_HOME``, else ``~/.config``), read-only."""
    base = ORIGINAL_ENV.get("XDG_CONFIG_HOME") or str(Path(ORIGINAL_ENV.get("HOME", "/nonexistent")) / ".config")
    return Path(base, *xdg_config_parts)


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
