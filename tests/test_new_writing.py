"""Writing the experiment folder: a full disk, kill -9 part-way, and the user's umask."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from planner.folder import atomic
from planner.spec.errors import OutputError
from tests.conftest import ROOT, load_yaml, run_cli, write_spec


def _everything(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")} if root.exists() else set()


def _disk_full_after(files: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """The disk fills up once ``files`` files of the experiment folder are written."""
    real = atomic._write_one
    calls = {"n": 0}

    def fill_up(folder: str, rel: str, text: str) -> None:
        calls["n"] += 1
        if calls["n"] > files:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(folder, rel, text)

    monkeypatch.setattr(atomic, "_write_one", fill_up)


def test_a_full_disk_is_one_line_exit_3_and_leaves_nothing(example: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _disk_full_after(4, monkeypatch)
    result = run_cli("new", "--spec", str(example / "experiment.yaml"), "--yes")
    assert result.exit_code == 3, result.output
    exp = example / "experiments" / "cap_5L_lora_comparison_demo"
    assert result.stderr == (
        f"error: cannot write the experiment folder {exp}: the disk is full; nothing was written. "
        "Free space or choose another folder with --out\n"
    )
    assert _everything(example / "experiments") == set()


def test_a_real_full_filesystem(example: Path, tmp_path: Path) -> None:
    small = tmp_path / "small"
    small.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(small)], capture_output=True).returncode:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        result = run_cli("new", "--spec", str(example / "experiment.yaml"), "--yes", "--out", str(small))
        assert result.exit_code == 3, result.output
        assert "the disk is full; nothing was written" in result.stderr and "Traceback" not in result.output
        assert len(result.stderr.splitlines()) == 1
        assert os.listdir(small) == []
    finally:
        subprocess.run(["umount", str(small)], check=True)


def _big_spec(example: Path, name: str) -> Path:
    return write_spec(example, name=name, factors={"lora_rank": list(range(1, 31)), "learning_rate": [i * 1e-5 for i in range(1, 101)]},
                      controls={"epochs": 1}, evaluation={"tasks": [], "epochs": "last"})


def test_kill_9_while_writing_leaves_a_partial_that_the_next_new_removes(example: Path) -> None:
    spec = _big_spec(example, "killed")
    out = example / "experiments"
    proc = subprocess.Popen([sys.executable, "-m", "planner.cli.main", "new", "--spec", str(spec), "--yes"],
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    partials: list[Path] = []
    while time.monotonic() < deadline and proc.poll() is None:
        partials = [p for p in out.glob(".*.partial")] if out.exists() else []
        if partials and any(partials[0].iterdir()):
            break
        time.sleep(0.01)
    assert proc.poll() is None, "new finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert partials and partials[0].is_dir(), "kill -9 left no partial folder"
    assert not (out / "killed").exists()

    result = run_cli("new", "--spec", str(example / "experiment.yaml"), "--yes")
    assert result.exit_code == 0, result.output
    assert f"Removed {partials[0]}: left by an earlier `new` that was killed while writing" in result.output.replace("\n", "")
    assert not partials[0].exists()
    assert [p.name for p in out.iterdir()] == ["cap_5L_lora_comparison_demo"]


def test_partials_of_running_or_foreign_writers_and_look_alikes_are_kept(example: Path) -> None:
    out = example / "experiments"
    out.mkdir()
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        host = atomic._host_tag()
        ticks = atomic._start_ticks(sleeper.pid)
        keep = [
            out / f".exp.pe-{host}-{sleeper.pid}-{ticks}.abcd1234.partial",  # its writer still runs
            out / f".exp.pe-00000000-999999-1.abcd1234.partial",  # written on another host
            out / ".exp.abcd1234.partial",  # not named as ours
            out / ".notes.partial",
        ]
        for folder in keep:
            folder.mkdir()
        link = out / f".exp.pe-{host}-999999-1.abcd1234.partial"
        link.symlink_to(example)  # looks like ours but is a link: never followed or removed
        dead = out / f".exp.pe-{host}-999999-1.efgh5678.partial"  # pid 999999 does not run
        dead.mkdir()
        (dead / "file").write_text("x")
        result = run_cli("new", "--spec", str(example / "experiment.yaml"), "--yes")
        assert result.exit_code == 0, result.output
        assert all(folder.is_dir() for folder in keep)
        assert link.is_symlink() and example.is_dir()
        assert not dead.exists()
    finally:
        sleeper.kill()
        sleeper.wait()


@pytest.mark.parametrize(("mask", "mode"), [(0o022, 0o755), (0o027, 0o750), (0o077, 0o700)])
def test_experiment_folders_follow_the_umask(example: Path, mask: int, mode: int) -> None:
    old = os.umask(mask)
    try:
        result = run_cli("new", "--spec", str(example / "experiment.yaml"), "--yes")
    finally:
        os.umask(old)
    assert result.exit_code == 0, result.output
    exp = example / "experiments" / "cap_5L_lora_comparison_demo"
    assert exp.stat().st_mode & 0o777 == mode
    assert (exp / "tiny-llama-cap_rank4").stat().st_mode & 0o777 == mode
    assert (exp / "experiment_summary.md").stat().st_mode & 0o777 == 0o666 & ~mask
    assert load_yaml(exp / "experiment.yaml")["name"] == "cap_5L_lora_comparison_demo"


def test_a_large_folder_is_written_whole_or_not_at_all(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Hundreds of files in many folders: every file and mode arrives, and a failure part-way
    leaves nothing behind."""
    files = {f"runs/r{i:03d}/{name}": f"{i} {name}\n" for i in range(150) for name in ("train.sh", "finetune.yaml")}
    target = tmp_path / "out" / "big"
    assert atomic.write_experiment(target, files, False, datetime(2026, 1, 1)) is None
    assert {str(p.relative_to(target)) for p in target.rglob("*") if p.is_file()} == set(files)
    assert (target / "runs/r149/finetune.yaml").read_text() == "149 finetune.yaml\n"
    assert os.access(target / "runs/r007/train.sh", os.X_OK) and not os.access(target / "runs/r007/finetune.yaml", os.X_OK)

    _disk_full_after(200, monkeypatch)
    with pytest.raises(OutputError, match="the disk is full; nothing was written"):
        atomic.write_experiment(tmp_path / "out" / "big2", files, False, datetime(2026, 1, 1))
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["big"]


def test_declining_or_interrupting_the_approval_leaves_the_folder_as_it_was(example: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`new` writes the plan hidden before it asks; a no, or Ctrl-C at the question, removes it all."""
    out = example / "experiments"
    out.mkdir()
    (out / "notes.md").write_text("mine\n")
    result = run_cli("new", "--spec", str(example / "experiment.yaml"), input="n\n")
    assert result.exit_code == 1 and result.stderr == "error: not approved: nothing was written\n"
    assert _everything(out) == {"notes.md"}

    from planner.cli import new as new_command

    def interrupted(*args: Any, **kwargs: Any) -> bool:
        raise KeyboardInterrupt

    monkeypatch.setattr(new_command.Prompter, "confirm", interrupted)
    result = run_cli("new", "--spec", str(example / "experiment.yaml"))
    assert result.exit_code != 0
    assert _everything(out) == {"notes.md"}


def test_a_disk_that_fills_while_forked_renderers_write_leaves_nothing(example: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A large plan's runs are written by forked processes: a full disk there is the same one-line error."""
    from planner.plan import pipeline

    monkeypatch.setattr(pipeline, "usable_cpus", lambda: 2)
    spec = write_spec(example, name="wide", factors={"lora_rank": list(range(1, 11)), "learning_rate": [i * 1e-5 for i in range(1, 21)]},
                      controls={"epochs": 1})
    _disk_full_after(100, monkeypatch)  # in each renderer: some runs are on disk when the disk fills
    result = run_cli("new", "--spec", str(spec), "--yes")
    assert result.exit_code == 3, result.output
    assert result.stderr == (
        f"error: cannot write the experiment folder {example / 'experiments' / 'wide'}: the disk is full; nothing was written. "
        "Free space or choose another folder with --out\n"
    )
    assert _everything(example / "experiments") == set()
