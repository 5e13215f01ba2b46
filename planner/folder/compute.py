"""Compute estimates of a plan (per-run training time, evaluation time, GPU hours, disk) and
estimates.json, the file they are kept in.

``ComputeEstimates`` is its own object so the way it is computed can change (fallback
ranges when nothing is known, prior-run logs when they exist) while the summary, the
plan and the Slurm time request read the same fields.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import math

from pydantic import BaseModel, ValidationError, field_validator

from planner.spec.errors import ConfigError
from planner.spec.slurm_values import is_slurm_time
from planner.spec.units import slurm_time_seconds


@dataclass
class RunEstimate:
    """Training estimate of one fine-tune run."""

    run: str
    model: str
    train_seconds: float  # the training loop, as planned (upper end of a range when preliminary)
    train_low_seconds: float
    basis: str
    confidence: str  # measured | scaled | modelled | low | preliminary
    slurm_time: str  # from job_seconds plus a margin
    disk_bytes: float
    steps_per_epoch: int | None = None
    calculation: str = ""
    job_seconds: float = 0.0  # the job's wall time: start-up + loop + saves
    startup_seconds: float = 0.0
    saves_seconds: float = 0.0
    job_basis: str = ""
    job_calculation: str = ""
    time_request: str = ""  # what the job asks for (planner.jobs.time_request); slurm_time is what auto would ask
    time_source: str = ""
    peak_memory_gib: float | None = None  # predicted peak per process: GPU memory, or resident memory of a CPU job

    @property
    def over_request(self) -> bool:
        """True when the job is expected to run longer than the time it asks for."""
        expected = self.job_seconds or self.train_seconds
        return bool(self.time_request) and expected > slurm_time_seconds(self.time_request)


@dataclass
class ComputeEstimates:
    """All estimates of a plan, as rendered into Compute Estimates."""

    runs: list[RunEstimate]
    eval_seconds_each: float
    eval_low_seconds_each: float
    eval_count: int
    eval_basis: str
    disk_free_bytes: int | None
    disk_basis: str
    batch_size_note: str
    notes: list[str] = field(default_factory=list)

    @property
    def preliminary(self) -> bool:
        """True when any figure comes from fallback ranges rather than prior runs."""
        return any(r.confidence == "preliminary" for r in self.runs) or not self.runs

    @property
    def modelled(self) -> bool:
        """True when some training figure comes from the cost model, no prior run on the device kind having timed it."""
        return any(r.confidence == "modelled" for r in self.runs)

    @property
    def total_train_seconds(self) -> float:
        """Sum of training estimates."""
        return sum(r.train_seconds for r in self.runs)

    @property
    def total_job_seconds(self) -> float:
        """Sum of the fine-tune jobs' wall times (start-up and saves included)."""
        return sum(r.job_seconds or r.train_seconds for r in self.runs)

    @property
    def total_eval_seconds(self) -> float:
        """Sum of evaluation estimates."""
        return self.eval_seconds_each * self.eval_count

    def gpu_hours(self, gpus_per_run: int) -> float:
        """GPU hours of training and evaluation together."""
        return (self.total_job_seconds * max(gpus_per_run, 1) + self.total_eval_seconds) / 3600

    def compute_hours(self, gpus_per_run: int, nodes: int = 1) -> str:
        """The plan's compute as the terminal and the summary both show it.

        GPU hours count every GPU of every node a run holds; a CPU-only plan (``gpus: 0``)
        has no GPU hours, so its job hours are shown as such.
        """
        if gpus_per_run <= 0:
            return f"{(self.total_job_seconds + self.total_eval_seconds) / 3600:.1f} CPU job hours (no GPUs)"
        return f"{self.gpu_hours(gpus_per_run * max(nodes, 1)):.1f} GPU hours"

    @property
    def disk_total_bytes(self) -> float:
        """Checkpoints of every run and epoch plus the 20% buffer of seed 002."""
        return sum(r.disk_bytes for r in self.runs) * 1.2

    def by_model(self) -> dict[str, list[RunEstimate]]:
        """Run estimates grouped by model, in plan order."""
        out: dict[str, list[RunEstimate]] = {}
        for r in self.runs:
            out.setdefault(r.model, []).append(r)
        return out

    def for_run(self, name: str) -> RunEstimate | None:
        """The estimate of one run."""
        # An index built on first use (a 10,000-run plan asks once per run); rebuilt if the
        # list of runs is replaced or grows. Kept out of the dataclass fields.
        key = (id(self.runs), len(self.runs))
        cached = self.__dict__.get("_run_index")
        if cached is None or cached[0] != key:
            cached = (key, {r.run: r for r in self.runs})
            self.__dict__["_run_index"] = cached
        found: RunEstimate | None = cached[1].get(name)
        return found


#: The file's name in the experiment folder.
ESTIMATES = "estimates.json"
#: The estimates.json format this version writes; a newer one is refused, not misread.
ESTIMATES_VERSION = 1


class RunFigures(BaseModel):
    """One run's figures in estimates.json.

    ``train_seconds`` is the training loop; ``job_seconds`` the job's wall time (start-up
    + loop + saves), on which ``slurm_time`` rests. Files written before job wall time
    existed have no ``job_seconds`` (None).
    """

    train_seconds: float
    train_low_seconds: float
    job_seconds: float | None = None
    startup_seconds: float | None = None
    saves_seconds: float | None = None
    job_basis: str | None = None
    slurm_time: str
    confidence: str
    basis: str
    disk_bytes: int
    steps_per_epoch: int | None = None
    time_request: str = ""  # what the job asks for; slurm_time is what auto would ask
    peak_memory_gib: float | None = None  # predicted peak per process (GPU memory; resident memory of a CPU job)

    @field_validator("slurm_time", "time_request")
    @classmethod
    def _slurm_time(cls, value: str) -> str:
        # submit hands these to sbatch: "soon" must stop here, not in a traceback there.
        if value and not is_slurm_time(value):
            raise ValueError(f"{value!r} is not a Slurm time")
        return value

    @field_validator("train_seconds", "train_low_seconds")
    @classmethod
    def _seconds(cls, value: float) -> float:
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"{value!r} is not a number of seconds")
        return value


class EstimatesFile(BaseModel):
    """estimates.json: what ``submit`` (Slurm time per run) and ``status`` (predicted seconds) read.

    One schema, one writer (:meth:`to_json`, from :meth:`of`), one reader (:meth:`from_json`,
    called by ``folder.experiment``).
    """

    version: int = ESTIMATES_VERSION
    preliminary: bool
    runs: dict[str, RunFigures]
    eval_seconds_each: float
    eval_count: int

    @classmethod
    def of(cls, estimates: ComputeEstimates) -> "EstimatesFile":
        """The file's content for a plan's estimates."""
        return cls(
            preliminary=estimates.preliminary,
            runs={
                r.run: RunFigures(train_seconds=round(r.train_seconds, 1), train_low_seconds=round(r.train_low_seconds, 1),
                                  job_seconds=round(r.job_seconds, 1), startup_seconds=round(r.startup_seconds, 1),
                                  saves_seconds=round(r.saves_seconds, 1), job_basis=r.job_basis,
                                  slurm_time=r.slurm_time, time_request=r.time_request, confidence=r.confidence, basis=r.basis,
                                  disk_bytes=int(r.disk_bytes), steps_per_epoch=r.steps_per_epoch,
                                  peak_memory_gib=None if r.peak_memory_gib is None else round(r.peak_memory_gib, 3))
                for r in estimates.runs
            },
            eval_seconds_each=estimates.eval_seconds_each,
            eval_count=estimates.eval_count,
        )

    def to_json(self) -> str:
        """The file's text."""
        return self.model_dump_json(indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str, source: str) -> "EstimatesFile":
        """Parse estimates.json text.

        Raises:
            ConfigError: one line naming ``source``, what is wrong and what to do.
        """
        fix = "run `plan-experiment estimate` on the experiment to write it again"
        try:
            data = cls.model_validate_json(text)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err.get("loc", ())) or "the file"
            raise ConfigError(f"{source}: estimates are damaged ({where}: {err['msg']}); {fix}") from None
        if data.version > ESTIMATES_VERSION:
            raise ConfigError(f"{source}: estimates version {data.version} was written by a newer plan-experiment; "
                              f"this one reads version {ESTIMATES_VERSION}: upgrade plan-experiment")
        return data
