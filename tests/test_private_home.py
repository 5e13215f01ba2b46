"""Tests never touch the real user's files: each has its own home, cache and config folders.

The user-wide files ``new`` writes (the index of planned experiments, beside the prior-run
scan cache) are located as the code locates them, once for the environment the session
started in (the real user's) and once for the test's; ``new`` runs as a subprocess, as a
user runs it, so the check covers what commands started by tests inherit.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ORIGINAL_ENV, PRIVATE_FOLDERS
from submit_support import copy_example, plan

_WHERE = ("import json\nfrom planner.estimate.experiment_index import index_path\n"
          "from planner.estimate.priors import cache_path\n"
          "print(json.dumps([str(index_path()), str(cache_path())]))")


def _user_files(env: dict[str, str]) -> tuple[Path, Path]:
    """(experiment index, prior-run cache) as the code finds them in ``env``, asked of a new process."""
    proc = subprocess.run([sys.executable, "-c", _WHERE], env=env, capture_output=True, text=True, timeout=60, check=True)
    index, cache = json.loads(proc.stdout)
    return Path(index), Path(cache)


def _snapshot(folder: Path) -> dict[str, tuple[int, int, bytes]]:
    """Size, modification time and bytes of every file in ``folder`` (empty when it is missing)."""
    out: dict[str, tuple[int, int, bytes]] = {}
    if folder.is_dir():
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                st = path.stat()
                out[str(path.relative_to(folder))] = (st.st_size, st.st_mtime_ns, path.read_bytes())
    return out


def test_every_test_has_its_own_home_and_xdg_folders(tmp_path: Path) -> None:
    for name in PRIVATE_FOLDERS:
        assert os.environ[name] != ORIGINAL_ENV.get(name), name
        assert Path(os.environ[name]).is_dir(), name
    assert Path.home() == Path(os.environ["HOME"]) != Path(ORIGINAL_ENV.get("HOME", "/"))
    assert "PLAN_EXPERIMENT_LOCAL" not in os.environ


def test_new_leaves_the_real_users_index_and_cache_alone(tmp_path: Path) -> None:
    real_index, real_cache = _user_files(ORIGINAL_ENV)
    mine_index, mine_cache = _user_files(dict(os.environ))
    assert mine_index.parent != real_index.parent and Path(os.environ["XDG_CACHE_HOME"]) in mine_index.parents
    before = _snapshot(real_index.parent)
    exp = plan(copy_example(tmp_path / "src"), tmp_path / "out")
    assert _snapshot(real_index.parent) == before, f"a test changed {real_index.parent}"
    # new did register the experiment and scan for priors: in the test's own cache folder.
    assert json.loads(mine_index.read_text(encoding="utf-8")) == [str(exp.absolute())]
    assert mine_cache.parent == mine_index.parent and mine_index.parent.is_dir()


@pytest.fixture(scope="module")
def shared_plan(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, bool, Path]]:
    """An experiment planned once for the module, as module-scoped fixtures do, before any test's own folders.

    Yields:
        The experiment, whether the real user's cache folder was unchanged by planning it,
        and the index this fixture's environment points at.
    """
    real_index, _ = _user_files(ORIGINAL_ENV)
    before = _snapshot(real_index.parent)
    root = tmp_path_factory.mktemp("shared")
    exp = plan(copy_example(root / "src"), root / "out")
    yield exp, _snapshot(real_index.parent) == before, _user_files(dict(os.environ))[0]


def test_module_scoped_fixtures_plan_in_private_folders_too(shared_plan: tuple[Path, bool, Path]) -> None:
    exp, unchanged, index = shared_plan
    assert unchanged, "a module-scoped fixture changed the real user's cache folder"
    assert json.loads(index.read_text(encoding="utf-8")) == [str(exp.absolute())]
    # The test itself has folders of its own again, apart from the module's.
    assert Path(os.environ["XDG_CACHE_HOME"]) not in index.parents
