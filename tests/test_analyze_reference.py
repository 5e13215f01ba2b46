"""Every number ``analyze`` writes against an independent reference (numpy and scipy), on random experiments.

Random hand-made experiments (1-3 seeds, 2-3 ranks, a base model, one task, 30-120
examples, some evaluations without predictions) go through the real command; each cell's
mean, std and standard error, each evaluation's Wilson interval, each per-seed McNemar p,
each finding's effect and each adjusted p are recomputed here from the files alone.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import scipy.stats as st
from analyze_support import analyze_cli, make_experiment, read_csv, write_result


def _spec(seeds: int, ranks: int) -> dict:
    return {"name": "ref", "question": "Does LoRA rank change accuracy?", "models": ["m"],
            "dataset": {"path": "data.json"}, "factors": {"lora_rank": [4, 8, 16][:ranks]},
            "replicates": {"seeds": list(range(1, seeds + 1))}, "base_model_controls": True,
            "controls": {"epochs": 1},
            "evaluation": {"tasks": [{"name": "qa", "script": "tasks/qa/eval.py"}], "epochs": "last"}}


def _holm(p: list[float]) -> list[float]:
    m, order = len(p), np.argsort(p, kind="stable")
    out, running = [0.0] * len(p), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out


@pytest.mark.parametrize("case", range(12))
def test_every_number_matches_an_independent_reference(tmp_path: Path, case: int) -> None:
    rnd = random.Random(case)
    seeds, ranks, n = rnd.randint(1, 3), rnd.randint(2, 3), rnd.choice([30, 60, 120])
    exp = tmp_path / "ref"
    plan = make_experiment(exp, _spec(seeds, ranks))
    outcomes: dict[str, list[bool]] = {}
    for run in plan.runs:
        p = rnd.uniform(0.2, 0.8)
        correct = [rnd.random() < p for _ in range(n)]
        outcomes[run.name] = correct
        name = "qa" if run.is_base else "qa_epoch0"
        write_result(exp, run.name, name, correct, epoch=None if run.is_base else 0,
                     predictions=run.is_base or rnd.random() < 0.85)
    assert analyze_cli(exp, "--no-plots").returncode == 0
    analysis = exp / "analysis"
    condition = {r.name: (r.name[: -len(f"_seed{r.seed}")] if seeds > 1 and not r.is_base else r.name)
                 for r in plan.runs}
    # cells.csv: mean, sample std and standard error over seeds.
    for cell in read_csv(analysis / "cells.csv"):
        values = [sum(c) / n for run, c in outcomes.items() if condition[run] == cell["condition"]]
        assert float(cell["mean"]) == pytest.approx(np.mean(values), abs=1e-6)
        if len(values) > 1:
            assert float(cell["std"]) == pytest.approx(np.std(values, ddof=1), abs=1e-6)
            assert float(cell["sem"]) == pytest.approx(st.sem(values), abs=1e-6)
        assert 0.0 <= float(cell["ci_low"]) <= float(cell["mean"]) <= float(cell["ci_high"]) <= 1.0
    # evals.csv: the Wilson interval of k of n.
    for row in read_csv(analysis / "evals.csv"):
        k = sum(outcomes[row["run"]])
        ci = st.binomtest(k, n).proportion_ci(method="wilson")
        assert (float(row["ci_low"]), float(row["ci_high"])) == pytest.approx((ci.low, ci.high), abs=1e-6)
    # deltas.csv: exact McNemar (scipy's binomial test of the discordant pairs), Holm over the table.
    base = outcomes["m_base"]
    deltas = read_csv(analysis / "deltas.csv")
    tested = [d for d in deltas if d["p"] != ""]
    for d in tested:
        ft = outcomes[d["run"]]
        b = sum(1 for x, y in zip(base, ft) if x and not y)
        c = sum(1 for x, y in zip(base, ft) if y and not x)
        assert (int(d["base_only_correct"]), int(d["finetune_only_correct"])) == (b, c)
        assert float(d["p"]) == pytest.approx(st.binomtest(b, b + c).pvalue if b + c else 1.0, abs=1e-6)
    assert [float(d["p_adjusted"]) for d in tested] == pytest.approx(_holm([float(d["p"]) for d in tested]),
                                                                      abs=2e-6)
    # findings.csv: effects are mean paired differences; adjusted p is Holm over the tested findings.
    findings = read_csv(analysis / "findings.csv")
    by_condition: dict[str, list[list[bool]]] = {}
    for run, c in outcomes.items():
        by_condition.setdefault(condition[run], []).append(c)
    for f in (f for f in findings if f["kind"] == "vs base" and f["effect"] != ""):
        a = np.array(by_condition[f["a"]], dtype=float)
        assert float(f["effect"]) == pytest.approx(float((a - np.array(base, dtype=float)).mean()), abs=1e-6)
        assert float(f["ci_low"]) <= float(f["effect"]) <= float(f["ci_high"])
    done = [f for f in findings if f["p"] != ""]
    # p is written to 6 decimals: the adjusted one may differ by m times its rounding.
    assert [float(f["p_adjusted"]) for f in done] == pytest.approx(_holm([float(f["p"]) for f in done]), abs=1e-5)
    assert all(f["verdict"] == "untested" for f in findings if f["p"] == "")
    json.dumps(findings)  # plain text all the way
