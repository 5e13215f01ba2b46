"""Findings are tested claims: paired tests against scipy, pairing, corrections, and simulated experiments.

The simulated experiments run the real analysis (``benchmarks/null_findings.py``, which
``docs/benchmarks.md`` records at full size) on folders written as evaluations leave them.
"""

from __future__ import annotations

import importlib.util
import json
import random
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.stats as st
from analyze_support import analyze_cli, make_experiment, read_csv, write_result

from planner.analyze.findings import question_factors
from planner.analyze.inference import adjust, bootstrap_mean_ci, paired_test, rng_for, sign_flip_p
from planner.analyze.observe import Examples, align
from planner.analyze.stats import binom_cdf

ROOT = Path(__file__).resolve().parent.parent


def _benchmark():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("null_findings", ROOT / "benchmarks" / "null_findings.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["null_findings"] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


# --- the arithmetic against scipy -------------------------------------------------------

@pytest.mark.parametrize("seed", range(5))
def test_exact_sign_flip_equals_scipys_exact_permutation_test(seed: int) -> None:
    rng = np.random.default_rng(seed)
    d = rng.normal(0.2, 1.0, 11)
    ref = st.permutation_test((d,), np.mean, permutation_type="samples", n_resamples=np.inf,
                              alternative="two-sided").pvalue
    assert sign_flip_p(d, rng) == pytest.approx(ref, rel=1e-12)


def test_random_sign_flips_agree_with_scipy_within_monte_carlo_error() -> None:
    rng = np.random.default_rng(3)
    d = rng.normal(0.1, 1.0, 300)
    ref = st.permutation_test((d,), np.mean, permutation_type="samples", n_resamples=99_999,
                              alternative="two-sided", random_state=1).pvalue
    assert abs(sign_flip_p(d, rng_for("x")) - ref) < 0.015


def test_one_seed_binary_comparison_is_exact_mcnemar_as_scipys_binomial_test() -> None:
    a = np.array([[1] * 30 + [0] * 20], dtype=float)
    b = np.array([[1] * 22 + [0] * 8 + [1] * 3 + [0] * 17], dtype=float)
    t = paired_test(a, b, "k", True)
    b_only, a_only = t.discordant or (0, 0)
    assert (b_only, a_only) == (3, 8) and t.test == "exact McNemar"
    assert t.p == pytest.approx(st.binomtest(3, 11, 0.5).pvalue, rel=1e-9)
    assert binom_cdf(3, 11) == pytest.approx(st.binom.cdf(3, 11, 0.5), rel=1e-12)


@pytest.mark.parametrize("seed", range(4))
def test_holm_and_benjamini_hochberg_match_their_definitions(seed: int) -> None:
    p = list(np.random.default_rng(seed).uniform(0, 0.1, 25))
    assert adjust(p, "bh") == pytest.approx(list(st.false_discovery_control(p, method="bh")), rel=1e-12)
    # Holm by its definition: the i-th smallest times (m - i), made monotone, capped at 1.
    order = np.argsort(p)
    expected = np.empty(len(p))
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p) - rank) * p[i]))
        expected[i] = running
    assert adjust(p, "holm") == pytest.approx(list(expected), rel=1e-12)


def test_the_bootstrap_interval_covers_the_mean_at_about_95_percent() -> None:
    rng = np.random.default_rng(7)
    hits = 0
    for k in range(200):
        x = (rng.uniform(size=(1, 200)) < 0.4).astype(float)
        lo, hi = bootstrap_mean_ci(x, rng_for(f"c{k}"))
        hits += lo <= 0.4 <= hi
    assert 0.9 <= hits / 200 <= 0.99


def test_one_seed_intervals_exist_stay_in_range_and_are_never_zero_width(tmp_path: Path) -> None:
    from test_analyze import FORGET
    exp = tmp_path / "one"
    make_experiment(exp, FORGET)
    write_result(exp, "m_base", "qa", [True] * 50)
    write_result(exp, "m_rank8", "qa_epoch0", [True] * 49 + [False], epoch=0)
    write_result(exp, "m_rank16", "qa_epoch0", accuracy=0.5, n=50, epoch=0, predictions=False)
    assert analyze_cli(exp, "--no-plots").returncode == 0
    cells = {c["condition"]: c for c in read_csv(exp / "analysis" / "cells.csv")}
    for name in ("m_base", "m_rank8", "m_rank16"):
        lo, hi = float(cells[name]["ci_low"]), float(cells[name]["ci_high"])
        assert 0.0 <= lo < hi <= 1.0, (name, lo, hi)
    assert cells["m_rank16"]["ci_method"] == "Wilson (1 seed, test set only)"


# --- pairing ----------------------------------------------------------------------------

def _examples(records: list[tuple[str, str, bool]], ids: bool = False) -> Examples:
    return Examples(tuple(str(i) for i in range(len(records))) if ids else None,
                    tuple(f"{q}\x1f{t}" for q, t, _ in records), {"correct": tuple(float(ok) for *_, ok in records)})


def test_a_shuffled_copy_with_repeated_inputs_pairs_with_itself() -> None:
    # Repeated inputs with different targets: pairing by input alone mispaired these.
    records = [(f"q{i % 10}", f"t{i}", i % 3 == 0) for i in range(50)]
    shuffled = records[:]
    random.Random(1).shuffle(shuffled)
    paired = align(_examples(records), _examples(shuffled))
    assert not isinstance(paired, str)
    ia, ib, how = paired
    a = _examples(records).values["correct"]
    b = _examples(shuffled).values["correct"]
    assert how == "input and target" and sum(a[i] != b[j] for i, j in zip(ia, ib)) == 0


def test_ids_pair_first_and_a_mismatch_is_reported() -> None:
    a = Examples(("x", "y"), ("1\x1f1", "2\x1f2"), {"correct": (1.0, 0.0)})
    b = Examples(("y", "x"), ("2\x1f2", "1\x1f1"), {"correct": (0.0, 1.0)})
    assert align(a, b) == ([0, 1], [1, 0], "id")
    c = Examples(("x", "z"), ("1\x1f1", "3\x1f3"), {"correct": (1.0, 0.0)})
    assert align(a, c) == "refused: the example ids differ (2 not in both)"
    d = Examples(None, ("1\x1f1", "9\x1f9"), {"correct": (1.0, 0.0)})
    assert align(Examples(None, a.texts, a.values), d) == "refused: the evaluated inputs differ"


def test_an_f1_headline_is_tested_on_per_example_f1_never_on_correct(tmp_path: Path) -> None:
    from test_analyze import FORGET
    exp = tmp_path / "f1"
    make_experiment(exp, FORGET)
    for run, name, epoch, f1s in (("m_base", "qa", None, [0.5] * 40), ("m_rank8", "qa_epoch0", 0, [0.9] * 40)):
        folder = exp / run / "eval" / name
        folder.mkdir(parents=True)
        (folder / "predictions.jsonl").write_text("".join(
            json.dumps({"input": f"q{i}", "target": "a", "correct": i % 2 == 0, "f1": v}) + "\n"
            for i, v in enumerate(f1s)), encoding="utf-8")
        mean = sum(f1s) / len(f1s)
        (folder / "results.json").write_text(json.dumps({"task": "qa", "run": run, "epoch": epoch, "n": 40,
                                                         "accuracy": 0.5, "metrics": {"f1": mean}}), encoding="utf-8")
    assert analyze_cli(exp, "--no-plots", "--metric", "f1").returncode == 0
    row = {d["run"]: d for d in read_csv(exp / "analysis" / "deltas.csv")}["m_rank8"]
    assert row["test"] == "paired sign-flip permutation" and row["base_only_correct"] == ""
    assert float(row["p"]) <= 1e-4  # the smallest p of 9,999 random sign vectors
    assert analyze_cli(exp, "--no-plots", "--metric", "exact_match").returncode == 0


def test_lower_is_better_metrics_call_a_drop_an_improvement(tmp_path: Path) -> None:
    from test_analyze import FORGET
    spec = json.loads(json.dumps(FORGET))
    exp = tmp_path / "loss"
    make_experiment(exp, spec)
    rnd = random.Random(0)
    for run, name, epoch, centre in (("m_base", "qa", None, 1.28), ("m_rank8", "qa_epoch0", 0, 0.84)):
        folder = exp / run / "eval" / name
        folder.mkdir(parents=True)
        values = [max(0.0, rnd.gauss(centre, 0.3)) for _ in range(80)]
        (folder / "predictions.jsonl").write_text("".join(
            json.dumps({"id": i, "input": f"q{i}", "target": "a", "loss": v}) + "\n" for i, v in enumerate(values)),
            encoding="utf-8")
        (folder / "results.json").write_text(json.dumps({"task": "qa", "run": run, "epoch": epoch, "n": 80,
                                                         "metrics": {"loss": sum(values) / 80}}), encoding="utf-8")
    assert analyze_cli(exp, "--no-plots", "--metric", "loss").returncode == 0
    found = {(f["kind"], f["a"]): f for f in read_csv(exp / "analysis" / "findings.csv")}
    assert found[("vs base", "m_rank8")]["verdict"] == "improved"


def test_the_question_names_its_factors() -> None:
    assert question_factors("Does LoRA rank change accuracy?", ["model", "lora_rank"]) == (["lora_rank"], True)
    assert question_factors("How do model size and learning rate interact?",
                            ["model", "learning_rate", "train_samples"]) == (["model", "learning_rate"], True)
    assert question_factors("What works?", ["lora_rank"]) == (["lora_rank"], False)


# --- simulated experiments through the real analysis ------------------------------------

def test_fine_tunes_that_change_nothing_are_almost_never_flagged_and_real_effects_are_found(tmp_path: Path) -> None:
    bench = _benchmark()
    # Smaller than the benchmark (which draws up to 1,000 examples and 5 seeds) to keep the suite quick.
    null, real = bench.run(experiments=100, power=25, correction="holm", seed=7, root=tmp_path,
                           sizes=(50, 100, 200), max_seeds=3)
    # Holm keeps the chance of any false claim in an experiment at or below 5 %: 100 experiments
    # at 5 % give more than 12 with probability under 0.3 %. The old point-estimate flags claimed
    # a change in 32-87 % of such evaluations.
    assert null.with_false_claim <= st.binom.ppf(0.997, 100, 0.05), null
    assert null.flagged / null.findings <= 0.05 and null.delta_flagged / null.delta_rows <= 0.05, null
    # A real 10-point gain at n = 200 and 3 seeds (power about 80 % in the full benchmark).
    assert real.found / real.real >= 0.6, real


# --- seed 004: MT-Bench before and after ------------------------------------------------

def _mt_bench(exp: Path, run: str, name: str, epoch: int | None, scores: list[float]) -> None:
    folder = exp / run / "eval" / name
    folder.mkdir(parents=True)
    (folder / "predictions.jsonl").write_text("".join(
        json.dumps({"id": f"mt{i + 81}", "input": f"question {i}", "target": None, "mt_bench": v}) + "\n"
        for i, v in enumerate(scores)), encoding="utf-8")
    (folder / "results.json").write_text(json.dumps({
        "task": "mt_bench", "run": run, "epoch": epoch, "n": len(scores),
        "metrics": {"mt_bench": sum(scores) / len(scores)}}), encoding="utf-8")


def _scores(mean: float, n: int, rnd: random.Random) -> list[float]:
    """n per-question scores in [1, 10] averaging exactly ``mean``."""
    raw = [min(10.0, max(1.0, rnd.gauss(mean, 1.2))) for _ in range(n)]
    shift = mean - sum(raw) / n
    out = [v + shift for v in raw]
    out[-1] += mean * n - sum(out)
    return out


@pytest.mark.parametrize(("before", "after", "spread", "expected"), [
    (2.0357, 1.4924, 1.0, "severe"),
    (2.6565, 2.4430, 1.0, "mild"),
    # The same -8 % lost on three questions alone: three paired differences cannot tell it from chance.
    (2.6565, 2.4430, 9.0, "no detectable change"),
])
def test_seed_004_forgetting_gets_a_verdict_with_an_interval(tmp_path: Path, before: float, after: float,
                                                             spread: float, expected: str) -> None:
    """Seed 004's two experiments, 80 questions each; ``spread`` is the most one question loses."""
    spec = {"name": "sft", "question": "Does the fine-tune forget MT-Bench?", "models": ["m"],
            "dataset": {"path": "data.json"}, "factors": {"lora_rank": [8]}, "replicates": {"seeds": [1]},
            "base_model_controls": True, "controls": {"epochs": 1},
            "evaluation": {"tasks": [{"name": "mt_bench", "script": "eval.py",
                                      "metrics": {"mt_bench": {"higher_is_better": True, "kind": "unbounded"}}}],
                           "epochs": "last"}}
    exp = tmp_path / "sft"
    make_experiment(exp, spec)
    rnd = random.Random(4)
    base = _scores(before, 80, rnd)
    # The fine-tune loses on some questions (down to the minimum, 1.0) and keeps the others.
    fine = base[:]
    lost = (before - after) * 80
    for i in sorted(range(80), key=lambda i: -base[i]):
        if lost <= 1e-12:
            break
        drop = min(base[i] - 1.0, lost, spread)
        fine[i] = base[i] - drop
        lost -= drop
    _mt_bench(exp, "m_base", "mt_bench", None, base)
    _mt_bench(exp, "m_rank8", "mt_bench_epoch0", 0, fine)
    assert analyze_cli(exp, "--no-plots", "--metric", "mt_bench").returncode == 0
    f = {(r["kind"], r["a"]): r for r in read_csv(exp / "analysis" / "findings.csv")}[("vs base", "m_rank8")]
    assert f["verdict"] == expected
    assert float(f["effect"]) == pytest.approx(after - before, abs=1e-6)
    assert float(f["ci_low"]) < after - before < float(f["ci_high"]) <= 0
    assert f["test"] == "paired sign-flip permutation" and f["ci_basis"] == "examples only (1 seed)"


# --- factorial designs: main effects and interactions -------------------------------------

def test_a_two_by_two_design_gets_main_effects_and_its_interaction(tmp_path: Path) -> None:
    spec = {"name": "fact", "question": "Do LoRA rank and learning rate interact?", "models": ["m"],
            "dataset": {"path": "data.json"}, "factors": {"lora_rank": [4, 16], "learning_rate": [1e-4, 1e-3]},
            "replicates": {"seeds": [1]}, "base_model_controls": False, "controls": {"epochs": 1},
            "evaluation": {"tasks": [{"name": "qa", "script": "eval.py"}], "epochs": "last"}}
    exp = tmp_path / "fact"
    make_experiment(exp, spec)
    # Rank 16 helps only at the higher learning rate: 60 more of 200 right there, nothing elsewhere.
    for run in ("m_rank4_lr1e-4", "m_rank16_lr1e-4", "m_rank4_lr0.001"):
        write_result(exp, run, "qa_epoch0", [i < 100 for i in range(200)], epoch=0)
    write_result(exp, "m_rank16_lr0.001", "qa_epoch0", [i < 160 for i in range(200)], epoch=0)
    assert analyze_cli(exp, "--no-plots").returncode == 0
    found = {(f["kind"], f["factor"]): f for f in read_csv(exp / "analysis" / "findings.csv")}
    main = found[("main effect", "lora_rank")]
    assert (main["a"], main["b"], main["verdict"]) == ("lora_rank=16", "lora_rank=4", "lora_rank=16 better")
    assert float(main["effect"]) == pytest.approx(0.15) and main["ci_basis"] == "examples (seed means)"
    inter = found[("interaction", "lora_rank x learning_rate")]
    assert inter["verdict"] == "interaction" and float(inter["effect"]) == pytest.approx(0.3)
    assert float(inter["ci_low"]) > 0 and inter["rel_pct"] == ""
    block = (exp / "experiment_summary.md").read_text(encoding="utf-8")
    assert "- interactions (does one factor's effect depend on another's level?):" in block
