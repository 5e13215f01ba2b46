"""One module for units: Slurm times, clocks and prediction errors read and written one way."""

from __future__ import annotations

import pytest

from planner.spec.units import clock, prediction_error_pct, slurm_elapsed_seconds, slurm_time, slurm_time_seconds


def test_prediction_error_is_relative_to_the_prediction() -> None:
    assert prediction_error_pct(100.0, 120.0) == 20.0  # ran 20 % longer than predicted
    assert prediction_error_pct(200.0, 150.0) == -25.0


@pytest.mark.parametrize("seconds", [15 * 60, 3600, 5 * 3600 + 900, 26 * 3600])
def test_a_slurm_time_the_planner_writes_reads_back_as_at_least_the_estimate(seconds: int) -> None:
    text = slurm_time(seconds, margin=0.0)
    assert slurm_time_seconds(text) >= seconds
    assert slurm_elapsed_seconds(text) == slurm_time_seconds(text)  # squeue's clock, same value


def test_clock_is_what_sacct_shows() -> None:
    assert clock(3 * 3600 + 7 * 60 + 5) == "3:07:05"
