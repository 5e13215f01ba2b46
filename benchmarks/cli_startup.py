"""Benchmark: how long ``plan-experiment`` takes to start, as whole commands, next to its baselines.

Times, best and median of N runs each, every command a new process as a user runs it:

* baseline 0: ``python -c pass`` with the same interpreter (the floor of any Python tool);
* ``plan-experiment --help`` (target: <= 0.3 s);
* ``plan-experiment status EXP`` on a planned experiment with nothing submitted (no
  scheduler call: imports, reading the folder, rewriting the status tables);
* where a Slurm cluster answers: ``plan-experiment status EXP`` on an experiment whose runs
  are a finished array of ``true`` jobs, with its status cache removed before each run so
  that it asks sacct, next to baseline 1: the bare ``sacct`` command it runs (same ids,
  fields and flags). Target: status <= 3x the bare sacct.

The commands run with bytecode caching on (``PYTHONDONTWRITEBYTECODE`` removed, the
bytecode kept in a temporary ``PYTHONPYCACHEPREFIX``) and once untimed first: an installed
package has its bytecode compiled, and a first run without it measures the compiler.
Rounds alternate the commands so that each meets the same moments of a shared machine.

    python benchmarks/cli_startup.py [--repeat 10] [--jobs 20] [--pythonpath DIR]

``--pythonpath DIR`` runs the planner found in DIR (e.g. an exported older commit) with
this interpreter and its packages, to compare before and after. Exit 0 when the targets
measured are met, 1 when not.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "capitalization"
PLAN_EXPERIMENT = Path(sys.executable).parent / "plan-experiment"
HELP_TARGET_S = 0.3
STATUS_RATIO_TARGET = 3.0


def command_env(pycache: Path, pythonpath: Path | None, cache_home: Path) -> dict[str, str]:
    """The environment every timed command runs in: bytecode cached, a private prior-run cache."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONPATH")}
    env["PYTHONPYCACHEPREFIX"] = str(pycache)
    env["XDG_CACHE_HOME"] = str(cache_home)  # new registers its experiment: not in the user's index
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    return env


def run(argv: list[str], env: dict[str, str], cwd: Path, ok_codes: tuple[int, ...] = (0,)) -> None:
    """Run a command to its end, output discarded; stop the benchmark if it fails."""
    proc = subprocess.run(argv, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
    if proc.returncode not in ok_codes:
        sys.exit(f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr.decode(errors='replace')[-2000:]}")


def plan(root: Path, env: dict[str, str], jobs: int, name: str) -> Path:
    """Plan ``jobs`` fine-tune runs of the shipped example (no evaluations) under ``root``."""
    spec = yaml.safe_load((EXAMPLE / "experiment.yaml").read_text(encoding="utf-8"))
    spec["name"] = name
    spec["factors"] = {"lora_rank": [1], "learning_rate": [round(1e-4 * (i + 1), 6) for i in range(jobs)]}
    spec["controls"].pop("learning_rate", None)
    spec["base_model_controls"] = False
    spec["evaluation"] = {"tasks": []}
    src = root / f"src-{name}"
    src.mkdir(parents=True)
    for item in ("claude.local.md", "data", "models"):
        (src / item).symlink_to(EXAMPLE / item)
    (src / "experiment.yaml").write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    run([str(PLAN_EXPERIMENT), "new", "--spec", str(src / "experiment.yaml"), "--yes", "--out", str(root / "out")],
        env, root)
    return root / "out" / name


def finished_array(exp: Path, jobs: int, timeout_s: float) -> list[str]:
    """Submit one array of ``true`` tasks, journal it as ``submit`` would, wait until all are final.

    Returns:
        The argv of the bare sacct call ``status`` makes for these jobs.
    """
    sys.path.insert(0, str(REPO))
    from planner.folder.experiment import load_experiment
    from planner.folder.journal import Journal, Submission, TaskEntry
    from planner.jobs import slurm_query
    from planner.jobs.sacct import sacct_argv

    proc = subprocess.run(["sbatch", "--parsable", f"--array=0-{jobs - 1}", "--job-name=cli-startup", "--cpus-per-task=1",
                           "--mem=50M", "--time=1", "--output=/dev/null", f"--chdir={exp}", "--wrap", "true"],
                          capture_output=True, text=True, timeout=60, check=False)
    if proc.returncode != 0:
        sys.exit(f"sbatch failed: {proc.stderr.strip()}")
    array_id = proc.stdout.strip().split(";", 1)[0]
    loaded = load_experiment(exp)
    tasks = [TaskEntry(unit=r.name, job_id=f"{array_id}_{i}", script=str(loaded.run_dir(r.name) / "train.sh"), index=i)
             for i, r in enumerate(loaded.plan.finetune_runs)]
    journal = Journal(experiment=loaded.spec.name, submissions=[Submission(
        number=1, time=time.strftime("%Y-%m-%dT%H:%M:%S"), executor="slurm", kind="train", job_id=array_id,
        dependency=None, parameters={"array": f"0-{jobs - 1}"}, tasks=tasks)])
    with loaded.lock():
        loaded.write_journal(journal)
    deadline = time.monotonic() + timeout_s
    while sum(1 for r in slurm_query.sacct([array_id]) if r.is_final) < jobs:
        if time.monotonic() > deadline:
            sys.exit(f"array {array_id}: not final after {timeout_s:g} s")
        time.sleep(1)
    return sacct_argv([array_id])


def main() -> int:
    """Run the benchmark; print each figure next to its baseline and whether the targets are met."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=10, help="timed runs of each command (default 10)")
    parser.add_argument("--jobs", type=int, default=20, help="array tasks of the submitted experiment (default 20)")
    parser.add_argument("--pythonpath", type=Path, help="run the planner of this folder instead of the installed one")
    parser.add_argument("--timeout", type=float, default=300, help="longest wait for the array (s)")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="cli-startup-"))
    try:
        env = command_env(root / "pycache", args.pythonpath, root / "cache")
        # Experiments are always planned by the installed planner; --pythonpath only changes what is timed.
        plan_env = command_env(root / "pycache", None, root / "cache")
        planned = plan(root, plan_env, 2, "cli_startup_planned")
        commands: dict[str, tuple[Callable[[], None], list[str]]] = {}

        def timed_command(label: str, argv: list[str], before: Callable[[], None] = lambda: None,
                          ok_codes: tuple[int, ...] = (0,)) -> None:
            def once() -> None:
                before()
                run(argv, env, root, ok_codes)
            commands[label] = (once, argv)

        timed_command("baseline 0: python -c pass", [sys.executable, "-c", "pass"])
        timed_command("plan-experiment --help", [str(PLAN_EXPERIMENT), "--help"])
        timed_command("plan-experiment status, planned", [str(PLAN_EXPERIMENT), "status", str(planned)])
        sacct_label = status_label = None
        if shutil.which("sacct") and shutil.which("sbatch"):
            from planner.jobs import slurm_query

            if slurm_query.slurm_available():
                submitted = plan(root, plan_env, args.jobs, "cli_startup_submitted")
                argv = finished_array(submitted, args.jobs, args.timeout)
                cache = submitted / ".plan-experiment" / "status-cache.json"
                sacct_label, status_label = "baseline 1: bare sacct, same jobs", f"plan-experiment status, {args.jobs} jobs, cold"
                timed_command(sacct_label, argv)
                # Without the cache of final states status asks sacct, as on its first call.
                timed_command(status_label, [str(PLAN_EXPERIMENT), "status", str(submitted)],
                              before=lambda: cache.unlink(missing_ok=True))
            else:
                print("Slurm is installed but no controller answers: no sacct comparison", file=sys.stderr)
        else:
            print("no sbatch/sacct on PATH: no sacct comparison", file=sys.stderr)

        for once, _ in commands.values():
            once()  # untimed: bytecode written, files in the page cache
        times: dict[str, list[float]] = {label: [] for label in commands}
        for _ in range(args.repeat):
            for label, (once, _) in commands.items():
                t0 = time.perf_counter()
                once()
                times[label].append(time.perf_counter() - t0)

        base = min(times["baseline 0: python -c pass"])
        print(f"whole commands, best / median of {args.repeat}; planner from "
              f"{args.pythonpath or 'the installed package'}")
        print(f"{'':44s} {'best s':>8s} {'median s':>9s} {'vs pass':>8s} {'vs sacct':>9s}")
        sacct_best = min(times[sacct_label]) if sacct_label else None
        for label, got in times.items():
            vs_sacct = f"{min(got) / sacct_best:8.2f}x" if sacct_best else f"{'-':>9s}"
            print(f"{label:44s} {min(got):8.3f} {statistics.median(got):9.3f} {min(got) / base:7.2f}x {vs_sacct}")
        print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; CPUs: {os.cpu_count()}")

        help_s = min(times["plan-experiment --help"])
        met = help_s <= HELP_TARGET_S
        print("\ntargets")
        print(f"  --help <= {HELP_TARGET_S} s:            {help_s:.3f} s -> {'met' if met else 'NOT met'}")
        if sacct_best and status_label:
            ratio = min(times[status_label]) / sacct_best
            met = met and ratio <= STATUS_RATIO_TARGET
            print(f"  status <= {STATUS_RATIO_TARGET:g}x bare sacct:     {ratio:.2f}x -> "
                  f"{'met' if ratio <= STATUS_RATIO_TARGET else 'NOT met'}")
        return 0 if met else 1
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
