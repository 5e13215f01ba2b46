"""How often ``analyze`` claims a change that is not there, and how often it finds one that is.

Simulates experiments through the real analysis (``planner.analyze.pipeline.run_analysis``
on experiment folders written as evaluations leave them: ``results.json`` and
``predictions.jsonl``), without plots:

- **null**: fine-tunes that change nothing. Each example has a latent chance of being right
  (Beta-distributed around a base accuracy drawn from 0.1-0.9); the base model and every
  fine-tuned seed answer each example independently with that chance. n from 50 to 1,000
  examples, 1-5 seeds, 2-4 LoRA ranks (so contrasts, trends and comparisons with the base
  model all enter the family).
- **power**: the same with every fine-tune 10 points better (n = 200, 3 seeds, 2 ranks).

Prints the share of flagged findings (any verdict that claims a change), the share of
experiments with at least one false claim (the family-wise error rate Holm controls), the
same for the per-seed rows of deltas.csv, and the share of real effects found, next to the
documented level (0.05) and the target (>= 80 %).

    python benchmarks/null_findings.py [--experiments 1000] [--power 200] [--correction holm|bh]
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from planner.analyze.pipeline import run_analysis  # noqa: E402
from planner.analyze.tables import Thresholds  # noqa: E402
from planner.folder.experiment import load_experiment  # noqa: E402

#: Verdicts that claim a change (everything but "no detectable ..." and "untested").
QUIET = {"no detectable change", "no detectable difference", "no detectable trend", "untested"}

SUMMARY = ("# Experiment: sim\n\n## Status\n\n### Evaluations\n<!-- plan-experiment:begin eval-status -->\n| x |\n"
           "<!-- plan-experiment:end eval-status -->\n")


@dataclass
class Tally:
    """Counts over simulated experiments."""

    experiments: int = 0
    findings: int = 0
    flagged: int = 0
    with_false_claim: int = 0
    delta_rows: int = 0
    delta_flagged: int = 0
    experiments_delta_claim: int = 0
    real: int = 0
    found: int = 0


def _write_eval(folder: Path, run: str, correct: list[bool], epoch: int | None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    n = len(correct)
    acc = sum(correct) / n
    (folder / "predictions.jsonl").write_text(
        "".join(json.dumps({"id": i, "input": f"q{i}", "target": "a", "correct": ok}) + "\n"
                for i, ok in enumerate(correct)), encoding="utf-8")
    (folder / "results.json").write_text(json.dumps({
        "task": "qa", "run": run, "epoch": epoch, "model": "m", "checkpoint": "x", "split": "test", "n": n,
        "accuracy": acc, "metrics": {"exact_match": acc}, "duration_s": 1.0}), encoding="utf-8")


def simulate(folder: Path, rnd: random.Random, n: int, seeds: int, ranks: int, effect: float) -> None:
    """Write one simulated experiment into ``folder`` (every fine-tune ``effect`` better than the base)."""
    levels = [4, 8, 16, 32][:ranks]
    spec = {"name": "sim", "question": "Does LoRA rank change accuracy?", "models": ["m"],
            "dataset": {"path": "data.json"}, "factors": {"lora_rank": levels},
            "replicates": {"seeds": list(range(1, seeds + 1))}, "base_model_controls": True,
            "controls": {"epochs": 1},
            "evaluation": {"tasks": [{"name": "qa", "script": "tasks/qa/eval.py"}], "epochs": "last"}}
    folder.mkdir(parents=True)
    (folder / "experiment.yaml").write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    (folder / "experiment_summary.md").write_text(SUMMARY, encoding="utf-8")
    (folder / "design-experiment.log").write_text("", encoding="utf-8")
    mean = rnd.uniform(0.1, 0.9)
    # Examples differ in difficulty: Beta with the base accuracy as its mean.
    chance = [rnd.betavariate(2 * mean, 2 * (1 - mean)) for _ in range(n)]
    _write_eval(folder / "m_base" / "eval" / "qa", "m_base", [rnd.random() < p for p in chance], None)
    # A shift of `effect` in the mean that keeps every chance inside [0, 1].
    shifted = [p + effect * (1 - p) / (1 - mean) if effect else p for p in chance]
    for rank in levels:
        for seed in range(1, seeds + 1):
            run = f"m_rank{rank}" + (f"_seed{seed}" if seeds > 1 else "")
            _write_eval(folder / run / "eval" / "qa_epoch0", run, [rnd.random() < min(1.0, p) for p in shifted], 0)


def analyse(folder: Path, correction: str) -> Any:
    """The real analysis of one folder (no plots)."""
    exp = load_experiment(folder)
    return run_analysis(exp, thresholds=Thresholds(5.0, 20.0, 0.05, correction),  # type: ignore[arg-type]
                        make_plots=False, now=lambda: datetime(2025, 1, 1)).analysis


def run(experiments: int, power: int, correction: str, seed: int = 2025, root: Path | None = None,
        sizes: tuple[int, ...] = (50, 100, 200, 500, 1000), max_seeds: int = 5) -> tuple[Tally, Tally]:
    """Simulate ``experiments`` null and ``power`` real-effect experiments; their tallies.

    ``sizes`` are the example counts a null experiment draws from, ``max_seeds`` its most seeds.
    """
    rnd = random.Random(seed)
    base = Path(tempfile.mkdtemp(prefix="null-findings-", dir=root))
    null, real = Tally(), Tally()
    try:
        for i in range(experiments):
            folder = base / f"null{i}"
            simulate(folder, rnd, rnd.choice(sizes), rnd.randint(1, max_seeds), rnd.randint(2, 4), 0.0)
            a = analyse(folder, correction)
            claims = [f for f in a.findings if f.verdict not in QUIET]
            null.experiments += 1
            null.findings += len(a.findings)
            null.flagged += len(claims)
            null.with_false_claim += bool(claims)
            flags = [f for f in a.tables["deltas"].column("flag") if f is not None]
            null.delta_rows += len(flags)
            claimed = sum(f not in QUIET for f in flags)
            null.delta_flagged += claimed
            null.experiments_delta_claim += bool(claimed)
            shutil.rmtree(folder)
        for i in range(power):
            folder = base / f"power{i}"
            simulate(folder, rnd, 200, 3, 2, 0.10)
            a = analyse(folder, correction)
            base_findings = [f for f in a.findings if f.kind == "vs base"]
            real.experiments += 1
            real.real += len(base_findings)
            real.found += sum(f.verdict == "improved" for f in base_findings)
            shutil.rmtree(folder)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return null, real


def main() -> None:
    """Print the figures next to the documented level and the power target."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--experiments", type=int, default=1000)
    parser.add_argument("--power", type=int, default=200)
    parser.add_argument("--correction", choices=["holm", "bh"], default="holm")
    args = parser.parse_args()
    started = time.perf_counter()
    null, real = run(args.experiments, args.power, args.correction)
    took = time.perf_counter() - started
    print(f"null experiments: {null.experiments} ({null.findings} findings), correction {args.correction}, "
          "alpha 0.05")
    print(f"  findings flagged:                   {null.flagged / max(null.findings, 1):7.2%}   (documented: <= 5 %)")
    print(f"  experiments with a false claim:     {null.with_false_claim / max(null.experiments, 1):7.2%}   "
          f"({'family-wise error rate, Holm: <= 5 %' if args.correction == 'holm' else 'BH bounds the FDR; under the null every claim is false, so this is the FDR: <= 5 %'})")
    print(f"  deltas.csv rows flagged:            {null.delta_flagged / max(null.delta_rows, 1):7.2%}   "
          f"({null.delta_rows} per-seed rows; documented: <= 5 %)")
    print(f"  experiments with a flagged delta:   {null.experiments_delta_claim / max(null.experiments, 1):7.2%}   "
          "(its own family: <= 5 %)")
    print(f"real effect of 10 points, n = 200, 3 seeds, 2 ranks: {real.experiments} experiments")
    print(f"  found (verdict improved):           {real.found / max(real.real, 1):7.2%}   (target: >= 80 %)")
    print(f"took {took:.0f} s")


if __name__ == "__main__":
    main()
