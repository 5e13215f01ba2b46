"""`plan-experiment demo`."""

from __future__ import annotations

import click

from planner.core.errors import PlannerError


@click.command("demo")
def command() -> None:
    """Not built yet."""
    raise PlannerError("plan-experiment demo is not available yet")
