"""``--executor auto``: local processes only where there is no Slurm at all.

On a login node whose controller does not answer, training must not start on the login
node: ``auto`` stops with exit 5 and says why. Stub Slurm clients on PATH play that node.
"""

from __future__ import annotations

import os
from pathlib import Path

from submit_support import cli, copy_example, plan


def _slurm_down(folder: Path) -> dict[str, str]:
    folder.mkdir()
    for name in ("sbatch", "sacct", "squeue", "scontrol"):
        (folder / name).write_text("#!/bin/sh\necho 'Slurmctld(primary) at head is DOWN'\nexit 1\n")
        (folder / name).chmod(0o755)
    return {**os.environ, "PATH": f"{folder}{os.pathsep}{os.environ['PATH']}"}


def test_auto_refuses_when_slurm_is_installed_but_down(tmp_path: Path) -> None:
    exp = plan(copy_example(tmp_path / "src"), tmp_path / "out")
    env = _slurm_down(tmp_path / "stubs")
    for args in (["--dry-run"], []):
        proc = cli("submit", exp, *args, env=env)
        assert proc.returncode == 5, proc.stdout + proc.stderr
        assert "Slurm is installed here but cannot take jobs" in proc.stderr and "DOWN" in proc.stderr
        assert "--executor local" in proc.stderr and "Traceback" not in proc.stderr
    assert not (exp / "journal.json").exists(), "nothing may run on a login node by mistake"
    assert not list(exp.rglob("job-state.json"))


def test_auto_runs_locally_where_there_is_no_slurm(tmp_path: Path) -> None:
    exp = plan(copy_example(tmp_path / "src"), tmp_path / "out")
    empty = tmp_path / "no-slurm"
    empty.mkdir()
    proc = cli("submit", exp, "--dry-run", env={**os.environ, "PATH": str(empty)})
    assert proc.returncode == 0, proc.stderr
    assert "# local executor" in proc.stdout


def test_a_slurm_dry_run_needs_no_slurm_and_a_real_submit_does(tmp_path: Path) -> None:
    """A laptop reviews what a cluster would be sent; it cannot send it."""
    exp = plan(copy_example(tmp_path / "src"), tmp_path / "out")
    empty = tmp_path / "no-slurm"
    empty.mkdir()
    env = {**os.environ, "PATH": str(empty)}
    proc = cli("submit", exp, "--dry-run", "--executor", "slurm", env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("#!/bin/bash\n") and "#SBATCH --job-name=" in proc.stdout
    assert "--dependency=afterok:DRYRUN1_0" in proc.stdout  # the evaluations wait for their run
    assert "Slurm cannot take jobs here (sbatch, sacct, scontrol not on PATH)" in proc.stderr
    proc = cli("submit", exp, "--executor", "slurm", env=env)
    assert proc.returncode == 5 and "--executor slurm: Slurm cannot take jobs" in proc.stderr
    assert not (exp / "journal.json").exists()
