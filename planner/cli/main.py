"""The ``plan-experiment`` command group and the one place domain errors become exit codes.

Each command lives in its own module, imported only when that command runs or shows its
own help: ``plan-experiment --help`` lists every command from :data:`COMMANDS` below and
imports none of them, and ``status`` never loads what ``analyze`` needs (pandas,
matplotlib). Keep this module's imports to click and the error classes.
"""

from __future__ import annotations

import importlib
from typing import Any

import click

from planner import __version__
from planner.spec.errors import PlannerError

EXIT_CODES_HELP = """Exit codes: 0 ok, 1 unexpected error, 2 bad input (settings or spec),
3 missing resource, 4 experiment exists, 5 scheduler error, 6 a job failed,
7 an experiment file could not be written."""

#: name -> (module holding its ``command``, the first line of that command's docstring).
#: The group's help is made from this table without importing any command module;
#: ``tests/test_cli_startup.py`` keeps each line equal to its command's own help.
COMMANDS: dict[str, tuple[str, str]] = {
    "new": ("planner.cli.new", "Plan an experiment: verify resources, estimate, and write the experiment folder."),
    "estimate": ("planner.cli.estimate", "Re-estimate an experiment from prior runs and rewrite its Compute Estimates."),
    "submit": ("planner.cli.submit", "Submit an experiment's fine-tune and evaluation jobs (idempotent)."),
    "status": ("planner.cli.status", "Show job states and refresh the status tables. Exit 6 if any job failed."),
    "analyze": ("planner.cli.analyze", "Tables, statistics, plots and a report from the experiment's results."),
    "demo": ("planner.cli.demo", "Plan, submit, train, evaluate, report and analyze the shipped demo experiment."),
}


class PlannerGroup(click.Group):
    """A click group that imports its commands on first use and prints PlannerErrors as one-line messages.

    A PlannerError ends the command with its class's exit code.
    """

    def list_commands(self, ctx: click.Context) -> list[str]:
        """Every command, sorted as click sorts them, without importing any."""
        return sorted({*COMMANDS, *self.commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """The command, importing its module the first time it is asked for."""
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            module = importlib.import_module(COMMANDS[cmd_name][0])
            self.add_command(module.command, cmd_name)
        return self.commands.get(cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The group's command list from :data:`COMMANDS`: the same text click would show, no imports."""
        names = self.list_commands(ctx)
        if not names:
            return
        limit = formatter.width - 6 - max(len(n) for n in names)
        rows = []
        for name in names:
            if name in COMMANDS:
                # A stub command shortens the line exactly as the real one would.
                rows.append((name, click.Command(name, help=COMMANDS[name][1]).get_short_help_str(limit)))
            elif not self.commands[name].hidden:
                rows.append((name, self.commands[name].get_short_help_str(limit)))
        with formatter.section("Commands"):
            formatter.write_dl(rows)

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


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="plan-experiment")


if __name__ == "__main__":  # pragma: no cover
    main()
