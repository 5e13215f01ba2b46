"""Benchmark: scan + estimate over 10,000 training logs, against grep.

Builds a folder of logs modelled on the real torchtune logs and the hand-written
fixtures in ``tests/fixtures/logs`` (varied: steps per epoch, epochs, speed, batch
size, memory, model size; plus a few cut, empty and garbage files), then times:

* baseline: ``grep -rE "[0-9.]+it/s" --include='slurm-*.out' DIR`` - what seed 002 runs to read speeds - with
  its output read through a pipe, as a person or script consuming it would;
* what ``plan-experiment estimate`` runs: ``planner.estimate.priors.gather_priors``
  (scan with the cache, prior-run summaries, the design-log lines) over the whole
  folder with an empty cache, then a training-time estimate against every prior;
* the same again after 1% of the logs changed (a rescan).

Both sides run with the files in the page cache (grep warms it first), best of N.

    python benchmarks/log_scan.py [--logs 10000] [--repeat 3] [--run-folders 0.2] [--keep DIR]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "tests" / "fixtures" / "logs"
sys.path.insert(0, str(REPO))

from planner.estimate.priors import cache_path, gather_priors  # noqa: E402
from planner.estimate import prior_scan as prior_runs  # noqa: E402
from planner.estimate.prior_scan import PARALLEL_MIN_FILES  # noqa: E402
from planner.folder.designlog import DesignLog  # noqa: E402
from planner.estimate.estimators import PriorPool, RunQuery, training_time  # noqa: E402

GREP_PATTERN = "[0-9.]+it/s"


def _fixture_builder():
    """The hand-written fixture helpers (config dump, tqdm bars, checkpoint lines)."""
    spec = importlib.util.spec_from_file_location("build_handwritten", FIXTURES / "build_handwritten.py")
    mod = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


def make_pool(rnd: random.Random, size: int, steps_range: tuple[int, int] = (20, 2000)) -> list[bytes]:
    """Distinct logs: synthetic GPU-cluster-like runs plus the real CPU logs."""
    b = _fixture_builder()
    components = [
        ("torchtune.models.llama3_2.lora_llama3_2_1b", 4.5, 2.9),
        ("torchtune.models.llama3_2.lora_llama3_2_3b", 1.8, 7.5),
        ("torchtune.models.llama3_1.lora_llama3_1_8b", 0.7, 19.0),
    ]
    pool: list[bytes] = []
    for i in range(size):
        comp, rate, mem = rnd.choice(components)
        batch = rnd.choice([1, 2, 4, 8])
        epochs = rnd.choice([1, 2, 2, 3])
        # Steps per epoch log-uniform in the range (default 20..2000: small sweeps to
        # full datasets; seed 002's example run has 2000).
        lo, hi = steps_range
        steps = int(math.exp(rnd.uniform(math.log(lo), math.log(hi))))
        r = rate * rnd.uniform(0.7, 1.3) * 4 / batch
        out = f"/scratch/user/exp{i % 37}/run_{i}"
        text = b.header(component=comp, batch_size=batch, epochs=epochs, output_dir=out) + b.setup_lines()
        text += b.memory_061(mem * batch / 4, mem * batch / 4 + 0.4, mem * batch / 4 + 0.1)
        gstep = 0
        cut = rnd.random() < 0.03
        for ep in range(1, epochs + 1):
            stop = rnd.randrange(1, steps) if cut and ep == epochs else None
            text += b.bar(ep, steps, r, gstep0=gstep, stop=stop, sci=rnd.random() < 0.2)
            gstep += steps
            if stop is not None:
                break
            text += b.save(ep - 1, out, model=rnd.random() < 0.3)
        pool.append(text.encode("utf-8"))
    for f in sorted(FIXTURES.glob("**/slurm-*.out")):
        pool.append(f.read_bytes())  # real logs and every edge case, garbage included
    return pool


def _state(started: int, seconds: int) -> str:
    iso = lambda t: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))  # noqa: E731
    return json.dumps({"state": "COMPLETED", "job_id": "1", "started": iso(started),
                       "ended": iso(started + seconds), "exit_code": 0, "host": "n1"})


def add_run_folder(d: Path, model_dir: Path, i: int) -> None:
    """What a run planned and run by plan-experiment leaves beside its log."""
    t0 = 1_760_000_000 + i * 600
    (d / "job-state.json").write_text(_state(t0, 300 + i % 97))
    (d / "finetune.yaml").write_text(f"checkpointer:\n  checkpoint_dir: {model_dir}\n  output_dir: {d}\n")
    for epoch in (0, 1):
        (d / f"epoch_{epoch}").mkdir()
        (d / f"epoch_{epoch}" / "adapter_model.safetensors").write_bytes(b"\0" * 4096)
        ev = d / "eval" / f"capitalization_epoch{epoch}"
        ev.mkdir(parents=True)
        (ev / "job-state.json").write_text(_state(t0 + 400 + epoch * 60, 40))
        (ev / f"slurm-{900000 + 2 * i + epoch}.out").write_text("accuracy: 0.61\n")
    (d / "logs").mkdir()
    (d / "logs" / f"log_{i}.txt").write_text("Step 1 | loss:1.0\n")
    (d / "recipe_state").mkdir()
    (d / "recipe_state" / "recipe_state.pt").write_bytes(b"\0" * 64)
    (d / ".hf_datasets_cache" / "json").mkdir(parents=True)


def build_logs(root: Path, n: int, seed: int = 0, steps_range: tuple[int, int] = (20, 2000),
               run_folders: float = 0.0) -> list[Path]:
    """Write ``n`` logs under ``root`` in experiment-like folders.

    Args:
        run_folders: share of the logs that sit in a full run folder as plan-experiment
            leaves it (job-state.json, finetune.yaml, epoch_N/, eval/, logs/, ...), so
            the scan also reads what those say; the others are bare logs.
    """
    rnd = random.Random(seed)
    pool = make_pool(rnd, 400, steps_range)
    model_dir = root / "models" / "tiny-llama-cap"
    model_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "examples" / "capitalization" / "models" / "tiny-llama-cap" / "config.json", model_dir)
    paths: list[Path] = []
    for i in range(n):
        data = pool[i % len(pool)]
        # Vary every copy so no two files are byte-identical.
        data = data.replace(b"/scratch/user/", f"/scratch/user{i}/".encode(), 1)
        d = root / f"exp_{i % 50:02d}" / f"run_{i:05d}"
        d.mkdir(parents=True, exist_ok=True)
        p = d / f"slurm-{100000 + i}.out"
        p.write_bytes(data)
        paths.append(p)
        if rnd.random() < run_folders:
            add_run_folder(d, model_dir, i)
    # Prior runs are old: date the folders an hour back. (The scan lists a folder
    # changed in the last few seconds again every time, as it may still be changing
    # within one tick of the filesystem's clock; a tree built a second ago would
    # measure that instead of a rescan.)
    old = time.time_ns() - 3600 * 10**9
    for d, _, _ in os.walk(root):
        os.utime(d, ns=(old, old))
    return paths


def _children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def _self_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def time_grep(root: Path) -> tuple[float, int, float]:
    """Wall time, output bytes and CPU seconds of grep over the logs under root, output piped."""
    c0 = _children_cpu()
    t0 = time.perf_counter()
    proc = subprocess.Popen(["grep", "-rE", "--include=slurm-*.out", GREP_PATTERN, str(root)], stdout=subprocess.PIPE)
    out_bytes = 0
    assert proc.stdout is not None
    while chunk := proc.stdout.read(1 << 20):
        out_bytes += len(chunk)
    proc.wait()
    return time.perf_counter() - t0, out_bytes, _children_cpu() - c0


def time_grep_devnull(root: Path) -> float:
    """grep with stdout on /dev/null: GNU grep then stops at each file's first match."""
    t0 = time.perf_counter()
    subprocess.run(["grep", "-rE", "--include=slurm-*.out", GREP_PATTERN, str(root)], stdout=subprocess.DEVNULL, check=False)
    return time.perf_counter() - t0


def scan_and_estimate(root: Path, cache_home: Path) -> tuple[float, object, float]:
    """Wall time, scan result and CPU seconds (this process and its workers)."""
    os.environ["XDG_CACHE_HOME"] = str(cache_home)  # where gather_priors keeps its cache
    c0 = _self_cpu() + _children_cpu()
    t0 = time.perf_counter()
    res, priors = gather_priors([root], DesignLog(), lambda: datetime.now(timezone.utc))
    query = RunQuery(model="Llama-3.2-1B-Instruct", param_count=None, batch_size=4, epochs=2, train_samples=8000)
    training_time(query, PriorPool(priors))
    return time.perf_counter() - t0, res, _self_cpu() + _children_cpu() - c0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--logs", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--keep", type=Path, default=None, help="build logs here and keep them")
    ap.add_argument("--steps", default="20-2000", help="range of steps per epoch, LOW-HIGH (log-uniform)")
    ap.add_argument("--run-folders", type=float, default=0.0, metavar="SHARE",
                    help="share of logs (0-1) in full run folders as plan-experiment leaves them")
    args = ap.parse_args(argv)

    root = args.keep or Path(tempfile.mkdtemp(prefix="log-scan-bench-"))
    try:
        t0 = time.perf_counter()
        logs_dir = root / "logs"
        if logs_dir.exists():
            shutil.rmtree(logs_dir)
        lo, _, hi = args.steps.partition("-")
        paths = build_logs(logs_dir, args.logs, steps_range=(int(lo), int(hi or lo)), run_folders=args.run_folders)
        total = sum(p.stat().st_size for p in paths)
        folders = sum(1 for _ in os.walk(logs_dir))
        print(f"built {len(paths)} logs ({args.steps} steps/epoch, {args.run_folders:.0%} in full run folders; "
              f"{folders} folders), {total / 1e6:.0f} MB (mean {total / len(paths) / 1e3:.0f} kB) "
              f"in {time.perf_counter() - t0:.1f} s")

        time_grep(logs_dir)  # warm the page cache for both sides
        grep_runs = [time_grep(logs_dir) for _ in range(args.repeat)]
        grep_s = min(t for t, _, _ in grep_runs)
        grep_cpu = min(c for _, _, c in grep_runs)
        grep_q = min(time_grep_devnull(logs_dir) for _ in range(args.repeat))

        results: dict[str, tuple[float, float]] = {}
        res = None
        for label, parallel in (("scan+estimate, 1 process", False),
                                (f"scan+estimate, {os.cpu_count()} processes", True)):
            # Parsing goes to worker processes from PARALLEL_MIN_FILES files up.
            prior_runs.PARALLEL_MIN_FILES = PARALLEL_MIN_FILES if parallel else 10**9
            runs = []
            for k in range(args.repeat):
                home = root / f"cache-{'parallel' if parallel else 'serial'}-{k}"
                shutil.rmtree(home, ignore_errors=True)
                t, res, c = scan_and_estimate(logs_dir, home)
                runs.append((t, c))
            results[label] = (min(t for t, _ in runs), min(c for _, c in runs))
        prior_runs.PARALLEL_MIN_FILES = PARALLEL_MIN_FILES
        full_s = min(t for t, _ in results.values())

        # Rescan after 1% of the logs changed (a different 1% each round), with the
        # cache the last full scan left.
        rnd = random.Random(1)
        rescans = []
        for _ in range(args.repeat):
            for p in rnd.sample(paths, max(1, len(paths) // 100)):
                with open(p, "ab") as fh:
                    fh.write(b"INFO:torchtune.utils._logging:appended line\n")
            t, res2, c = scan_and_estimate(logs_dir, home)
            rescans.append((t, res2.parsed, c))  # type: ignore[attr-defined]
        print(f"cache: {cache_path().stat().st_size / 1e6:.1f} MB")
        rescan_s = min(t for t, _, _ in rescans)
        rescan_cpu = min(c for _, _, c in rescans)

        assert res is not None
        print(f"records: {len(res.records)} usable as priors: {len(res.priors())} "  # type: ignore[attr-defined]
              f"skipped: {len(res.skipped)}")  # type: ignore[attr-defined]
        print()
        w = 58
        print(f"load average at the end: {', '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")
        print(f"{'what':<{w}} {'wall s':>8} {'vs grep':>8} {'CPU s':>8} {'vs grep':>8}")
        baseline = f'baseline: grep -rE "{GREP_PATTERN}" DIR, logs only, piped'
        print(f"{baseline:<{w}} {grep_s:8.3f} {1:7.2f}x {grep_cpu:8.3f} {1:7.2f}x")
        print(f"{'grep, stdout to /dev/null (stops at first match/file)':<{w}} {grep_q:8.3f} {grep_q / grep_s:7.2f}x")
        for label, (t, c) in results.items():
            print(f"{label:<{w}} {t:8.3f} {t / grep_s:7.2f}x {c:8.3f} {c / grep_cpu:7.2f}x")
        label = f"rescan after 1% changed ({rescans[0][1]} files reparsed)"
        print(f"{label:<{w}} {rescan_s:8.3f} {rescan_s / grep_s:7.2f}x {rescan_cpu:8.3f} {rescan_cpu / grep_cpu:7.2f}x")
        print()
        print(f"grep output: {grep_runs[0][1] / 1e6:.0f} MB")
        ok_fast = full_s <= grep_s
        ok_rescan = rescan_s < 0.1 * full_s
        print(f"target full scan <= grep: {'met' if ok_fast else 'MISSED'} ({full_s:.3f} s vs {grep_s:.3f} s)")
        print(f"target rescan < 10% of full scan: {'met' if ok_rescan else 'MISSED'} "
              f"({rescan_s / full_s:.1%})")
        return 0 if ok_fast and ok_rescan else 1
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
