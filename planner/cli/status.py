"""`plan-experiment status`."""

from __future__ import annotations

import click

from planner.core.errors import PlannerError


@click.command("status")
def command() -> None:
    """Not built yet."""
    raise PlannerError("plan-experiment status is not available yet")
