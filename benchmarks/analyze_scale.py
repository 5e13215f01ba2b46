"""Benchmark: ``analyze`` over 10,000 hand-made evaluations, against a bare json.load loop.

Writes an experiment.yaml of 2,000 fine-tune runs (20 LoRA ranks x 50 learning rates x
2 seeds, no base control) evaluated on 5 tasks at their last epoch, and one
``results.json`` per evaluation (10,000 files, as evaluation scripts leave them; no
training). It then times, in N rounds of one baseline loop followed by one analysis (so
that both meet the same moment of a shared machine), best and median shown:

* ours: ``planner.analyze.pipeline.run_analysis`` without plots: read every folder,
  build every table (runs, evals, cells, deltas, sweeps, loss) and the report, write
  ``analysis/``, the Results block and the design log (over forked workers, one per
  usable CPU, as ``plan-experiment analyze`` does from 2,000 evaluations);
* ours in one process (``--one-process`` only), for information;
* ours with plots, once, for information;
* baseline: a bare loop that only ``json.load``s the same 10,000 ``results.json`` files.

With ``--predictions N`` every evaluation also gets a ``predictions.jsonl`` of N examples,
so every cell's interval is a bootstrap and every finding a permutation test: the cost of
the statistics, reported on its own (information; the 3x target is for the default run).

Target (from the issue): ours within 3x of the baseline (best against best). Exit 0 when
met, 1 when not.

    python benchmarks/analyze_scale.py [--ranks 20] [--lrs 50] [--tasks 5] [--repeat 7] [--one-process] [--keep DIR]
                                       [--predictions N]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from planner.analyze.pipeline import Outcome, run_analysis  # noqa: E402
from planner.folder.experiment import Experiment, load_experiment  # noqa: E402
from planner.runtime import usable_cpus  # noqa: E402


def make(root: Path, ranks: int, lrs: int, tasks: int, examples: int = 0) -> tuple[Path, list[Path]]:
    """Write the experiment and its results.json files; return the folder and the files."""
    exp = root / "scale"
    spec = {
        "name": "scale", "question": "How do rank and learning rate trade off?", "models": ["m"],
        "dataset": {"path": "data.json"},
        "factors": {"lora_rank": [4 * (i + 1) for i in range(ranks)],
                    "learning_rate": [round(1e-6 * 1.2 ** i, 12) for i in range(lrs)]},
        "replicates": {"seeds": [1, 2]}, "base_model_controls": False, "controls": {"epochs": 1},
        "evaluation": {"tasks": [{"name": f"t{i}", "script": "eval.py"} for i in range(tasks)], "epochs": "last"},
    }
    exp.mkdir(parents=True)
    (exp / "experiment.yaml").write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    (exp / "experiment_summary.md").write_text("# Experiment: scale\n", encoding="utf-8")
    plan = load_experiment(exp).plan
    files = []
    for i, ev in enumerate(plan.evaluations):
        folder = exp / ev.run / "eval" / ev.name
        folder.mkdir(parents=True)
        acc = (i * 7919 % 1000) / 1000
        if examples:
            right = [(j * 2654435761 + i * 97) % 1000 < acc * 1000 for j in range(examples)]
            acc = sum(right) / examples
            (folder / "predictions.jsonl").write_text("".join(
                json.dumps({"id": j, "input": f"q{j}", "target": "a", "prediction": "a" if ok else "b", "correct": ok})
                + "\n" for j, ok in enumerate(right)), encoding="utf-8")
        path = folder / "results.json"
        path.write_text(json.dumps({
            "task": ev.task, "run": ev.run, "epoch": ev.epoch, "model": "m", "checkpoint": "x", "split": "test",
            "n": examples or 1000, "n_correct": round(acc * (examples or 1000)), "accuracy": acc, "metrics": {"exact_match": acc},
            "started": "2025-01-01T00:00:00+00:00", "finished": "2025-01-01T00:01:00+00:00", "duration_s": 60.0,
            "adapter_sha256": f"{i:064x}"}, indent=2), encoding="utf-8")
        files.append(path)
    return exp, files


def rounds(fns: list[Callable[[], object]], repeat: int) -> list[tuple[float, float]]:
    """(best, median) seconds of each function over ``repeat`` rounds that call each once, in turn."""
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeat):
        for fn, spent in zip(fns, times):
            t0 = time.perf_counter()
            fn()
            spent.append(time.perf_counter() - t0)
    return [(min(t), statistics.median(t)) for t in times]


def statistics_cost(exp: Experiment, files: list[Path], repeat: int) -> int:
    """With per-example files: the analysis time, how many findings it tested, and the bare loop (information)."""

    def bare() -> None:
        for path in files:
            with open(path, encoding="utf-8") as handle:
                json.load(handle)
            with open(path.with_name("predictions.jsonl"), encoding="utf-8") as handle:
                [json.loads(line) for line in handle]

    bare()
    outcome: list[Outcome] = []
    (base_best, _), (ours_best, ours_med) = rounds([bare, lambda: outcome.append(run_analysis(exp, make_plots=False))],
                                                   repeat)
    a = outcome[-1].analysis
    tested = sum(1 for f in a.findings if f.tested is not None)
    boot = sum(1 for c in a.cell_objs if c.ci[2] and "bootstrap" in c.ci[2])
    print(f"{len(files)} evaluations with predictions.jsonl: {len(a.findings)} findings ({tested} tested), "
          f"{boot} of {len(a.cell_objs)} cell intervals by bootstrap")
    print(f"{'analyze, no plots, with tests and bootstrap':44s} {ours_best:8.3f} {ours_med:8.3f}  "
          f"{ours_best / base_best:.2f}x baseline (information)")
    print(f"{'  per tested finding':44s} {ours_best / max(tested, 1) * 1000:8.2f} ms")
    print(f"{'baseline: json.load of results + predictions':44s} {base_best:8.3f}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Build, time, print; exit 0 when the target is met."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--ranks", type=int, default=20)
    parser.add_argument("--lrs", type=int, default=50)
    parser.add_argument("--tasks", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--one-process", action="store_true", help="also time the analysis in one process")
    parser.add_argument("--keep", type=Path, default=None, help="build here and keep it")
    parser.add_argument("--predictions", type=int, default=0, metavar="N",
                        help="also write a predictions.jsonl of N examples per evaluation: time the tests and bootstrap")
    args = parser.parse_args(argv)
    root = args.keep or Path(tempfile.mkdtemp(prefix="analyze-scale-"))
    try:
        t0 = time.perf_counter()
        exp_dir, files = make(root, args.ranks, args.lrs, args.tasks, args.predictions)
        print(f"built {len(files)} evaluations of {len(files) // args.tasks} runs in {time.perf_counter() - t0:.1f} s")
        exp = load_experiment(exp_dir)
        if args.predictions:
            return statistics_cost(exp, files, args.repeat)

        def bare() -> None:
            for path in files:
                with open(path, encoding="utf-8") as handle:
                    json.load(handle)

        bare()  # warm the page cache for both sides
        fns: list[Callable[[], object]] = [bare, lambda: run_analysis(exp, make_plots=False)]
        if args.one_process:
            fns.append(lambda: run_analysis(exp, make_plots=False, parallel_from=10**9))
        timed = rounds(fns, args.repeat)
        (base_best, base_med), (ours_best, ours_med) = timed[:2]
        plots_best, _ = rounds([lambda: run_analysis(exp, make_plots=True)], 1)[0]
        ratio = ours_best / base_best
        print(f"{'':44s} {'best':>8s} {'median':>8s}   ({args.repeat} rounds, {usable_cpus()} usable CPUs)")
        print(f"{'analyze, no plots (read, tables, write)':44s} {ours_best:8.3f} {ours_med:8.3f}  {ratio:.2f}x baseline "
              "(target <= 3x)")
        if args.one_process:
            one_best, one_med = timed[2]
            print(f"{'  the same in one process (information)':44s} {one_best:8.3f} {one_med:8.3f}  "
                  f"{one_best / base_best:.2f}x baseline")
        print(f"{'analyze with plots, once (information)':44s} {plots_best:8.3f}")
        print(f"{'baseline: json.load of every results.json':44s} {base_best:8.3f} {base_med:8.3f}")
        return 0 if ratio <= 3.0 else 1
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
