"""One vocabulary of job states: the final, active and retryable sets agree."""

from __future__ import annotations

from planner.spec import states
from planner.spec.states import ACTIVE_STATES, FINAL_STATES, JOB_STATES, RETRYABLE_STATES, SUBMITTED, is_final


def test_every_state_is_final_or_active_and_never_both() -> None:
    assert not FINAL_STATES & ACTIVE_STATES
    assert FINAL_STATES | ACTIVE_STATES == set(JOB_STATES) | {SUBMITTED}


def test_retryable_is_final_less_completed() -> None:
    assert RETRYABLE_STATES == FINAL_STATES - {"COMPLETED"}


def test_a_lost_job_is_final_and_retryable() -> None:
    # A local job whose process ended without a job-state.json: status must stop
    # waiting for it, and --retry-failed must send it again.
    assert is_final("LOST") and "LOST" in RETRYABLE_STATES


def test_every_slurm_alias_maps_to_a_known_state() -> None:
    assert set(states._STATE_ALIASES.values()) <= set(JOB_STATES)

