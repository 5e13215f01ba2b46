"""The docs stay true to the code: every command, option, knob and setting is documented."""

from __future__ import annotations

import re

import click

from planner.cli.main import cli
from planner.spec.hardware import DEFAULT_GPU, DEVICES
from planner.spec.knobs import KNOBS
from planner.spec.localconfig import AnalysisSettings, EnvironmentSettings, LimitSettings, LocalSettings, SlurmSettings
from planner.spec.spec import ExperimentSpec, ResourcesSpec, TaskSpec
from tests.conftest import ROOT


def test_every_command_and_option_is_documented() -> None:
    commands = (ROOT / "docs" / "commands.md").read_text()
    readme = (ROOT / "README.md").read_text()
    ctx = click.Context(cli)
    # The group imports its commands on demand: ask it for each one, as click does.
    by_name = {name: cli.get_command(ctx, name) for name in cli.list_commands(ctx)}
    assert set(by_name) == {"new", "estimate", "submit", "status", "analyze", "demo"}
    for name, command in by_name.items():
        assert command is not None, name
        assert f"## `plan-experiment {name}`" in commands, name
        assert f"plan-experiment {name}" in readme, name
        section = commands.split(f"## `plan-experiment {name}`")[1].split("\n## ")[0]
        for param in command.params:
            for opt in param.opts:
                if opt.startswith("--"):
                    assert f"`{opt}" in section, f"{name} {opt}"


def test_every_knob_and_spec_key_is_documented() -> None:
    spec = (ROOT / "docs" / "spec.md").read_text()
    for knob in KNOBS:
        assert f"| `{knob}` |" in spec, knob
    for model in (ExperimentSpec, ResourcesSpec, TaskSpec):
        for key in model.model_fields:
            assert re.search(rf"`([a-z_]+\.)?{key}[`.]", spec), key


def test_every_local_setting_is_documented() -> None:
    doc = (ROOT / "docs" / "local-settings.md").read_text()
    example = (ROOT / "claude.local.md.example").read_text()
    for key in LocalSettings.model_fields:
        if key in ("slurm", "environment", "limits", "analysis"):
            continue
        assert f"| `{key}` |" in doc, key
        assert f"{key}:" in example, key
    for prefix, model in (("slurm", SlurmSettings), ("environment", EnvironmentSettings), ("limits", LimitSettings),
                          ("analysis", AnalysisSettings)):
        for key in model.model_fields:
            assert f"| `{prefix}.{key}` |" in doc, key


def test_every_device_of_the_table_is_documented() -> None:
    doc = (ROOT / "docs" / "local-settings.md").read_text()
    devices = doc.split("## Devices")[1]
    for key in DEVICES:
        assert f"`{key}`" in devices, key
    assert f"`{DEFAULT_GPU}` is assumed" in devices
