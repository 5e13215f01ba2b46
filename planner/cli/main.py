"""The ``plan-experiment`` command group and the one place domain errors become exit codes."""

from __future__ import annotations

from typing import Any

import click

from planner import __version__
from planner.spec.errors import PlannerError

EXIT_CODES_HELP = """Exit codes: 0 ok, 1 unexpected error, 2 bad input (settings or spec),
3 missing resource, 4 experiment exists, 5 scheduler error, 6 a job failed."""


class PlannerGroup(click.Group):
    """A click group that prints PlannerErrors as one-line messages with their exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except PlannerError as exc:
            for line in exc.lines():
                click.echo(f"error: {line}" if not line.startswith("  ") else line, err=True)
            ctx.exit(exc.exit_code)


@click.group(cls=PlannerGroup, epilog=EXIT_CODES_HELP)
@click.version_option(__version__, prog_name="plan-experiment")
def cli() -> None:
    """Plan, estimate, submit and follow LLM fine-tuning experiments on Slurm."""


def _register() -> None:
    # Imported here so each command stays in its own module (one module per command).
    from planner.cli import demo, estimate, new, status, submit

    for module in (new, estimate, submit, status, demo):
        cli.add_command(module.command)


_register()


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="plan-experiment")


if __name__ == "__main__":  # pragma: no cover
    main()
