"""`plan-experiment estimate`."""

from __future__ import annotations

import click

from planner.core.errors import PlannerError


@click.command("estimate")
def command() -> None:
    """Not built yet."""
    raise PlannerError("plan-experiment estimate is not available yet")
