"""Large experiments are analysed in slices over forked workers: the same files, the same errors.

``analyze`` splits the planned evaluations into stretches of whole conditions; forked
children read and analyse theirs while this process reads the runs and the first
stretch. What a user sees must not depend on it: every file of ``analysis/``, the
Results block and the design log are byte-identical to one process's, a broken
``results.json`` in a child's stretch is the same one-line error, and a child that dies
leaves its stretch to the parent. The fork helper itself is tested at the end.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import re
import signal
import time
from datetime import datetime
from pathlib import Path

import pytest

from analyze_support import analyze_cli, make_experiment, tree_bytes, write_result
from planner.analyze import pipeline
from planner.analyze.tables import slice_bounds
from planner.folder.experiment import load_experiment
from planner.runtime import ChildDied, Forked
from planner.spec.errors import ConfigError
from planner.spec.runs import Plan

SPEC = {
    "name": "wide", "question": "Which rank and learning rate keep the base model's skills?", "models": ["m1", "m2"],
    "dataset": {"path": "data.json"},
    "factors": {"lora_rank": [4, 8, 16], "learning_rate": [1e-4, 3e-4]},
    "replicates": {"seeds": [1, 2, 3]}, "base_model_controls": True, "controls": {"epochs": 2},
    "evaluation": {"tasks": [{"name": "qa", "script": "eval.py"},
                             {"name": "cap", "script": "eval.py", "split": "validation"}], "epochs": "all"},
}


def _fill(exp: Path, plan: Plan) -> None:
    """Hand-made results with every case the tables treat apart: missing, failed, no predictions, other n.

    Most fine-tune runs also have a job state and a per-step metric log (runs.csv, loss.csv).
    """
    rnd = random.Random(11)
    for i, run in enumerate(r for r in plan.runs if not r.is_base):
        folder = exp / run.name
        (folder / "logs").mkdir(parents=True, exist_ok=True)
        state = "FAILED" if i % 11 == 4 else "COMPLETED"
        (folder / "job-state.json").write_text(json.dumps({
            "state": state, "started": "2025-01-01T00:00:00+00:00", "ended": f"2025-01-01T00:0{i % 10}:30+00:00"}),
            encoding="utf-8")
        if i % 5 != 2:
            steps = [f"Step {k} | loss:{2.0 / k + rnd.random() / 10:.4f} lr:0.0001 tokens_per_second_per_gpu:{900 + k}"
                     for k in range(1, 9)]
            (folder / "logs" / "log_1735689600.txt").write_text("\n".join(steps) + "\n", encoding="utf-8")
    for i, ev in enumerate(plan.evaluations):
        if i % 17 == 5:
            continue  # missing
        if i % 19 == 7:  # its job failed and left no results.json
            folder = exp / ev.run / "eval" / ev.name
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "job-state.json").write_text(json.dumps({"state": "FAILED"}), encoding="utf-8")
            continue
        correct = [rnd.random() < 0.6 for _ in range(30 if i % 23 == 0 else 40)]
        write_result(exp, ev.run, ev.name, correct, task=ev.task, epoch=ev.epoch,
                     split="validation" if ev.task == "cap" else "test", predictions=i % 7 != 3)


def _analysis(exp: Path, epoch: str, **kwargs: object) -> dict[str, bytes]:
    """Run the analysis; every file it wrote (summary and the log's new entries included)."""
    log = exp / "design-experiment.log"
    before = log.read_bytes()
    pipeline.run_analysis(load_experiment(exp), epoch=epoch, make_plots=False,  # type: ignore[arg-type]
                          now=lambda: datetime(2025, 1, 1), **kwargs)  # type: ignore[arg-type]
    files = tree_bytes(exp / "analysis")
    files["experiment_summary.md"] = (exp / "experiment_summary.md").read_bytes()
    files["log entries"] = log.read_bytes()[len(before):]
    return files


@pytest.fixture(scope="module")
def wide(tmp_path_factory: pytest.TempPathFactory) -> Path:
    exp = tmp_path_factory.mktemp("parallel") / "wide"
    _fill(exp, make_experiment(exp, SPEC))
    return exp


@pytest.mark.parametrize("epoch", ["last", "best", "all"])
@pytest.mark.parametrize("workers", [2, 3])
def test_slices_over_forked_workers_write_the_same_bytes_as_one_process(wide: Path, epoch: str, workers: int) -> None:
    one = _analysis(wide, epoch, parallel_from=10**9)
    many = _analysis(wide, epoch, parallel_from=1, workers=workers)
    assert sorted(many) == sorted(one)
    for name in one:
        assert many[name] == one[name], name
    # The fixture holds what the slices must get right across their seams.
    deltas = one["deltas.csv"].decode()
    # Every result is noise (60 % right at random): no verdict may claim a change.
    assert "refused: counts differ" in deltas and "no per-example outcomes" in deltas
    assert ",no detectable change\n" in deltas and ",mild\n" not in deltas and ",severe\n" not in deltas
    # Contrasts between models pair conditions that different slices read.
    assert ",contrast,model," not in one["findings.csv"].decode() and "\ncontrast,model," in one["findings.csv"].decode()
    assert b"failed" in one["evals.csv"] and b"missing" in one["evals.csv"]
    assert b",FAILED," in one["runs.csv"] and b",COMPLETED," in one["runs.csv"] and one["loss.csv"].count(b"\n") > 100


def test_a_child_that_dies_leaves_its_slice_to_this_process(wide: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    one = _analysis(wide, "last", parallel_from=10**9)
    parent = os.getpid()
    real = pipeline._slice_stages

    def dies_in_a_child(*args: object) -> object:
        if os.getpid() != parent:
            os._exit(9)  # as the kernel's out-of-memory killer would leave it: no result, no exception
        return real(*args)  # type: ignore[arg-type]

    def dies_after_its_cells(*args: object) -> object:
        stages = real(*args)  # type: ignore[arg-type]
        yield next(stages)
        if os.getpid() != parent:
            os._exit(9)
        yield from stages

    monkeypatch.setattr(pipeline, "_slice_stages", dies_in_a_child)
    assert _analysis(wide, "last", parallel_from=1, workers=2) == one
    monkeypatch.setattr(pipeline, "_slice_stages", dies_after_its_cells)
    assert _analysis(wide, "last", parallel_from=1, workers=3) == one


def _big(tmp_path: Path) -> tuple[Path, Plan]:
    """2,000+ evaluations (the CLI slices from PARALLEL_ANALYZE_EVALS), one results.json each."""
    spec = dict(SPEC, name="big", models=["m"], base_model_controls=False,
                factors={"lora_rank": list(range(1, 21)), "learning_rate": [1e-5 * (i + 1) for i in range(26)]},
                replicates={"seeds": [1, 2]}, evaluation={"tasks": [{"name": "qa", "script": "eval.py"},
                                                                   {"name": "cap", "script": "eval.py"}],
                                                         "epochs": "last"})
    exp = tmp_path / "big"
    plan = make_experiment(exp, spec)
    assert len(plan.evaluations) >= pipeline.PARALLEL_ANALYZE_EVALS
    for i, ev in enumerate(plan.evaluations):
        write_result(exp, ev.run, ev.name, accuracy=(i % 10) / 10, n=10, task=ev.task, epoch=ev.epoch)
    return exp, plan


def test_a_broken_results_json_in_a_childs_slice_is_the_same_one_line_error(tmp_path: Path) -> None:
    exp, plan = _big(tmp_path)
    assert len(slice_bounds(plan, [1.0, 1.0])) == 2
    last = plan.evaluations[-1]  # in the last slice: read by a child on any machine with two CPUs
    bad = exp / last.run / "eval" / last.name / "results.json"
    bad.write_text('{"accuracy": 0.5,', encoding="utf-8")
    proc = analyze_cli(exp, "--no-plots")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert f"{bad}: results.json is not valid JSON" in proc.stderr and "rerun the evaluation" in proc.stderr
    assert not (exp / "analysis").exists()
    assert not [p for p in exp.iterdir() if p.name.startswith(".")], "no hidden leftovers"
    # Fixed, the same command analyses every evaluation.
    bad.write_text(json.dumps({"accuracy": 0.5, "n": 10}), encoding="utf-8")
    proc = analyze_cli(exp, "--no-plots", "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["incomplete"] == []  # every evaluation is in, whatever the (never submitted) training jobs
    assert len(out["headline"]) == len(plan.evaluations) // 2  # one per condition x task (two seeds each)
    log = (exp / "design-experiment.log").read_text(encoding="utf-8")
    n = len(plan.evaluations)
    assert f"Result: {n} of {n} planned evaluations have results.json (0 failed, 0 missing)" in log


# -- where the slices are cut -------------------------------------------------------------------------------


def test_slices_are_cut_only_between_conditions_and_cover_the_plan_in_order(wide: Path) -> None:
    plan = load_experiment(wide).plan
    conditions = [re.sub(r"_seed\d+$", "", r.name) for r in plan.runs]
    for shares in ([1.0, 1.0], [1.15, 1.0], [1.0, 1.0, 1.0, 1.0], [1.0] * 7):
        pieces = slice_bounds(plan, shares)
        assert len(pieces) == len(shares)
        assert pieces[0].runs[0] == pieces[0].evals[0] == 0
        assert (pieces[-1].runs[1], pieces[-1].evals[1]) == (len(plan.runs), len(plan.evaluations))
        for a, b in zip(pieces, pieces[1:]):
            assert a.runs[1] == b.runs[0] and a.evals[1] == b.evals[0]
        for piece in pieces:
            start, stop = piece.runs
            if 0 < start < len(conditions):
                assert conditions[start] != conditions[start - 1], (shares, start)
            names = {r.name for r in plan.runs[start:stop]}
            assert {ev.run for ev in plan.evaluations[slice(*piece.evals)]} <= names  # its runs' evaluations
            assert sum(ev.run in names for ev in plan.evaluations) == piece.evals[1] - piece.evals[0]  # all of them
    # Two equal shares cut near the middle of the work (a run and each evaluation one unit), at a condition's end.
    half = slice_bounds(plan, [1.0, 1.0])[0]
    work = half.runs[1] + half.evals[1]
    assert abs(work - (len(plan.runs) + len(plan.evaluations)) / 2) <= 3 * (1 + 2 * 2)  # one condition's units
    assert slice_bounds(plan, [1.0]) == [((0, len(plan.runs)), (0, len(plan.evaluations)))]


def test_a_plan_whose_conditions_are_not_contiguous_is_one_slice(wide: Path) -> None:
    plan = load_experiment(wide).plan
    whole = [((0, len(plan.runs)), (0, len(plan.evaluations)))]
    runs = list(plan.runs)
    runs[0], runs[-1] = runs[-1], runs[0]
    assert slice_bounds(dataclasses.replace(plan, runs=runs), [1.0, 1.0]) == whole
    evals = list(plan.evaluations)
    evals[0], evals[-1] = evals[-1], evals[0]
    assert slice_bounds(dataclasses.replace(plan, evaluations=evals), [1.0, 1.0]) == whole


# -- the fork helper ------------------------------------------------------------------------------------------


def test_forked_returns_the_childs_value_computed_on_inherited_data() -> None:
    data = list(range(100_000))  # inherited by fork, not sent
    with Forked(lambda: (os.getpid(), sum(data), {"text": "é" * 70_000})) as child:
        pid, total, payload = child.result()
    assert pid != os.getpid() and total == sum(data) and payload == {"text": "é" * 70_000}


def test_forked_raises_the_childs_error_in_the_parent() -> None:
    def bad() -> None:
        raise ConfigError("x.json: not valid JSON; fix it", problems=["line 1"])

    with Forked(bad) as child, pytest.raises(ConfigError, match="x.json: not valid JSON") as info:
        child.result()
    assert info.value.problems == ["line 1"] and info.value.exit_code == 2


def test_forked_reports_a_child_that_died_without_a_result() -> None:
    with Forked(lambda: os.kill(os.getpid(), signal.SIGKILL)) as child, pytest.raises(ChildDied, match="without a result"):
        child.result()


def test_closing_kills_and_reaps_a_child_still_running() -> None:
    child = Forked(lambda: time.sleep(60))
    pid = child._pid
    assert pid is not None
    started = time.monotonic()
    child.close()
    assert time.monotonic() - started < 10
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # reaped: no zombie left behind


def test_a_staged_child_sends_each_value_as_soon_as_it_is_made(tmp_path: Path) -> None:
    flag = tmp_path / "read"

    def stages() -> object:
        yield "cells"
        deadline = time.monotonic() + 20
        while not flag.exists() and time.monotonic() < deadline:  # waits for the parent to have read the first
            time.sleep(0.01)
        yield flag.exists()
        raise ConfigError("x.json: not valid JSON; fix it")

    with Forked(stages, stages=True) as child:
        assert child.result() == "cells"
        flag.touch()
        assert child.result() is True
        with pytest.raises(ConfigError, match="x.json"):
            child.result()
