"""An experiment folder on disk: its spec, journal, lock, status cache and summary blocks."""

from __future__ import annotations

import json
from typing import TypeVar
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from filelock import FileLock, Timeout
from pydantic import BaseModel, ValidationError

from planner.folder.atomic import atomic_write_text
from planner.spec.commands import command_line
from planner.spec.errors import ConfigError, SchedulerError, StateWriteError
from planner.folder.compute import ESTIMATES, EstimatesFile
from planner.folder.journal import Journal
from planner.folder.markdown import SummaryFormatError, begin_marker, end_marker, replace_block
from planner.spec.runs import Plan, expand
from planner.spec.spec import ExperimentSpec, load_spec_text
from planner.spec.localconfig import AnalysisSettings, SlurmSettings

_Settings = TypeVar("_Settings", bound=BaseModel)

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
    def lock(self, timeout_s: float = 300, write: bool = True) -> Iterator[None]:
        """The experiment's lock: submit and every status refresh hold it while they write.

        ``write=False`` (``status --no-write``, ``submit --dry-run``) takes no lock and creates
        nothing, so a read-only folder (a colleague's, a read-only mount) can be viewed.
        """
        if not write:
            yield
            return
        if self.internal.exists() and not self.internal.is_dir():
            raise ConfigError(f"{self.internal}: is a file, not the planner's folder; move it away (the planner "
                              "recreates the folder; it holds only the lock, the status cache and submitit's files)")
        path = self.internal / "lock"
        if path.is_dir():
            raise ConfigError(f"{path}: is a folder, not the lock file; remove it (rmdir) and run again")
        try:
            self.internal.mkdir(exist_ok=True)
        except OSError as exc:
            raise StateWriteError(f"{self.internal}: cannot create the planner's folder ({exc.strerror}); use "
                                  "`status --no-write` or `submit --dry-run` to look without writing") from None
        lock = FileLock(str(path), timeout=timeout_s)
        try:
            lock.acquire()
        except Timeout:
            raise LockBusy(
                f"{self.path}: another plan-experiment command (a submit, status or a job's refresh) has held the "
                f"experiment's lock for {timeout_s:g} s; let it finish and try again"
            ) from None
        except OSError as exc:  # after Timeout, which is an OSError too
            raise StateWriteError(f"{path}: cannot take the lock ({exc.strerror}); use `status --no-write` or "
                                  "`submit --dry-run` to look without writing") from None
        try:
            yield
        finally:
            lock.release()

    def recorded_slurm(self) -> SlurmSettings:
        """The ``slurm:`` settings of the claude.local.md the experiment was planned with."""
        return self._recorded("slurm", SlurmSettings)

    def recorded_analysis(self) -> AnalysisSettings:
        """The ``analysis:`` settings of the claude.local.md the experiment was planned with (defaults without)."""
        return self._recorded("analysis", AnalysisSettings)

    def _recorded(self, section: str, model: type[_Settings]) -> _Settings:
        """One section of ``provenance.local_settings``, validated; its defaults when none was recorded."""
        recorded = (self.spec.provenance or {}).get("local_settings")
        value = recorded.get(section) if isinstance(recorded, dict) else None
        try:
            return model.model_validate(value or {})
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise ConfigError(
                f"{self.path / 'experiment.yaml'}: provenance.local_settings.{section}.{where}: {first['msg']}; "
                "fix that value in experiment.yaml (it was recorded from claude.local.md)"
            ) from None

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
        return Journal.from_json(_read_own_file(path, "journal", "restore it from a backup, or move it away to start over"),
                                 str(path))

    def write_journal(self, journal: Journal) -> None:
        """Write journal.json atomically (caller holds the lock)."""
        atomic_write_text(self.path / JOURNAL, journal.to_json())

    def read_cache(self) -> dict:
        """The status cache: last good refresh and final job states; anything of another shape is dropped.

        A cache is rebuilt, never trusted: an entry that is not a final state recorded by us
        is simply asked for again.
        """
        try:
            data = json.loads((self.internal / "status-cache.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        if not isinstance(data, dict):
            return {}
        out: dict = {}
        for key in ("final", "last"):  # job id -> a state we recorded
            entries = data.get(key)
            out[key] = {k: v for k, v in entries.items() if _cache_entry_ok(v)} if isinstance(entries, dict) else {}
        if isinstance(data.get("last_good_refresh"), str):
            out["last_good_refresh"] = data["last_good_refresh"]
        last = data.get("last_refresh")
        if isinstance(last, dict) and all(isinstance(last.get(k), str) for k in ("at", "by")):
            out["last_refresh"] = {"at": last["at"], "by": last["by"]}
        return out

    def write_cache(self, data: dict) -> None:
        """Write the status cache atomically (caller holds the lock); a cache needs no fsync."""
        self.internal.mkdir(exist_ok=True)
        atomic_write_text(self.internal / "status-cache.json", json.dumps(data, separators=(",", ":"), default=str), durable=False)

    def read_estimates(self) -> EstimatesFile | None:
        """estimates.json: per-run predicted seconds and Slurm time (None when absent)."""
        path = self.path / ESTIMATES
        if not path.exists():
            return None
        fix = f"run `{command_line('plan-experiment', 'estimate', self.path)}` to write it again"
        return EstimatesFile.from_json(_read_own_file(path, "estimates", fix), str(path))

    def update_summary_blocks(self, blocks: dict[str, str], optional: frozenset[str] = frozenset()) -> None:
        """Rewrite named generated blocks of the summary; every other byte stays (caller holds the lock).

        Blocks named in ``optional`` are skipped when both their markers are absent: a
        summary planned by an older version lacks them, and that is not the user's doing.

        Raises:
            SummaryFormatError: when the summary is missing, unreadable or its markers are damaged.
        """
        path = self.path / SUMMARY
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise SummaryFormatError(f"{path}: missing, so the status tables were not written; the terminal shows "
                                     "them (re-plan with `plan-experiment new --force` to get a summary back)") from None
        except (OSError, UnicodeDecodeError) as exc:
            reason = "not UTF-8 text" if isinstance(exc, UnicodeDecodeError) else (exc.strerror or type(exc).__name__)
            raise SummaryFormatError(f"{path}: cannot be read ({reason}), so the status tables were not written; "
                                     "restore it from a backup or move it away") from None
        new = text
        for name, content in blocks.items():
            if name in optional and begin_marker(name) not in new and end_marker(name) not in new:
                continue
            new = replace_block(new, name, content, str(path))
        if new != text:
            atomic_write_text(path, new)


def _cache_entry_ok(value: object) -> bool:
    if not isinstance(value, dict) or not isinstance(value.get("state"), str):
        return False
    for key in ("start", "end"):
        if value.get(key) is not None:
            try:
                datetime.fromisoformat(str(value[key]))
            except ValueError:
                return False
    return all(value.get(k) is None or (isinstance(value[k], int) and not isinstance(value[k], bool))
               for k in ("exit_code", "elapsed_s"))


def _read_own_file(path: Path, what: str, fix: str) -> str:
    """The text of one of our files; unreadable (a folder, not UTF-8) is a one-line error naming it."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: {what} is damaged (not UTF-8 text); {fix}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: {what} cannot be read ({exc.strerror or type(exc).__name__}); {fix}") from None


def load_experiment(path: Path) -> Experiment:
    """Read experiment.yaml (the source of truth) and expand its plan."""
    spec_path = path / "experiment.yaml"
    if not spec_path.is_file():
        raise ConfigError(f"{path}: not an experiment folder (no experiment.yaml); plan one with `plan-experiment new`")
    spec = load_spec_text(spec_path.read_text(encoding="utf-8"), str(spec_path))
    return Experiment(path=path.resolve(), spec=spec, plan=expand(spec))
