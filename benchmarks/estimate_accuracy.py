"""How good are training-time estimates? Leave-one-out over real tiny CPU fine-tunes.

Plans 8 runs of the shipped tiny model that vary batch size, max_seq_len, dataset size and
epochs, trains each for real (one at a time, so timings do not disturb each other), then
estimates every run from the 7 others exactly as `plan-experiment estimate` would (their
slurm-*.out logs and job-state.json wall times) and compares with the measured wall time.

Prints a table and the median absolute percentage error next to the baseline of seed 002's
method (the it/s of one prior run times samples/batch/epochs, no normalisation, no
overhead). Target: median error <= 15 %.

    .venv/bin/python benchmarks/estimate_accuracy.py [--keep DIR]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from planner.estimate.prior_scan import scan  # noqa: E402
from planner.estimate.run_folder import job_wall_seconds  # noqa: E402
from planner.estimate.estimators import RunQuery, training_time  # noqa: E402

SPEC = {
    "name": "estimate_accuracy",
    "question": "How accurate are training-time estimates?",
    "models": ["tiny-llama-cap"],
    "dataset": {"path": "words_5L_80P_6000.json"},
    "factors": {"batch_size": [4, 16], "train_samples": [1600, 4800]},
    "paired": {"max_seq_len": [32, 64], "epochs": [1, 2]},
    "replicates": {"seeds": [42]},
    "base_model_controls": False,
    "controls": {"learning_rate": 3e-3, "num_warmup_steps": 5},
    "evaluation": {"tasks": [], "epochs": "last"},
    "resources": {"gpus": 0, "time": "auto"},
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keep", type=Path, help="work here and keep the runs (default: a temporary folder)")
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="estimate-accuracy-"))
    example = work / "example"
    if example.exists():
        shutil.rmtree(example)
    shutil.copytree(ROOT / "examples" / "capitalization", example)
    settings = (example / "claude.local.md").read_text().replace("../../experiments", "experiments")
    (example / "claude.local.md").write_text(settings)
    subprocess.run([sys.executable, str(ROOT / "tasks" / "capitalization" / "generate.py"), "--word-length", "5",
                    "--train-pct", "80", "--count", "6000", "--out", str(example / "data")], check=True, capture_output=True)
    (example / "spec.yaml").write_text(yaml.safe_dump(SPEC, sort_keys=False))
    cli = Path(sys.executable).parent / "plan-experiment"
    subprocess.run([str(cli), "new", "--spec", str(example / "spec.yaml"), "--yes"], check=True, capture_output=True)
    exp = example / "experiments" / "estimate_accuracy"
    runs = sorted(p.parent for p in exp.glob("*/train.sh"))
    print(f"training {len(runs)} runs one at a time in {exp}")
    for run in runs:
        t0 = time.perf_counter()
        subprocess.run(["bash", str(run / "train.sh")], check=True, capture_output=True)
        print(f"  {run.name:45s} {time.perf_counter() - t0:6.1f} s")
    priors = {Path(p.name).parent.name: p for p in scan([exp]).priors()}
    rows = []
    for run in runs:
        setup = yaml.safe_load((run / "setup_finetune.yaml").read_text())
        actual = job_wall_seconds(run / "job-state.json")
        others = [p for name, p in priors.items() if name != run.name]
        query = RunQuery.from_settings("tiny-llama-cap", priors[run.name].param_count, setup, 4800)
        ours = training_time(query, others).figure
        # Baseline: seed 002's method with the first other prior, as people do it by hand.
        base_prior = others[0]
        baseline = query.train_samples / query.batch_size / (base_prior.it_per_s or 1) * query.epochs
        rows.append((run.name, actual, ours, baseline))
    print()
    print(f"{'run':45s} {'actual':>8s} {'estimate':>9s} {'error':>7s} {'baseline':>9s} {'error':>7s}")
    for name, actual, ours, baseline in rows:
        print(f"{name:45s} {actual:7.1f}s {ours:8.1f}s {100 * (ours - actual) / actual:+6.0f}% "
              f"{baseline:8.1f}s {100 * (baseline - actual) / actual:+6.0f}%")
    ape = [abs(o - a) / a * 100 for _, a, o, _ in rows]
    base_ape = [abs(b - a) / a * 100 for _, a, _, b in rows]
    print()
    print(f"median absolute percentage error: plan-experiment {statistics.median(ape):.1f}%   "
          f"baseline (seed-002 it/s x samples, one prior) {statistics.median(base_ape):.1f}%")
    print(f"target <= 15%: {'met' if statistics.median(ape) <= 15 else 'NOT met'}")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
