"""An experiment folder on disk: its spec, journal, lock, status cache and summary blocks."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock, Timeout

from planner.folder.atomic import atomic_write_text
from planner.spec.errors import ConfigError, SchedulerError
from planner.folder.compute import ESTIMATES, EstimatesFile
from planner.folder.journal import Journal
from planner.folder.markdown import begin_marker, end_marker, replace_block
from planner.spec.runs import Plan, expand
from planner.spec.spec import ExperimentSpec, load_spec_text

SUMMARY = "experiment_summary.md"
JOURNAL = "journal.json"
INTERNAL = ".plan-experiment"


class LockBusy(SchedulerError):
    """Another command or job held the experiment's lock longer than the caller would wait."""


@dataclass
class Experiment:
    """A planned experiment folder."""

    path: Path
    spec: ExperimentSpec
    plan: Plan

    @property
    def internal(self) -> Path:
        """Folder of the planner's own files (lock, submitit folders, caches)."""
        return self.path / INTERNAL

    @contextmanager
    def lock(self, timeout_s: float = 300) -> Iterator[None]:
        """The experiment's lock: submit and every status refresh hold it while they write."""
        self.internal.mkdir(exist_ok=True)
        lock = FileLock(str(self.internal / "lock"), timeout=timeout_s)
        try:
            lock.acquire()
        except Timeout:
            raise LockBusy(
                f"{self.path}: another plan-experiment command (a submit, status or a job's refresh) has held the "
                f"experiment's lock for {timeout_s:g} s; let it finish and try again"
            ) from None
        try:
            yield
        finally:
            lock.release()

    def run_dir(self, run: str) -> Path:
        """Folder of a run."""
        return self.path / run

    def unit_dir(self, unit: str) -> Path:
        """Folder of a unit: ``run`` or ``run/eval-name``."""
        if "/" in unit:
            run, name = unit.split("/", 1)
            return self.path / run / "eval" / name
        return self.path / unit

    def read_journal(self) -> Journal:
        """journal.json, or an empty journal before the first submit."""
        path = self.path / JOURNAL
        if not path.exists():
            return Journal(experiment=self.spec.name)
        return Journal.from_json(path.read_text(encoding="utf-8"), str(path))

    def write_journal(self, journal: Journal) -> None:
        """Write journal.json atomically (caller holds the lock)."""
        atomic_write_text(self.path / JOURNAL, journal.to_json())

    def read_cache(self) -> dict:
        """The status cache: last good refresh and last known job states."""
        try:
            return json.loads((self.internal / "status-cache.json").read_text())
        except (OSError, ValueError):
            return {}

    def write_cache(self, data: dict) -> None:
        """Write the status cache atomically (caller holds the lock); a cache needs no fsync."""
        self.internal.mkdir(exist_ok=True)
        atomic_write_text(self.internal / "status-cache.json", json.dumps(data, separators=(",", ":"), default=str), durable=False)

    def read_estimates(self) -> EstimatesFile | None:
        """estimates.json: per-run predicted seconds and Slurm time (None when absent)."""
        path = self.path / ESTIMATES
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        return EstimatesFile.from_json(text, str(path))

    def update_summary_blocks(self, blocks: dict[str, str], optional: frozenset[str] = frozenset()) -> None:
        """Rewrite named generated blocks of the summary; every other byte stays (caller holds the lock).

        Blocks named in ``optional`` are skipped when both their markers are absent: a
        summary planned by an older version lacks them, and that is not the user's doing.
        """
        path = self.path / SUMMARY
        text = path.read_text(encoding="utf-8")
        new = text
        for name, content in blocks.items():
            if name in optional and begin_marker(name) not in new and end_marker(name) not in new:
                continue
            new = replace_block(new, name, content, str(path))
        if new != text:
            atomic_write_text(path, new)


def load_experiment(path: Path) -> Experiment:
    """Read experiment.yaml (the source of truth) and expand its plan."""
    spec_path = path / "experiment.yaml"
    if not spec_path.is_file():
        raise ConfigError(f"{path}: not an experiment folder (no experiment.yaml); plan one with `plan-experiment new`")
    spec = load_spec_text(spec_path.read_text(encoding="utf-8"), str(spec_path))
    return Experiment(path=path.resolve(), spec=spec, plan=expand(spec))
