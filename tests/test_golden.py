"""Golden files: what `new` and `submit --dry-run` write for the shipped example.

The files under ``tests/golden/capitalization/`` are the users' files byte for byte, after
normalising what differs between machines: the repository folder (``<repo>``), the
test's temporary folder (``<tmp>``, which holds the experiments folder), the Python interpreter (``<python>``, ``<python-bin>``), the
planner's version, user, host and the time a scan took. The clock is fixed, free disk
space is fixed, and PATH holds no Slurm or git command (only a never-run ``srun`` that submitit looks
for), so no ``git``, ``sacct`` or ``sbatch`` of the machine
changes what is written. A change that alters a user's file shows up here as a diff.

After an intended change, regenerate them and review the diff::

    pytest tests/test_golden.py --update-golden
"""

from __future__ import annotations

import re
import shutil
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from planner import __version__
from tests.conftest import EXAMPLE, ROOT, run_cli

GOLDEN = ROOT / "tests" / "golden" / "capitalization"
FIXED_NOW = datetime(2025, 10, 22, 9, 30, 0)
RUN = "tiny-llama-cap_rank4"
EVAL = f"{RUN}/eval/capitalization_epoch1"

#: Golden file (relative to GOLDEN) -> file of the experiment folder it pins.
FOLDER_FILES = {
    "experiment.yaml": "experiment.yaml",
    "experiment_summary.md": "experiment_summary.md",
    "design-experiment.log": "design-experiment.log",
    "estimates.json": "estimates.json",
    f"{RUN}/setup_finetune.yaml": f"{RUN}/setup_finetune.yaml",
    f"{RUN}/finetune.yaml": f"{RUN}/finetune.yaml",
    f"{RUN}/train.sh": f"{RUN}/train.sh",
    f"{EVAL}/eval.sh": f"{EVAL}/eval.sh",
    f"{EVAL}/eval_config.yaml": f"{EVAL}/eval_config.yaml",
}
DRY_RUN = "submit-dry-run-slurm.txt"


class _FixedClock(datetime):
    """``datetime`` whose ``now`` is the golden files' fixed moment."""

    @classmethod
    def now(cls, tz: Any = None) -> _FixedClock:  # type: ignore[override]
        return cls(FIXED_NOW.year, FIXED_NOW.month, FIXED_NOW.day, FIXED_NOW.hour, FIXED_NOW.minute, FIXED_NOW.second, tzinfo=tz)


class _DiskUsage(NamedTuple):
    total: int
    used: int
    free: int


def _local_settings(example_dir: Path, out: Path) -> str:
    """The example's claude.local.md with absolute paths and a private experiments folder.

    Prior runs are the committed fixture logs the example names; the experiments folder is
    a fresh one, so no earlier plan on this machine becomes a prior run.
    """
    text = (example_dir / "claude.local.md").read_text(encoding="utf-8")
    replacements = {
        "models_dir: models": f"models_dir: {example_dir / 'models'}",
        "datasets_dir: data": f"datasets_dir: {example_dir / 'data'}",
        "experiments_dir: ../../experiments": f"experiments_dir: {out}",
        "scratch_dir: ../../tests/fixtures/logs/real": f"scratch_dir: {ROOT / 'tests' / 'fixtures' / 'logs' / 'real'}",
    }
    for old, new in replacements.items():
        assert old in text, f"the example's claude.local.md no longer says {old!r}: update this test"
        text = text.replace(old, new)
    return text


def normalise(text: str, tmp: Path) -> str:
    """Replace what differs between machines with stable placeholders."""
    # The job scripts' fallback PATH entry is the interpreter's folder; replaced where it is
    # used only, since a folder like /usr/bin also appears in every script's #! line.
    text = text.replace(f"PATH={Path(sys.executable).parent}:", "PATH=<python-bin>:")
    pairs = [(sys.executable, "<python>"), (str(tmp), "<tmp>"), (str(ROOT), "<repo>")]
    for real, token in sorted(pairs, key=lambda p: -len(p[0])):
        text = text.replace(real, token)
    text = text.replace(f"plan-experiment {__version__}", "plan-experiment <version>")
    text = re.sub(r"^(\s*planner_version:) .*$", r"\1 <version>", text, flags=re.M)
    text = re.sub(r"^(\s*planned_by:) .*$", r"\1 <user>", text, flags=re.M)
    text = re.sub(r"^(\s*host:) .*$", r"\1 <host>", text, flags=re.M)
    # How long the log scan took is the machine's speed, not the plan.
    text = re.sub(r"(from cache) in \d+(\.\d+)?s", r"\1 in <seconds>s", text)
    return text


@pytest.fixture(scope="module")
def produced(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Plan the shipped example and dry-run its submission; golden name -> normalised text."""
    tmp = tmp_path_factory.mktemp("golden")
    out = tmp / "experiments"
    empty_bin = tmp / "bin"
    empty_bin.mkdir()
    # submitit's Slurm executor only checks that srun exists; a dry run never runs it.
    srun = empty_bin / "srun"
    srun.write_text("#!/bin/sh\nexit 1\n")
    srun.chmod(0o755)
    settings = tmp / "claude.local.md"
    settings.write_text(_local_settings(EXAMPLE, out), encoding="utf-8")
    spec = EXAMPLE / "experiment.yaml"
    new_args = ["new", "--spec", str(spec), "--yes", "--local-config", str(settings)]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_CACHE_HOME", str(tmp / "cache"))
        mp.setenv("PATH", str(empty_bin))
        mp.chdir(tmp)
        mp.setattr("planner.cli.new.datetime", _FixedClock)
        mp.setattr("planner.cli.submit.datetime", _FixedClock)
        mp.setattr(shutil, "disk_usage", lambda path: _DiskUsage(2**40, 2**39, 500 * 2**30))
        mp.setattr(sys, "argv", ["plan-experiment", *new_args])
        result = run_cli(*new_args)
        assert result.exit_code == 0, result.output
        exp = out / "cap_5L_lora_comparison_demo"
        # Slurm's sbatch script is what users review before submitting; it is rendered
        # without asking a controller, so the golden text is the same with or without one.
        mp.setattr("planner.jobs.slurm_query.slurm_available", lambda *a, **k: True)
        dry = run_cli("submit", str(exp), "--dry-run", "--executor", "slurm")
        assert dry.exit_code == 0, dry.output
    texts = {name: normalise((exp / rel).read_text(encoding="utf-8"), tmp) for name, rel in FOLDER_FILES.items()}
    texts[DRY_RUN] = normalise(dry.stdout, tmp)
    yield texts


@pytest.mark.parametrize("name", [*FOLDER_FILES, DRY_RUN])
def test_golden_file(name: str, produced: dict[str, str], request: pytest.FixtureRequest) -> None:
    """The file a user gets for the shipped example matches its golden copy."""
    golden = GOLDEN / name
    if request.config.getoption("--update-golden"):
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(produced[name], encoding="utf-8")
    assert golden.exists(), f"{golden} is missing: run pytest tests/test_golden.py --update-golden"
    assert produced[name] == golden.read_text(encoding="utf-8"), (
        f"{name} differs from its golden copy; if the change is intended, run "
        "pytest tests/test_golden.py --update-golden and commit the diff"
    )


def test_golden_text_names_no_machine(produced: dict[str, str]) -> None:
    """No machine path, interpreter or version is left in a golden text after normalising."""
    for name, text in produced.items():
        for value in (str(ROOT), sys.executable, f"plan-experiment {__version__}"):
            assert value not in text, f"{name} still contains {value!r}"
