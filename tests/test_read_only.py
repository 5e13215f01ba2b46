"""A read-only experiment folder (a colleague's, a read-only mount) can be viewed.

``status --no-write`` and ``submit --dry-run`` take no lock and write nothing: checked byte
for byte on a folder we own, and for real as another user on a folder that user cannot write.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from submit_support import PLAN_EXPERIMENT, copy_example, plan

from tests.conftest import run_cli

FIRST_RUN = "tiny-llama-cap_rank4"


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")}


def _with_journal(exp: Path) -> None:
    sub = {"number": 1, "time": "2025-01-01T00:00:00", "executor": "local", "kind": "train", "job_id": "local-999999999",
           "dependency": None, "parameters": {}, "tasks": [{"unit": FIRST_RUN, "job_id": "local-999999999", "script": "x"}]}
    (exp / "journal.json").write_text(json.dumps({"experiment": exp.name, "submissions": [sub]}))
    (exp / FIRST_RUN / "job-state.json").write_text('{"state": "COMPLETED", "exit_code": 0}')


@pytest.fixture()
def shared_tmp() -> Iterator[Path]:
    """A folder another user can enter (pytest's own tmp folders are private to their owner)."""
    root = Path(tempfile.mkdtemp(prefix="readonly-"))
    root.chmod(0o755)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.parametrize("args", [["status", "--no-write"], ["status", "--no-write", "--json"],
                                  ["submit", "--dry-run", "--executor", "local"]])
def test_read_only_commands_write_nothing(tmp_path: Path, args: list[str]) -> None:
    exp = plan(copy_example(tmp_path / "src"), tmp_path / "out")
    shutil.rmtree(exp / ".plan-experiment", ignore_errors=True)
    _with_journal(exp)
    before = _snapshot(exp)
    result = run_cli(args[0], str(exp), *args[1:])
    assert result.exit_code == 0, result.stderr
    assert _snapshot(exp) == before, "a read-only command wrote to the experiment folder"


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None, reason="needs root to act as another user")
def test_another_user_can_view_a_folder_they_cannot_write(shared_tmp: Path) -> None:
    exp = plan(copy_example(shared_tmp / "src"), shared_tmp / "out")
    shutil.rmtree(exp / ".plan-experiment", ignore_errors=True)
    _with_journal(exp)
    for path in [shared_tmp, *shared_tmp.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)  # readable by all, writable by its owner (root) only
    env = {**os.environ, "HOME": str(shared_tmp), "XDG_CACHE_HOME": str(shared_tmp / "no-cache")}
    as_nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", str(PLAN_EXPERIMENT)]
    for args in (["status", str(exp), "--no-write"], ["submit", str(exp), "--dry-run", "--executor", "local"]):
        proc = subprocess.run(as_nobody + args, capture_output=True, text=True, env=env, timeout=120, check=False)
        assert proc.returncode == 0, f"{args}: {proc.stderr}"
        assert "Traceback" not in proc.stderr
    # Without --no-write status needs the lock: a clear error, exit 7, no traceback.
    proc = subprocess.run(as_nobody + ["status", str(exp)], capture_output=True, text=True, env=env, timeout=120, check=False)
    assert proc.returncode == 7 and "--no-write" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
