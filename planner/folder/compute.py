"""Compute estimates of a plan: per-run training time, evaluation time, GPU hours, disk.

``ComputeEstimates`` is its own object so the way it is computed can change (fallback
ranges when nothing is known, prior-run logs when they exist) while the summary, the
plan and the Slurm time request read the same fields.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class RunEstimate:
    """Training estimate of one fine-tune run."""

    run: str
    model: str
    train_seconds: float  # the figure used for planning (upper end of a range when preliminary)
    train_low_seconds: float
    basis: str
    confidence: str  # measured | scaled | preliminary
    slurm_time: str
    disk_bytes: float
    steps_per_epoch: int | None = None
    calculation: str = ""


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
    def total_train_seconds(self) -> float:
        """Sum of training estimates."""
        return sum(r.train_seconds for r in self.runs)

    @property
    def total_eval_seconds(self) -> float:
        """Sum of evaluation estimates."""
        return self.eval_seconds_each * self.eval_count

    def gpu_hours(self, gpus_per_run: int) -> float:
        """GPU hours of training and evaluation together."""
        return (self.total_train_seconds * max(gpus_per_run, 1) + self.total_eval_seconds) / 3600

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
        return next((r for r in self.runs if r.run == name), None)


def slurm_time_seconds(text: str) -> int:
    """Seconds of a Slurm time string (MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS)."""
    days = 0
    if "-" in text:
        d, text = text.split("-", 1)
        days = int(d)
        parts = [int(p) for p in text.split(":")]
        while len(parts) < 3:
            parts.append(0)
        h, m, s = parts
    else:
        parts = [int(p) for p in text.split(":")]
        if len(parts) == 1:
            h, m, s = 0, parts[0], 0
        elif len(parts) == 2:
            h, m, s = 0, parts[0], parts[1]
        else:
            h, m, s = parts
    return ((days * 24 + h) * 60 + m) * 60 + s
