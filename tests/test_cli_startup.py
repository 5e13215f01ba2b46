"""The command line starts without loading what only some commands need.

Behaviour, not time (``benchmarks/cli_startup.py`` measures): the group's help lists every
command from the table in ``planner.cli.main`` without importing a command module, and
neither that nor ``status`` loads pandas, matplotlib, torch or submitit. Each import check
runs in a fresh interpreter: this test process has loaded all of them already.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import click
import pytest
from submit_support import cli, copy_example, ok, plan

from planner.cli.main import COMMANDS, cli as group

HEAVY = ("pandas", "matplotlib", "numpy", "torch", "torchtune", "scipy")


def _modules_after(code: str) -> set[str]:
    """Top-level module names loaded by a fresh interpreter that runs ``code``."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}})))"
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True)
    return set(json.loads(proc.stdout.splitlines()[-1]))


def test_help_lists_every_command_as_click_would_from_the_commands_themselves() -> None:
    out = ok(cli("--help"))
    listed = out.split("Commands:\n", 1)[1].split("\n\n", 1)[0]
    assert [line.split()[0] for line in listed.splitlines()] == sorted(COMMANDS)
    ctx = click.Context(group)
    eager = click.Group("plan-experiment", help=group.help, epilog=group.epilog, params=group.params)
    for name, (_, line) in COMMANDS.items():
        command = group.get_command(ctx, name)
        assert command is not None and command.help is not None, name
        assert command.help.strip().split("\n\n")[0] == line, f"{name}: the table's line is not its docstring's"
        eager.add_command(command, name)
    # The lazy group's help is the eager group's, character for character.
    assert group.get_help(click.Context(group, info_name="plan-experiment")) == \
        eager.get_help(click.Context(eager, info_name="plan-experiment"))


def test_importing_the_group_loads_no_command_module_and_nothing_heavy() -> None:
    code = ("import sys\nimport planner.cli.main\n"
            "assert [m for m in sys.modules if m.startswith('planner.cli.')] == ['planner.cli.main'], "
            "[m for m in sys.modules if m.startswith('planner.cli.')]")
    loaded = _modules_after(code)
    assert not loaded & {*HEAVY, "submitit", "rich", "pydantic"}, loaded & {*HEAVY, "submitit", "rich", "pydantic"}


def test_group_help_imports_no_command_module() -> None:
    code = ("import sys\nfrom planner.cli.main import cli\n"
            "try:\n    cli(['--help'], prog_name='plan-experiment')\nexcept SystemExit:\n    pass\n"
            "assert not [m for m in sys.modules if m.startswith('planner.cli.') and m != 'planner.cli.main'], "
            "[m for m in sys.modules if m.startswith('planner.cli.')]")
    loaded = _modules_after(code)
    assert not loaded & set(HEAVY), loaded & set(HEAVY)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_each_command_shows_its_help(name: str) -> None:
    out = ok(cli(name, "--help"))
    assert f"Usage: plan-experiment {name}" in out


def test_status_loads_neither_analysis_nor_training_libraries(tmp_path: Path) -> None:
    exp = plan(copy_example(tmp_path / "src"), tmp_path / "out")
    code = ("import sys\nfrom planner.cli.main import cli\n"
            f"try:\n    cli(['status', {str(exp)!r}], prog_name='plan-experiment')\n"
            "except SystemExit as exc:\n    assert exc.code in (0, None), exc.code\n")
    loaded = _modules_after(code)
    assert not loaded & {*HEAVY, "submitit", "jinja2"}, loaded & {*HEAVY, "submitit", "jinja2"}


def test_an_unknown_command_is_refused_with_the_usage() -> None:
    proc = cli("nosuch")
    assert proc.returncode == 2 and "No such command 'nosuch'" in proc.stderr
