"""Benchmark: one ``status`` refresh over 1,000 Slurm jobs, against sacct itself.

Plans a real experiment of 1,000 fine-tune runs (10 LoRA ranks x 100 learning rates,
no evaluations) with ``plan-experiment new``, submits one 1,000-task array of ``true``
jobs to the cluster (``sbatch --array=0-999``: training for real would take hours and
would not change what a refresh does), and writes the journal that ``submit`` would
have written, mapping run *i* to task ``<array>_<i>``. Once every task is final, it
times, best of N with the median shown too:

* ours, cold: ``planner.status.refresh.refresh`` with an empty status cache, so
  every job must come from the scheduler: one sacct call, 1,000 records merged with the
  journal, and the summary's status tables rewritten (1,000 rows);
* ours, warm: the same refresh when the cache already holds the final states (what
  every ``status`` after the jobs ended does): no scheduler call at all;
* for information, the whole ``plan-experiment status`` command, cold (a new process:
  Python start-up and imports included);
* baseline 1: the bare ``sacct`` command ours runs (same --jobs, fields and flags), as a
  subprocess whose output is read;
* baseline 2: one sacct call per job (1,000 calls), how a naive tracker asks.

Scheduler calls are counted at the subprocess boundary (every Slurm command our code
runs goes through ``planner.jobs.slurm_query._run``), not taken from our own counter.

Targets (from the issue): one sacct call per refresh, and a cold refresh no slower than
1.5x the bare sacct call. Exit 0 when both are met, 1 when not, 2 when no cluster.

    python benchmarks/status_scale.py [--jobs 1000] [--repeat 5] [--keep DIR] [--array ID]

``--array ID`` journals an earlier, finished array of the same size instead of
submitting a new one (the 1,000 tasks take minutes on a small cluster).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from planner.jobs import slurm_query
from planner.status import refresh as tracking
from planner.folder.experiment import Experiment, load_experiment
from planner.folder.journal import Journal, Submission, TaskEntry
from planner.jobs.sacct import sacct_argv

EXAMPLE = REPO / "examples" / "capitalization"
PLAN_EXPERIMENT = Path(sys.executable).parent / "plan-experiment"
RATIO_TARGET = 1.5


def plan_experiment(root: Path, jobs: int) -> Experiment:
    """Plan ``jobs`` fine-tune runs from the shipped example (no evaluations) under ``root``."""
    ranks = 10 if jobs % 10 == 0 else 1
    spec = yaml.safe_load((EXAMPLE / "experiment.yaml").read_text(encoding="utf-8"))
    spec["name"] = "status_scale"
    spec["factors"] = {"lora_rank": list(range(1, ranks + 1)),
                       "learning_rate": [round(1e-4 * (i + 1), 6) for i in range(jobs // ranks)]}
    spec["controls"].pop("learning_rate", None)
    spec["base_model_controls"] = False
    spec["evaluation"] = {"tasks": []}
    src = root / "src"
    src.mkdir(parents=True)
    for name in ("claude.local.md", "data", "models"):
        (src / name).symlink_to(EXAMPLE / name)
    (src / "experiment.yaml").write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    proc = subprocess.run([str(PLAN_EXPERIMENT), "new", "--spec", str(src / "experiment.yaml"), "--yes",
                           "--out", str(root / "out")], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        sys.exit(f"plan-experiment new failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    exp = load_experiment(root / "out" / "status_scale")
    if len(exp.plan.finetune_runs) != jobs:
        sys.exit(f"planned {len(exp.plan.finetune_runs)} runs, wanted {jobs}")
    return exp


def submit_array(exp: Experiment, jobs: int, reuse: str | None = None) -> str:
    """One array of ``true`` tasks, journalled as if ``submit`` had sent the runs' train.sh.

    Args:
        exp: The planned experiment.
        jobs: Number of tasks.
        reuse: Id of an array of ``jobs`` tasks submitted earlier, journalled instead of a new one.
    """
    if reuse is not None:
        return _journal_array(exp, reuse)
    proc = subprocess.run(
        ["sbatch", "--parsable", f"--array=0-{jobs - 1}", "--job-name=status-scale", "--cpus-per-task=1",
         "--mem=50M", "--time=1", "--output=/dev/null", f"--chdir={exp.path}", "--wrap", "true"],
        capture_output=True, text=True, timeout=60, check=False,
    )
    if proc.returncode != 0:
        sys.exit(f"sbatch failed: {proc.stderr.strip()}")
    return _journal_array(exp, proc.stdout.strip().split(";", 1)[0])


def _journal_array(exp: Experiment, array_id: str) -> str:
    tasks = [TaskEntry(unit=run.name, job_id=f"{array_id}_{i}", script=str(exp.run_dir(run.name) / "train.sh"), index=i)
             for i, run in enumerate(exp.plan.finetune_runs)]
    journal = Journal(experiment=exp.spec.name, submissions=[Submission(
        number=1, time=datetime.now().isoformat(timespec="seconds"), executor="slurm", kind="train",
        job_id=array_id, dependency=None, parameters={"array": f"0-{len(tasks) - 1}"}, tasks=tasks)])
    with exp.lock():
        exp.write_journal(journal)
    return array_id


def wait_final(array_id: str, jobs: int, timeout_s: float) -> None:
    """Poll sacct until every task of the array has a final record."""
    deadline = time.monotonic() + timeout_s
    shown = -1.0
    while True:
        records = slurm_query.sacct([array_id])
        done = sum(1 for r in records if r.is_final)
        if time.monotonic() - shown >= 30 or done >= jobs:  # a progress line every 30 s
            print(f"  waiting for the array: {done}/{jobs} final", flush=True)
            shown = time.monotonic()
        if done >= jobs:
            return
        if time.monotonic() > deadline:
            sys.exit(f"array {array_id}: only {done}/{jobs} tasks final after {timeout_s:g} s")
        time.sleep(2)


@contextmanager
def counting_scheduler_calls() -> Iterator[list[list[str]]]:
    """Record the argv of every Slurm command our code runs (the one subprocess boundary)."""
    calls: list[list[str]] = []
    real = slurm_query._run

    def counted(argv: Any, timeout_s: float) -> subprocess.CompletedProcess[str]:
        calls.append(list(argv))
        return real(argv, timeout_s)

    slurm_query._run = counted  # type: ignore[assignment]
    try:
        yield calls
    finally:
        slurm_query._run = real  # type: ignore[assignment]


def timed(fn: Callable[[], Any], repeat: int) -> tuple[list[float], Any]:
    """Wall times of ``repeat`` calls and the last result."""
    times, result = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return times, result


def main() -> int:
    """Run the benchmark; print the figures side by side and whether the targets are met."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=1000, help="array tasks / journal units (default 1000)")
    parser.add_argument("--repeat", type=int, default=5, help="timed repetitions of each fast measurement")
    parser.add_argument("--keep", type=Path, help="build the experiment here and keep it (default: a temp dir)")
    parser.add_argument("--array", dest="reuse", help="reuse this earlier array of --jobs tasks instead of submitting")
    parser.add_argument("--no-per-job", action="store_true", help="skip baseline 2 (a minute or more)")
    parser.add_argument("--timeout", type=float, default=900, help="longest wait for the array to finish (s)")
    args = parser.parse_args()
    if not slurm_query.slurm_available():
        print("no Slurm cluster answers: start one with `bash scripts/slurm-cluster.sh start`", file=sys.stderr)
        return 2
    limit = slurm_query.max_array_size()
    if args.jobs > limit:
        print(f"--jobs {args.jobs} exceeds this cluster's MaxArraySize={limit}", file=sys.stderr)
        return 2
    root = args.keep or Path(tempfile.mkdtemp(prefix="status-scale-"))
    root.mkdir(parents=True, exist_ok=True)
    try:
        t0 = time.perf_counter()
        print(f"planning {args.jobs} runs under {root} ...", flush=True)
        exp = plan_experiment(root, args.jobs)
        print(f"  planned in {time.perf_counter() - t0:.1f} s", flush=True)
        array_id = submit_array(exp, args.jobs, args.reuse)
        print(f"{'reusing' if args.reuse else 'submitted'} array {array_id} (0-{args.jobs - 1}, MaxArraySize={limit})", flush=True)
        t0 = time.perf_counter()
        wait_final(array_id, args.jobs, args.timeout)
        print(f"  all final after {time.perf_counter() - t0:.1f} s", flush=True)

        def cold_refresh() -> tuple[Any, list[list[str]]]:
            (exp.internal / "status-cache.json").unlink(missing_ok=True)
            with counting_scheduler_calls() as calls:
                report, _ = tracking.refresh(exp, datetime.now())
            return report, calls

        def warm_refresh() -> tuple[Any, list[list[str]]]:
            with counting_scheduler_calls() as calls:
                report, _ = tracking.refresh(exp, datetime.now())
            return report, calls

        def cold_collect() -> tuple[Any, list[list[str]]]:
            with counting_scheduler_calls() as calls:
                got = tracking.collect(exp, exp.read_journal(), {})
            return got, calls

        def cold_cli() -> int:
            (exp.internal / "status-cache.json").unlink(missing_ok=True)
            return subprocess.run([str(PLAN_EXPERIMENT), "status", str(exp.path)], capture_output=True,
                                  check=False).returncode

        argv = sacct_argv([array_id])
        bare_env = slurm_query._env()

        def bare_sacct() -> int:
            out = subprocess.run(argv, capture_output=True, text=True, env=bare_env, check=True).stdout
            return len(out.splitlines())

        def per_job_sacct() -> int:
            lines = 0
            for i in range(args.jobs):
                per = sacct_argv([f"{array_id}_{i}"])
                lines += len(subprocess.run(per, capture_output=True, text=True, env=bare_env, check=True).stdout.splitlines())
            return lines

        cold_refresh()  # warm slurmdbd's and the OS's caches once for every side alike
        bare_sacct()
        cold_t, (report, cold_calls) = timed(cold_refresh, args.repeat)
        states = report.counts()
        if states != {"COMPLETED": args.jobs}:
            print(f"warning: refresh saw {states}, expected {args.jobs} COMPLETED", file=sys.stderr)
        rows = sum(1 for line in (exp.path / "experiment_summary.md").read_text().splitlines()
                   if line.startswith("| ") and "| completed |" in line)
        collect_t, (_, collect_calls) = timed(cold_collect, args.repeat)
        warm_refresh()
        warm_t, (_, warm_calls) = timed(warm_refresh, args.repeat)
        bare_t, bare_lines = timed(bare_sacct, args.repeat)
        cli_t, cli_rc = timed(cold_cli, args.repeat)
        per_t, per_lines = [float("nan")], 0
        if not args.no_per_job:
            print(f"one sacct call per job ({args.jobs} calls) ...", flush=True)
            per_t, per_lines = timed(per_job_sacct, 1)

        print()
        print(f"status refresh over {args.jobs} finished array tasks (array {array_id}); "
              f"best / median of {args.repeat}")
        print(f"{'':44s} {'sched. calls':>12s} {'best s':>9s} {'median s':>9s} {'vs bare':>8s}")

        def row(label: str, calls: int | None, times: list[float]) -> None:
            best = min(times)
            shown = "-" if calls is None else str(calls)  # None: another process, not counted here
            print(f"{label:44s} {shown:>12s} {best:9.3f} {statistics.median(times):9.3f} {best / min(bare_t):7.2f}x")

        row("ours: refresh, cold (sacct + summary write)", len(cold_calls), cold_t)
        row("ours: collect only, cold (sacct + merge)", len(collect_calls), collect_t)
        row("ours: refresh, warm (final states cached)", len(warm_calls), warm_t)
        row("ours: `plan-experiment status`, cold, whole", None, cli_t)
        row("baseline 1: bare sacct, same query", 1, bare_t)
        row(f"baseline 2: sacct per job ({args.jobs} calls)", args.jobs, per_t)
        print(f"\nrefresh saw {states}; summary table rows completed: {rows}; "
              f"bare sacct lines: {bare_lines}; per-job sacct lines: {per_lines}; status exit code {cli_rc}")
        print("(the whole command adds the Python start-up and imports of a new process; the target is "
              "about the refresh itself)")
        print(f"ours ran: {' '.join(cold_calls[0]) if cold_calls else '-'}")

        ratio = min(cold_t) / min(bare_t)
        calls_ok = len(cold_calls) == 1 and cold_calls[0][0] == "sacct"
        ratio_ok = ratio <= RATIO_TARGET
        print("\ntargets")
        print(f"  one sacct call per refresh:            {len(cold_calls)} call(s)  -> {'met' if calls_ok else 'NOT met'}")
        print(f"  cold refresh <= {RATIO_TARGET}x bare sacct:         {ratio:.2f}x      -> {'met' if ratio_ok else 'NOT met'}")
        return 0 if calls_ok and ratio_ok else 1
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
