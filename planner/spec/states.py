"""Job states: the one vocabulary of Slurm, the local executor, the journal and status.

Pure. Every state a job or unit can be in, which of them are final, active or retryable
(three sets that agree: final and active never overlap, retryable is final less
COMPLETED, and every state is final or active), and the map from what sacct and squeue
print to these names.
"""

from __future__ import annotations

from typing import Literal, get_args

JobState = Literal[
    "PENDING",
    "RUNNING",
    "COMPLETED",
    "FAILED",
    "CANCELLED",
    "TIMEOUT",
    "OUT_OF_MEMORY",
    "NODE_FAIL",
    "PREEMPTED",
    "REQUEUED",
    "SUSPENDED",
    "BOOT_FAIL",
    "DEADLINE",
    "UNKNOWN",
    "LOST",
]
"""The normalised job states; everything Slurm reports maps onto one of these. ``LOST`` is
the planner's own: a job whose process ended without writing its ``job-state.json``."""

JOB_STATES: tuple[JobState, ...] = get_args(JobState)

#: The state of a unit the journal has sent but no scheduler has answered for yet.
SUBMITTED = "SUBMITTED"

#: Final states that count as a failure: ``submit --retry-failed`` submits these again.
RETRYABLE_STATES: frozenset[str] = frozenset(
    {
        "FAILED",
        "CANCELLED",
        "TIMEOUT",
        "OUT_OF_MEMORY",
        "NODE_FAIL",
        # Without --duplicates sacct shows a job's latest record only, so a PREEMPTED
        # record is final: a requeued job shows up as PENDING/REQUEUED instead.
        "PREEMPTED",
        "BOOT_FAIL",
        "DEADLINE",
        "LOST",
    }
)

#: States a job never leaves.
FINAL_STATES: frozenset[str] = frozenset({"COMPLETED"}) | RETRYABLE_STATES

#: States of a job that may still run: ``submit`` never sends its unit again.
ACTIVE_STATES: frozenset[str] = frozenset({SUBMITTED, "PENDING", "RUNNING", "REQUEUED", "SUSPENDED", "UNKNOWN"})

# Slurm states (long names from sacct/squeue %T, short codes from squeue %t) that are
# not already one of JOB_STATES. Transitional states map to the state the job is
# effectively in: a COMPLETING job has not ended yet, so it is still RUNNING.
_STATE_ALIASES: dict[str, JobState] = {
    "COMPLETING": "RUNNING",
    "CONFIGURING": "RUNNING",
    "RESIZING": "RUNNING",
    "SIGNALING": "RUNNING",
    "STAGE_OUT": "RUNNING",
    "STOPPED": "SUSPENDED",
    "REQUEUE_FED": "REQUEUED",
    "REQUEUE_HOLD": "PENDING",
    "RESV_DEL_HOLD": "PENDING",
    "SPECIAL_EXIT": "FAILED",
    "REVOKED": "CANCELLED",
    "PD": "PENDING",
    "R": "RUNNING",
    "CG": "RUNNING",
    "CF": "RUNNING",
    "RS": "RUNNING",
    "SI": "RUNNING",
    "SO": "RUNNING",
    "CD": "COMPLETED",
    "F": "FAILED",
    "CA": "CANCELLED",
    "TO": "TIMEOUT",
    "OOM": "OUT_OF_MEMORY",
    "NF": "NODE_FAIL",
    "PR": "PREEMPTED",
    "RQ": "REQUEUED",
    "RF": "REQUEUED",
    "RH": "PENDING",
    "RD": "PENDING",
    "S": "SUSPENDED",
    "ST": "SUSPENDED",
    "SE": "FAILED",
    "RV": "CANCELLED",
    "BF": "BOOT_FAIL",
    "DL": "DEADLINE",
}


def normalise_state(raw: str) -> JobState:
    """Map a Slurm state as printed by sacct or squeue to one of :data:`JOB_STATES`.

    Args:
        raw: e.g. ``"COMPLETED"``, ``"CANCELLED by 0"``, ``"CG"``, ``"OUT_OF_MEMORY"``.

    Returns:
        The normalised state; ``"UNKNOWN"`` for anything unrecognised.
    """
    words = raw.strip().upper().split()
    if not words:
        return "UNKNOWN"
    word = words[0].rstrip("+")  # squeue may flag states, e.g. "RUNNING+"
    if word in JOB_STATES:
        return word  # narrowed to JobState by the membership test
    return _STATE_ALIASES.get(word, "UNKNOWN")


def is_final(state: str) -> bool:
    """True for a state a job never leaves (COMPLETED, FAILED, CANCELLED, LOST, ...).

    Args:
        state: A normalised state or a raw Slurm state; raw ones are normalised first.
    """
    return normalise_state(state) in FINAL_STATES
