"""`plan-experiment submit`."""

from __future__ import annotations

import click

from planner.core.errors import PlannerError


@click.command("submit")
def command() -> None:
    """Not built yet."""
    raise PlannerError("plan-experiment submit is not available yet")
