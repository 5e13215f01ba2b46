"""How good are job wall-time estimates? Leave-one-out over 12 real tiny CPU fine-tunes.

Plans 12 runs of the shipped tiny model that vary batch size (4, 8, 16), LoRA rank (4,
16), and, paired, dataset size (20,000 / 40,000 samples), max_seq_len (32 / 64) and epochs
(2 / 1); trains each for real, one at a time (so timings do not disturb each other),
through its own `train.sh` (which writes `job-state.json`, the job's wall time). Then
estimates every run from the 11 others exactly as `plan-experiment new` and `estimate`
would (their slurm-*.out logs and job-state.json, one PriorPool, `training_time` for the
loop and `job_time` for start-up + loop + saves) and compares with the measured job wall
time. Each training loop lasts at least 30 s on a quiet 2-core machine; runs whose loop
was shorter are flagged.

Prints a table, the median and worst absolute error of the job wall time, and how often
the Slurm time request built on the estimate would have been too short (with the
planner's 15-minute floor, and with the +50 % margin alone). Baseline: the loop estimate
alone (what the planner predicted before job wall time existed), and seed 002's method
(one prior's it/s x samples / batch x epochs). Targets: median <= 10 %, no request too short.

    .venv/bin/python benchmarks/estimate_accuracy.py [--design paired|one-at-a-time] [--keep DIR] [--reuse]
"""

from __future__ import annotations

import argparse
import json
import os
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

from planner.estimate.costmodel import TokenStats  # noqa: E402
from planner.estimate.estimators import PriorPool, RunQuery, job_time, training_time  # noqa: E402
from planner.estimate.prior_scan import scan  # noqa: E402
from planner.estimate.run_folder import job_wall_seconds  # noqa: E402
from planner.spec.hardware import CPU  # noqa: E402
from planner.spec.units import slurm_time, slurm_time_seconds  # noqa: E402
from planner.torchtune.shapes import model_shape_from_config  # noqa: E402

SPEC = {
    "name": "estimate_accuracy",
    "question": "How accurate are job wall-time estimates?",
    "models": ["tiny-llama-cap"],
    "dataset": {"path": "words_8L_80P_50000.json"},
    "factors": {"batch_size": [4, 8, 16], "lora_rank": [4, 16]},
    "paired": {"train_samples": [20000, 40000], "max_seq_len": [32, 64], "epochs": [2, 1]},
    "replicates": {"seeds": [42]},
    "base_model_controls": False,
    "controls": {"learning_rate": 3e-3, "num_warmup_steps": 5},
    "evaluation": {"tasks": [], "epochs": "last"},
    "resources": {"gpus": 0, "time": "auto"},
}
#: The held-out design: one knob at a time away from a base run (batch 8, rank 8, no
#: accumulation, 20,000 samples, unpacked), as a researcher's next experiment would differ from
#: their last: batch 4 and 16, gradient accumulation 2 and 4, rank 4 and 32, 10,000 and 40,000
#: samples, and the sequence length where it matters: packed into 64- and 128-token rows. Each
#: is its own experiment (paired levels may not repeat), one run each.
BASE = {"batch_size": 8, "gradient_accumulation_steps": 1, "lora_rank": 8, "train_samples": 20000,
        "packed": False, "max_seq_len": 64, "epochs": 1}
ONE_AT_A_TIME = [
    ("base", {}), ("batch4", {"batch_size": 4}), ("batch16", {"batch_size": 16}),
    ("accum2", {"gradient_accumulation_steps": 2}), ("accum4", {"gradient_accumulation_steps": 4}),
    ("rank4", {"lora_rank": 4}), ("rank32", {"lora_rank": 32}),
    ("samples10k", {"train_samples": 10000}), ("samples40k", {"train_samples": 40000}),
    ("packed64", {"packed": True}), ("packed128", {"packed": True, "max_seq_len": 128}),
]


def _one_at_a_time_specs() -> list[dict]:
    specs = []
    for i, (label, change) in enumerate(ONE_AT_A_TIME):
        specs.append({**SPEC, "name": f"held_out_{i:02d}_{label}", "factors": {}, "paired": {},
                      "controls": {**SPEC["controls"], **BASE, **change}})
    return specs


MIN_LOOP_S = 30.0
#: Examples in the generated dataset's train split (80 % of 50,000).
TRAIN_SPLIT = 40000


def _plan(work: Path, specs: list[dict]) -> Path:
    """The example copied under ``work`` with a 50,000-word dataset, each spec planned into its experiments folder."""
    example = work / "example"
    if example.exists():
        shutil.rmtree(example)
    shutil.copytree(ROOT / "examples" / "capitalization", example)
    settings = (example / "claude.local.md").read_text()
    settings = settings.replace("../../experiments", "experiments").replace("../../tests/fixtures/logs/real", "experiments")
    (example / "claude.local.md").write_text(settings)
    subprocess.run([sys.executable, str(ROOT / "tasks" / "capitalization" / "generate.py"), "--word-length", "8",
                    "--train-pct", "80", "--count", "50000", "--out", str(example / "data")], check=True, capture_output=True)
    cli = Path(sys.executable).parent / "plan-experiment"
    # A private cache: the benchmark's runs must not become priors of the user's plans.
    env = {**os.environ, "XDG_CACHE_HOME": str(work / "cache"), "XDG_DATA_HOME": str(work / "data-home")}
    for spec in specs:
        (example / "spec.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
        subprocess.run([str(cli), "new", "--spec", str(example / "spec.yaml"), "--yes"], check=True, capture_output=True,
                       env=env)
    return example / "experiments"


def _label(run: Path) -> str:
    """A run as the table shows it: its name, or its experiment's where every run has the model's name."""
    return run.parent.name if run.parent.name.startswith("held_out_") else run.name


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keep", type=Path, help="work here and keep the runs (default: a temporary folder)")
    parser.add_argument("--reuse", action="store_true", help="with --keep: estimate the runs already trained there")
    parser.add_argument("--design", choices=("paired", "one-at-a-time"), default="paired",
                        help="paired: the 12-run design; one-at-a-time: one knob away from a base run per run (held-out style)")
    args = parser.parse_args()
    specs = [SPEC] if args.design == "paired" else _one_at_a_time_specs()
    work = args.keep or Path(tempfile.mkdtemp(prefix="estimate-accuracy-"))
    exp = work / "example" / "experiments"
    if not (args.reuse and exp.exists()):
        exp = _plan(work, specs)
        runs = sorted(p.parent for p in exp.glob("*/*/train.sh"))
        print(f"training {len(runs)} runs one at a time in {exp}")
        for run in runs:
            t0 = time.perf_counter()
            subprocess.run(["bash", str(run / "train.sh")], check=True, capture_output=True)
            print(f"  {_label(run):55s} {time.perf_counter() - t0:6.1f} s", flush=True)
    runs = sorted(p.parent for p in exp.glob("*/*/train.sh"))
    model_dir = work / "example" / "models" / "tiny-llama-cap"
    shape = model_shape_from_config(json.loads((model_dir / "config.json").read_text()))
    data = json.loads((work / "example" / "data" / "words_8L_80P_50000.json").read_text())
    tokens = TokenStats.from_chars(len(str(r["input"])) + len(str(r["output"])) for r in data["train"])
    priors = {str(Path(p.name).parent): p for p in scan([exp]).priors()}
    load = os.getloadavg()
    rows = []
    for run in runs:
        setup = yaml.safe_load((run / "setup_finetune.yaml").read_text())
        actual = job_wall_seconds(run / "job-state.json")
        me = priors[str(run)]
        pool = PriorPool([p for name, p in priors.items() if name != str(run)])
        query = RunQuery.from_settings("tiny-llama-cap", me.param_count, setup, TRAIN_SPLIT)
        # As `new` asks it (plan_estimate.run_queries): a CPU job, with what the cost model needs.
        query.cpu, query.device, query.shape, query.tokens, query.dtype = True, CPU, shape, tokens, "fp32"
        loop = training_time(query, pool)
        job = job_time(query, loop, pool, checkpoint_gib=me.checkpoint_gib_per_epoch)
        request = slurm_time_seconds(slurm_time(job.figure))
        # Seed 002's method with the first other prior, as people do it by hand.
        base_prior = next(p for name, p in priors.items() if name != str(run))
        seed = query.train_samples / query.batch_size / (base_prior.it_per_s or 1) * query.epochs
        rows.append((_label(run), actual, sum(me.epoch_seconds), job.figure, loop.figure, seed, request))
    assert all(r[1] for r in rows), "a run has no job-state.json wall time"
    print()
    print(f"{'run':55s} {'loop':>6s} {'actual':>7s} {'job est':>8s} {'error':>7s} {'loop-only':>9s} {'error':>7s} {'seed 002':>8s} {'error':>7s}")
    for name, actual, loop_s, job_s, loop_est, seed, _ in rows:
        flag = " (loop < 30 s)" if loop_s < MIN_LOOP_S else ""
        print(f"{name:55s} {loop_s:5.0f}s {actual:6.1f}s {job_s:7.1f}s {100 * (job_s - actual) / actual:+6.1f}% "
              f"{loop_est:8.1f}s {100 * (loop_est - actual) / actual:+6.1f}% {seed:7.1f}s {100 * (seed - actual) / actual:+6.1f}%{flag}")
    err = [abs(j - a) / a * 100 for _, a, _, j, _, _, _ in rows]
    loop_err = [abs(e - a) / a * 100 for _, a, _, _, e, _, _ in rows]
    seed_err = [abs(s - a) / a * 100 for _, a, _, _, _, s, _ in rows]
    short_floor = sum(1 for _, a, _, _, _, _, req in rows if req < a)
    short_margin = sum(1 for _, a, _, j, _, _, _ in rows if j * 1.5 < a)
    print()
    print(f"{len(rows)} runs, loops {min(r[2] for r in rows):.0f}-{max(r[2] for r in rows):.0f} s, "
          f"jobs {min(r[1] for r in rows):.0f}-{max(r[1] for r in rows):.0f} s; load average after training "
          f"{load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} on {os.cpu_count()} CPUs")
    print(f"job wall time, absolute error: median {statistics.median(err):.1f}%, worst {max(err):.1f}%   "
          f"(loop-only estimate: median {statistics.median(loop_err):.1f}%; seed 002 one-prior it/s: "
          f"median {statistics.median(seed_err):.1f}%)")
    print(f"Slurm request too short: {short_floor} of {len(rows)} (as requested: +50 %, 15 min floor); "
          f"{short_margin} of {len(rows)} with the +50 % margin alone")
    met = statistics.median(err) <= 10 and short_floor == 0
    print(f"targets (median <= 10 %, none too short): {'met' if met else 'NOT met'}")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
