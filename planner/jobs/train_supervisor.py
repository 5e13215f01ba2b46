"""The training supervisor: what train.sh runs inside the job to recover without a person.

``python -m planner.jobs.train_supervisor --run-dir DIR --job-id ID ... -- tune run ...``
runs the training command and, in the job's own allocation:

- retries after a CUDA out-of-memory error with the batch halved and gradient
  accumulation doubled (the effective batch unchanged), down to batch 1, at most
  ``--oom-retries`` times;
- resumes from the last saved epoch (torchtune's ``recipe_state.pt`` and the newest
  ``epoch_N/adapter_model.pt``) when the job starts again after a requeue, a preemption
  or its own stop before the time limit;
- on SIGUSR2 (Slurm's ``--signal``, sent ahead of the time limit) stops the training
  and requeues its own job, which then resumes; it does so only when the attempt saved
  a new epoch, so a limit too short for one epoch ends in TIMEOUT instead of a loop.

Every change is recorded in the run's ``recovery.json`` (also embedded in
``job-state.json``), the experiment's ``journal.json`` (``events``) and
``design-experiment.log``. Nothing here runs on the submitting host.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from types import FrameType

import yaml
from filelock import FileLock, Timeout

from planner.jobs.fault_injection import OOM_ENV, oom_threshold
from planner.jobs import recovery
from planner.folder.designlog import LogEntry
from planner.folder.journal import Journal, JournalEvent
from planner.jobs.recovery import Attempt, Deviation, RecoveryState
from planner.spec.errors import ConfigError

#: How much of a try's output is kept to look for the out-of-memory markers.
_TAIL_BYTES = 256 * 1024
_STATE_DIR = "recipe_state"
#: Left in the run folder while the job requeues itself (train.sh reads it).
REQUEUED_MARKER = ".requeued"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _say(text: str) -> None:
    # Lines start like train.sh's own, so a reader of slurm-<id>.out sees who decided what.
    sys.stdout.write(f"plan-experiment: {text}\n")
    sys.stdout.flush()


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


# ------------------------------------------------------------------ checkpoints


def saved_epochs(run_dir: Path) -> list[int]:
    """Epochs whose adapter torchtune finished writing (``epoch_N/adapter_model.pt``), ascending."""
    out = []
    for path in run_dir.glob("epoch_*"):
        suffix = path.name.removeprefix("epoch_")
        if suffix.isdigit() and (path / "adapter_model.pt").is_file():
            out.append(int(suffix))
    return sorted(out)


def resume_point(run_dir: Path, epochs: int) -> int | None:
    """The epoch a new try resumes from, or None to start from the base model.

    torchtune resumes from the newest ``epoch_N`` folder and from ``recipe_state/recipe_state.pt``
    (optimizer, data loader, epochs run), which it writes after the adapter of every epoch
    but the last. An adapter newer than the recipe state is a save cut short: that folder
    is moved aside (never deleted) so torchtune resumes from the consistent pair.
    """
    state = run_dir / _STATE_DIR / "recipe_state.pt"
    while True:
        saved = saved_epochs(run_dir)
        if epochs - 1 in saved:
            return None  # the last epoch saves no recipe state: the training is complete
        saved = [e for e in saved if e < epochs]
        if not saved or not state.is_file():
            return None
        newest = saved[-1]
        adapter = run_dir / f"epoch_{newest}" / "adapter_model.pt"
        if adapter.stat().st_mtime <= state.stat().st_mtime:
            return newest
        aside = run_dir / f"incomplete_epoch_{newest}_{int(time.time())}"
        os.replace(run_dir / f"epoch_{newest}", aside)
        _say(f"epoch_{newest} was saved without its recipe state (a save cut short); moved it to {aside.name}")


# ------------------------------------------------------------------ records


class Records:
    """recovery.json, job-state.json, journal.json events and design-experiment.log of one run."""

    def __init__(self, run_dir: Path, job_id: str, state: RecoveryState) -> None:
        self.run_dir = run_dir
        self.job_id = job_id
        self.state = state
        self.exp_dir = run_dir.parent

    @classmethod
    def load(cls, run_dir: Path, job_id: str, batch: int, accumulation: int) -> "Records":
        """Read recovery.json, or start one at the planned batch."""
        path = run_dir / recovery.RECOVERY_FILE
        state = RecoveryState.planned(batch, accumulation)
        if path.exists():
            try:
                state = RecoveryState.from_json(path.read_text(encoding="utf-8"))
            except ValueError as exc:
                aside = path.with_name(f"recovery.unreadable-{int(time.time())}.json")
                os.replace(path, aside)
                _say(f"{path.name} does not parse ({exc}); moved to {aside.name} and started a new one")
        return cls(run_dir, job_id, state)

    def save(self) -> None:
        """Write recovery.json, and embed it in job-state.json."""
        _atomic_write(self.run_dir / recovery.RECOVERY_FILE, self.state.to_json())
        job_state = self.run_dir / "job-state.json"
        try:
            data = json.loads(job_state.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return
        if isinstance(data, dict):
            data["recovery"] = recovery.as_dict(self.state)
            _atomic_write(job_state, json.dumps(data) + "\n")

    def event(self, kind: str, text: str, **fields: str) -> None:
        """Add an event to the experiment's journal and design log (under the experiment's lock)."""
        _say(text)
        if not (self.exp_dir / "experiment.yaml").is_file():
            return  # a run folder outside an experiment (train.sh copied elsewhere)
        lock_dir = self.exp_dir / ".plan-experiment"
        lock_dir.mkdir(exist_ok=True)
        try:
            with FileLock(str(lock_dir / "lock"), timeout=120):
                self._journal_event(kind, text)
                entry = LogEntry(datetime.now(), "RECOVERY", f"{self.run_dir.name} (job {self.job_id}): {text}", fields)
                with open(self.exp_dir / "design-experiment.log", "a", encoding="utf-8") as log:
                    log.write(entry.render())
        except Timeout:
            _say("the experiment's lock stayed busy for 120 s: this event is in recovery.json only")

    def _journal_event(self, kind: str, text: str) -> None:
        path = self.exp_dir / "journal.json"
        if not path.exists():
            return
        try:
            journal = Journal.from_json(path.read_text(encoding="utf-8"), str(path))
        except (OSError, ConfigError) as exc:
            _say(f"{exc}: this event is in recovery.json and the design log only")
            return
        journal.events.append(JournalEvent(time=_now(), unit=self.run_dir.name, job_id=self.job_id, kind=kind, text=text))
        _atomic_write(path, journal.to_json())


# ------------------------------------------------------------------ running tune


class Supervisor:
    """Runs the tries of one attempt and decides what follows each."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.run_dir = Path(args.run_dir).resolve()
        config = yaml.safe_load((self.run_dir / "finetune.yaml").read_text(encoding="utf-8")) or {}
        self.epochs = int(config.get("epochs", 1))
        batch = int(config.get("batch_size", 1))
        accumulation = int(config.get("gradient_accumulation_steps", 1) or 1)
        self.records = Records.load(self.run_dir, args.job_id, batch, accumulation)
        self.child: subprocess.Popen[bytes] | None = None
        self.stop: str | None = None  # "time limit" or "terminated"
        self.attempt: Attempt | None = None

    # signals ---------------------------------------------------------------

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        sys.stdout.write("\n")  # the training's progress bar may have left its line open
        if signum == signal.SIGUSR2:
            if self.stop is None and self._may_requeue():
                self.stop = "time limit"
                _say("asked to stop before the time limit: stopping the training to requeue this job")
                self._stop_child()
            elif self.stop is None:
                _say("asked to stop before the time limit, but requeuing would not help; training on")
            return
        self.stop = "terminated"
        self._stop_child()

    def _stop_child(self) -> None:
        if self.child is not None and self.child.poll() is None:
            try:
                os.killpg(self.child.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    def _may_requeue(self) -> bool:
        """Requeue only under Slurm, with resuming allowed, attempts left and a new epoch saved."""
        if not os.environ.get("SLURM_JOB_ID") or not self.args.resume or self.attempt is None:
            return False
        if self.attempt.number >= self.args.attempts:
            return False
        saved = saved_epochs(self.run_dir)
        newest = saved[-1] if saved else None
        # No epoch saved since this attempt began: a new attempt would redo the same work.
        return newest is not None and (self.attempt.resumed_from is None or newest > self.attempt.resumed_from)

    # the attempt -----------------------------------------------------------

    def begin(self) -> int | None:
        """Record the attempt's start; return an exit code when it must not train."""
        (self.run_dir / REQUEUED_MARKER).unlink(missing_ok=True)
        state = self.records.state
        earlier = state.attempts_of(self.args.job_id)
        if earlier and earlier[-1].outcome == "REQUEUED":
            why = f"its own requeue ({earlier[-1].detail})"
        else:
            why = _previous_attempt_end(self.args.job_id) if earlier else ""
        for old in earlier:
            if old.ended is None:
                old.ended, old.outcome = _now(), "INTERRUPTED"
        if earlier and earlier[-1].outcome == "INTERRUPTED":
            # Stopped by a signal it could not explain; sacct now says what it was.
            earlier[-1].detail = why
        number = len(earlier) + 1
        self.attempt = Attempt(number=number, job_id=self.args.job_id, started=_now())
        state.attempts.append(self.attempt)
        if number > self.args.attempts:
            self._end("GAVE_UP", f"attempt {number} > resources.attempts {self.args.attempts}")
            self.records.event("gave-up", f"started {number} times; resources.attempts is {self.args.attempts}: "
                                          "not training again (raise it, then submit --retry-failed)")
            return 1
        self.records.save()
        if number > 1:
            restarts = os.environ.get("SLURM_RESTART_COUNT", "")
            again = f"restarted by the scheduler (restart {restarts})" if restarts else "started again"
            self.records.event("restarted", f"attempt {number} of {self.args.attempts}: {again} after {why}; "
                                            "resuming from the last saved epoch")
        return None

    def _end(self, outcome: str, detail: str | None) -> None:
        assert self.attempt is not None
        self.attempt.ended, self.attempt.outcome, self.attempt.detail = _now(), outcome, detail
        self.records.save()

    def run(self) -> int:
        """Run tries until the training completes, fails for good, or the job is handed back."""
        for sig in (signal.SIGUSR2, signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        code = self.begin()
        if code is not None:
            return code
        assert self.attempt is not None
        oom_left = self.args.oom_retries
        while True:
            if self.stop == "terminated":  # between tries: do not start another
                self._end("INTERRUPTED", "stopped by the scheduler")
                return 143
            state = self.records.state
            start = resume_point(self.run_dir, self.epochs) if self.args.resume else None
            done = saved_epochs(self.run_dir)
            if self.args.resume and done and done[-1] >= self.epochs - 1 and self.attempt.number > 1:
                _say(f"every epoch is saved (epoch_{done[-1]}): nothing left to train")
                self._end("COMPLETED", "already trained")
                return 0
            if self.attempt.tries == 0:
                self.attempt.resumed_from = start
            self.attempt.tries += 1
            overrides = []
            if (state.batch, state.accumulation) != (state.planned_batch, state.planned_accumulation):
                overrides += [f"batch_size={state.batch}", f"gradient_accumulation_steps={state.accumulation}"]
            if start is not None:
                overrides.append("resume_from_checkpoint=True")
                _say(f"resuming from epoch_{start} (epochs 0..{start} are saved), batch {recovery.batch_text(state.batch, state.accumulation)}")
            code, tail = self._try(self.args.command + overrides)
            if self.stop == "time limit":
                return self._requeue()
            if self.stop == "terminated":
                self._end("INTERRUPTED", "stopped by the scheduler")
                return 143
            if code == 0:
                self._end("COMPLETED", None)
                return 0
            if not recovery.is_out_of_memory(tail):
                self._end("FAILED", f"exit code {code}")
                return code
            smaller = recovery.smaller_batch(state.batch, state.accumulation)
            if smaller is None or oom_left <= 0:
                why = "batch is 1" if smaller is None else f"resources.oom_retries ({self.args.oom_retries}) used up"
                self._end("OUT_OF_MEMORY", why)
                self.records.event("out-of-memory", f"out of memory at batch {recovery.batch_text(state.batch, state.accumulation)}; "
                                                    f"not retrying: {why}")
                return code
            oom_left -= 1
            before = recovery.batch_text(state.batch, state.accumulation)
            state.deviations.append(Deviation(time=_now(), job_id=self.args.job_id, reason="out-of-memory",
                                              batch_from=state.batch, accumulation_from=state.accumulation,
                                              batch_to=smaller[0], accumulation_to=smaller[1]))
            state.batch, state.accumulation = smaller
            self.records.save()
            after = recovery.batch_text(state.batch, state.accumulation)
            self.records.event(
                "out-of-memory-retry",
                f"batch {before} -> {after} after out-of-memory (effective batch {state.effective_batch} unchanged)",
                result=f"try {self.attempt.tries} failed with CUDA out of memory at batch {before}",
                decision=f"retry in the same allocation with batch_size={state.batch}, "
                         f"gradient_accumulation_steps={state.accumulation}",
                reasoning="halving the per-device batch and doubling gradient accumulation keeps the effective "
                          "batch, so the experiment is unchanged",
            )

    def _try(self, argv: list[str]) -> tuple[int, str]:
        """Run one ``tune run``, echoing its output; return its exit code and the tail of its output."""
        if oom_threshold(os.environ) is not None and argv and Path(argv[0]).name == "tune":
            _say(f"{OOM_ENV} is set: running the recipe with injected CUDA out-of-memory errors")
            argv = [sys.executable, "-m", "planner.jobs.fault_injection", *argv[1:]]
        _say("running " + " ".join(argv))
        # Its own process group: a stop reaches torchrun's workers too. The child ignores the
        # time-limit warning, which Slurm sends to every process of the job: this supervisor
        # alone decides what it means (a training it killed would end the job FAILED).
        self.child = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
                                      preexec_fn=_ignore_stop_warning)
        tail = b""
        assert self.child.stdout is not None
        out = sys.stdout.buffer
        fd = self.child.stdout.fileno()
        while True:
            try:
                chunk = os.read(fd, 65536)  # whatever is there: tqdm's \r updates pass at once
            except InterruptedError:
                continue
            if not chunk:
                break
            out.write(chunk)
            out.flush()
            tail = (tail + chunk)[-_TAIL_BYTES:]
        code = self.child.wait()
        self.child = None
        # Estimates read this line: the training's peak memory, for the memory model of CPU jobs
        # (torchtune logs GPU memory only). Linux counts ru_maxrss in KiB, over every waited-for
        # descendant: torchrun's workers included.
        peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        if peak_kib > 0:
            _say(f"peak memory (RSS) {peak_kib / 1024**2:.3f} GiB")
        return code, tail.decode("utf-8", "replace")

    def _requeue(self) -> int:
        assert self.attempt is not None
        saved = saved_epochs(self.run_dir)
        at = f"epoch_{saved[-1]} saved" if saved else "no epoch saved"
        self._end("REQUEUED", f"time limit, {at}")
        self.records.event("requeued", f"stopped before the time limit ({at}); requeuing job {self.args.job_id} "
                                       "to resume from the last saved epoch")
        # Slurm ends this attempt with TERM right after the requeue: the marker tells train.sh it is no failure.
        marker = self.run_dir / REQUEUED_MARKER
        marker.touch()
        proc = subprocess.run(["scontrol", "requeue", self.args.job_id], capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            marker.unlink(missing_ok=True)
            message = (proc.stderr or proc.stdout).strip().splitlines()
            self.records.event("requeue-failed", f"scontrol requeue failed: {message[0] if message else proc.returncode}; "
                                                 "submit --retry-failed resumes from the last saved epoch")
            return 1
        return recovery.REQUEUED_EXIT


def _ignore_stop_warning() -> None:
    """In the forked child, before the training command starts: ignore SIGUSR2 (kept across exec)."""
    signal.signal(signal.SIGUSR2, signal.SIG_IGN)


def _previous_attempt_end(job_id: str) -> str:
    """Why Slurm ended this job's previous run (sacct keeps one record per run with -D)."""
    if not os.environ.get("SLURM_JOB_ID"):
        return "stopped before it ended"
    try:
        proc = subprocess.run(["sacct", "-D", "-X", "-n", "-P", "-j", job_id, "-o", "State"], capture_output=True,
                              text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return recovery.interruption([])
    return recovery.interruption(proc.stdout.splitlines() if proc.returncode == 0 else [])


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The supervisor's options (train.sh writes them from the spec's resources)."""
    parser = argparse.ArgumentParser(prog="python -m planner.jobs.train_supervisor", description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", required=True, help="the run's folder (holds finetune.yaml)")
    parser.add_argument("--job-id", required=True, help="the scheduler's job id (array tasks as ID_TASK)")
    parser.add_argument("--oom-retries", type=int, default=3, help="resources.oom_retries")
    parser.add_argument("--attempts", type=int, default=3, help="resources.attempts")
    parser.add_argument("--no-resume", dest="resume", action="store_false", help="resources.resume: false")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then the training command")
    args = parser.parse_args(argv)
    if args.command[:1] == ["--"]:
        args.command = args.command[1:]
    if not args.command:
        parser.error("give the training command after --")
    return args


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m planner.jobs.train_supervisor``."""
    # Until the supervisor can act on the time-limit warning, it must not end the job: Slurm
    # may send it up to a minute early (train.sh ignores it too; this covers a start by hand).
    signal.signal(signal.SIGUSR2, signal.SIG_IGN)
    args = parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        oom_threshold(os.environ)
    except ValueError as exc:
        _say(str(exc))
        return 2
    return Supervisor(args).run()


if __name__ == "__main__":
    sys.exit(main())
