"""Helpers for tests that plan, submit and follow whole experiments through the CLI.

Import from test modules (``from submit_support import ...``); pytest puts this folder
on ``sys.path`` for them. Every experiment starts from the shipped capitalization
example, copied into the test's own folder (spec, local settings, data and the tiny
model) so a test may change any of it without touching the repository.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "capitalization"
EXAMPLE_MODEL = "tiny-llama-cap"
#: The console script of the installed package, beside the interpreter running the tests.
PLAN_EXPERIMENT = Path(sys.executable).parent / "plan-experiment"

_BEGIN = "<!-- plan-experiment:begin {} -->"
_END = "<!-- plan-experiment:end {} -->"


def copy_example(
    root: Path,
    changes: Mapping[str, Any] | None = None,
    model_name: str = EXAMPLE_MODEL,
    one_epoch: bool = True,
) -> Path:
    """Copy the example (spec, claude.local.md, data, model) under ``root`` and edit the spec.

    Args:
        root: Folder to copy into (created).
        changes: Top-level spec keys to replace (e.g. ``{"name": ..., "factors": ...}``).
        model_name: Folder name of the model copy; the spec's ``models`` lists it.
        one_epoch: Train one epoch and evaluate it only (``<task>_epoch0``) on the first
            task (capitalization), whatever the example says: the fewest jobs, and unit
            names a test can spell out.

    Returns:
        The path of the edited experiment.yaml; claude.local.md sits beside it, so
        ``plan-experiment new --spec`` finds it.
    """
    root.mkdir(parents=True, exist_ok=True)
    shutil.copy2(EXAMPLE / "claude.local.md", root / "claude.local.md")
    shutil.copytree(EXAMPLE / "data", root / "data")
    (root / "models").mkdir()
    shutil.copytree(EXAMPLE / "models" / EXAMPLE_MODEL, root / "models" / model_name)
    spec = yaml.safe_load((EXAMPLE / "experiment.yaml").read_text(encoding="utf-8"))
    spec["models"] = [model_name]
    if one_epoch:
        spec["controls"]["epochs"] = 1
        spec["evaluation"]["epochs"] = "last"
        spec["evaluation"]["tasks"] = spec["evaluation"]["tasks"][:1]
    spec.update(changes or {})
    path = root / "experiment.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


def cli(
    *args: str | Path,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout_s: float = 120.0,
) -> subprocess.CompletedProcess[str]:
    """Run ``plan-experiment ARGS`` as a user would, capturing its output (never raises on exit code).

    Args:
        args: Command-line arguments after ``plan-experiment``.
        cwd: Working directory (the caller's by default).
        env: Whole environment for the process (the caller's by default).
        timeout_s: Longest the command may take.
    """
    return subprocess.run(
        [str(PLAN_EXPERIMENT), *map(str, args)],
        cwd=cwd,
        env=dict(env) if env is not None else None,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def ok(proc: subprocess.CompletedProcess[str], code: int = 0) -> str:
    """Assert an exit code and return stdout; the message carries both streams."""
    assert proc.returncode == code, (
        f"{' '.join(proc.args)} exited {proc.returncode}, expected {code}\n"
        f"--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
    )
    return proc.stdout


def plan(spec_path: Path, out: Path, cwd: Path | None = None) -> Path:
    """``plan-experiment new --spec SPEC --yes --out OUT``; return the experiment folder."""
    ok(cli("new", "--spec", spec_path, "--yes", "--out", out, cwd=cwd))
    name = yaml.safe_load(spec_path.read_text(encoding="utf-8"))["name"]
    exp = out / name
    assert (exp / "experiment.yaml").is_file() and (exp / "experiment_summary.md").is_file()
    return exp


def plan_units(exp: Path) -> tuple[list[str], list[str]]:
    """Fine-tune run names and evaluation keys (``run/eval``) of a planned experiment, in plan order."""
    from planner.folder.experiment import load_experiment

    planned = load_experiment(exp).plan
    return [r.name for r in planned.finetune_runs], [e.key for e in planned.evaluations]


def status_json(exp: Path, *extra: str) -> dict[str, Any]:
    """``plan-experiment status EXP --json`` parsed (exit 0, or 6 when a job failed)."""
    proc = cli("status", exp, "--json", *extra)
    assert proc.returncode in (0, 6), f"status exited {proc.returncode}: {proc.stderr}"
    return json.loads(proc.stdout)


def wait_final(exp: Path, timeout_s: float = 420.0, poll_s: float = 2.0) -> dict[str, Any]:
    """Refresh (``status --json``) until every submitted job is final; fail the test after ``timeout_s``.

    The timeout is generous because the one-node test cluster runs two 1-CPU jobs at a
    time and may be busy with other tests' jobs.

    Returns:
        The last report.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        report = status_json(exp)
        if report["all_final"]:
            return report
        if time.monotonic() > deadline:
            pytest.fail(f"{exp.name}: jobs not final after {timeout_s:g}s: {unit_states(report)}")
        time.sleep(poll_s)


def unit_states(report: Mapping[str, Any]) -> dict[str, str]:
    """Unit -> state of a ``status --json`` report."""
    return {u["unit"]: u["state"] for u in report["units"]}


def journal(exp: Path) -> dict[str, Any]:
    """The experiment's journal.json."""
    return json.loads((exp / "journal.json").read_text(encoding="utf-8"))


def journal_units(submissions: Sequence[Mapping[str, Any]]) -> list[str]:
    """Units of some journal submissions, in submission order."""
    return [t["unit"] for s in submissions for t in s["tasks"]]


def slurm_job_ids(exp: Path) -> list[str]:
    """Array/job ids of every Slurm submission in the journal (for cleanup with scancel)."""
    if not (exp / "journal.json").exists():
        return []
    return [s["job_id"] for s in journal(exp)["submissions"] if s["executor"] == "slurm"]


def block(text: str, name: str) -> str:
    """The text between a generated block's markers (both must be there exactly once)."""
    begin, end = _BEGIN.format(name), _END.format(name)
    assert text.count(begin) == 1 and text.count(end) == 1, f"markers of {name} not exactly once"
    return text.split(begin, 1)[1].split(end, 1)[0]


def table(text: str) -> list[dict[str, str]]:
    """Parse a markdown pipe table (header, separator, rows) into dicts; assert it is well formed."""
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    assert len(lines) >= 2, f"not a table: {text!r}"
    header = _cells(lines[0])
    assert re.fullmatch(r"\|(\s*-{3,}\s*\|)+", lines[1].replace(" ", "")), f"bad separator: {lines[1]!r}"
    rows = []
    for line in lines[2:]:
        cells = _cells(line)
        assert len(cells) == len(header), f"row has {len(cells)} cells, header {len(header)}: {line!r}"
        rows.append(dict(zip(header, cells)))
    return rows


def _cells(line: str) -> list[str]:
    assert line.startswith("|") and line.endswith("|"), f"not a table row: {line!r}"
    return [c.strip() for c in line[1:-1].split("|")]


def status_tables(exp: Path) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """The fine-tune and evaluation status tables of experiment_summary.md, parsed."""
    text = (exp / "experiment_summary.md").read_text(encoding="utf-8")
    return table(block(text, "finetune-status")), table(block(text, "eval-status"))


def eval_dirs(exp: Path) -> list[Path]:
    """Every evaluation folder of the experiment (``<run>/eval/<name>``)."""
    return sorted(p for p in exp.glob("*/eval/*") if (p / "eval.sh").is_file())


def poll(predicate: Callable[[], bool], timeout_s: float, poll_s: float = 0.5) -> bool:
    """Wait until ``predicate()`` is true; return whether it became true in time."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(poll_s)
    return True


def env_with_path(path: Sequence[Path]) -> dict[str, str]:
    """The current environment with PATH replaced by ``path`` (and CI flags kept)."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join(str(p) for p in path)
    return env


def replace_job_command(script: Path, shell: str) -> None:
    """Make a planned train.sh or eval.sh run ``shell`` instead of torchtune or the task.

    Everything else of the script stays: its job id, its log, its job-state.json and its
    refresh of the status tables as it ends. Tests of what happens around a job (many
    jobs ending at once, a failing job) need no model.
    """
    lines = script.read_text(encoding="utf-8").splitlines()
    at = next(i for i, ln in enumerate(lines)
              if ln.startswith(("printf 'plan-experiment: training", "printf 'plan-experiment: evaluating")))
    # The command runs from the line after the announcement to the exit-code capture (a
    # training command is wrapped by the recovery supervisor over several lines).
    end = next(i for i in range(at + 1, len(lines)) if lines[i].startswith("RC=${PIPESTATUS[0]}"))
    lines[at + 1:end] = [shell]
    script.write_text("\n".join(lines) + "\n", encoding="utf-8")


def run_folders(exp: Path) -> list[Path]:
    """Every fine-tune run folder of the experiment (the ones with a train.sh)."""
    return sorted(p.parent for p in exp.glob("*/train.sh"))


#: Seed 002's prior: a LoRA run of the same 1B model at 4.34 it/s, batch 4.
SEED_002_PRIOR = REPO / "tests" / "fixtures" / "logs" / "slurm-1001.out"


def seed_002_setup(example: Path) -> Path:
    """Seed 002's worked example in a copy of the example: a 1B-named model, 8,000 training samples, one GPU per
    job, and the 4.34 it/s prior log (a GPU run) in scratch_dir (beside unreadable logs); returns the spec's path."""
    shutil.copytree(example / "models" / EXAMPLE_MODEL, example / "models" / "Llama-3.2-1B-Instruct")
    subprocess.run([sys.executable, str(REPO / "tasks" / "capitalization" / "generate.py"), "--word-length", "8",
                    "--train-pct", "80", "--count", "10000", "--out", str(example / "data")], check=True, capture_output=True)
    scratch = example / "scratch" / "ck-out-happy-narwhal"
    scratch.mkdir(parents=True)
    shutil.copy(SEED_002_PRIOR, scratch / "slurm-12345.out")
    (scratch.parent / "garbage").mkdir()
    (scratch.parent / "garbage" / "slurm-1.out").write_bytes(b"\x00\xff\xfe binary \x00" * 50)
    (scratch.parent / "garbage" / "slurm-2.out").write_text("")
    (scratch.parent / "garbage" / "slurm-3.out").write_text(SEED_002_PRIOR.read_text()[:1800])  # cut mid-line
    settings = (example / "claude.local.md").read_text()
    settings = re.sub(r"(?m)^(\s*)scratch_dir: .*$", r"\1scratch_dir: scratch", settings)
    # Seed 002's researcher plans GPU jobs, and the prior ran on a GPU (device: cuda): a CPU plan
    # would rightly not take a GPU's speed.
    settings = re.sub(r"(?m)^(\s*)cpu_only: .*$", r"\1cpu_only: false", settings)
    settings = re.sub(r"(?m)^(\s*)gpus_per_node: .*$", r"\1gpus_per_node: 1", settings)
    (example / "claude.local.md").write_text(settings)
    spec = yaml.safe_load((example / "experiment.yaml").read_text())
    spec.update(models=["Llama-3.2-1B-Instruct"], dataset={"path": "words_8L_80P_10000.json"},
                factors={"lora_rank": [4]}, controls={"epochs": 2, "batch_size": 4, "max_seq_len": 512},
                resources={**spec.get("resources", {}), "gpus": 1})
    path = example / "spec.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path
