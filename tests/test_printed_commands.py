"""Every command the tool prints for people to paste runs exactly the words it names.

An experiment named with ``$(...)``, backticks, ``;`` and quotes, planned into a folder whose
path holds ``$(...)`` too: each printed command (``new``'s Next line, the summary's Quick
Reference, the design log, status advice, the local executor's preview) is pasted into bash
in a sandbox where the commands it calls are stubs that record their arguments. Nothing the
names hold may run, and each stub must receive the experiment's path as one word.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from submit_support import cli, copy_example, ok

HOSTILE_NAME = "h$(touch owned1)`touch owned2`;touch owned3 'q\" &"
STUBS = ("plan-experiment", "bash", "tail", "df", "squeue")


def _stubs(folder: Path, log: Path) -> dict[str, str]:
    folder.mkdir()
    for name in STUBS:
        stub = folder / name
        # Each argument on its own NUL-terminated record: word boundaries stay visible.
        stub.write_text(f'#!/bin/sh\nprintf "%s\\0" {name} "$@" >> "{log}"\nprintf "\\n" >> "{log}"\n')
        stub.chmod(0o755)
    return {**os.environ, "PATH": f"{folder}{os.pathsep}{os.environ['PATH']}"}


def _code_spans(markdown: str) -> list[str]:
    """Inline code spans as a markdown reader sees them (any fence length, one pad space stripped)."""
    spans = []
    for _, text in re.findall(r"(?<!`)(`+)(?!`)(.+?)(?<!`)\1(?!`)", markdown):
        spans.append(text[1:-1] if text.startswith(" ") and text.endswith(" ") and text.strip() else text)
    return spans


def _printed_commands(exp: Path, new_stdout: str, status_stderr: str, preview: str) -> list[str]:
    commands = [line.removeprefix("Next: ") for line in new_stdout.splitlines() if line.startswith("Next: ")]
    quick = (exp / "experiment_summary.md").read_text().split("## Quick Reference", 1)[1].split("\n## ", 1)[0]
    commands += [c for c in _code_spans(quick) if c.split(" ")[0] in STUBS]
    log = (exp / "design-experiment.log").read_text()
    commands += [c for line in log.splitlines() if line.startswith("Next Steps:") for c in re.findall(r"`(.+)`", line)]
    commands += re.findall(r"run `(.+)` first", status_stderr)
    commands += [line for line in preview.splitlines() if line.startswith("bash ")]
    return commands


def test_every_printed_command_runs_only_what_it_names(tmp_path: Path) -> None:
    spec = copy_example(tmp_path / "src", {"name": HOSTILE_NAME})
    out = tmp_path / "o $(touch owned4)"
    new = ok(cli("new", "--spec", spec, "--yes", "--out", out, cwd=tmp_path))
    exp = out / HOSTILE_NAME
    assert exp.is_dir()
    status = cli("status", exp, "--watch", cwd=tmp_path)
    preview = ok(cli("submit", exp, "--dry-run", "--executor", "local", cwd=tmp_path))
    commands = _printed_commands(exp, new, status.stderr, preview)
    # Next, 4 Common Commands with a path, 3 Next Steps with a path, the log's, status's, the preview's.
    assert len(commands) >= 10, commands
    sandbox, log = tmp_path / "sandbox", tmp_path / "calls.log"
    sandbox.mkdir()
    env = _stubs(tmp_path / "stubs", log)
    for command in commands:
        subprocess.run(["/bin/bash", "-c", command], cwd=sandbox, env=env, check=True, capture_output=True)
    assert not [p for p in tmp_path.rglob("owned*")], "a printed command ran part of a name"
    calls = [c.split("\0")[:-1] for c in log.read_text().split("\n") if c]
    assert len(calls) == len(commands)
    for argv in calls:
        if argv[0] == "squeue":  # `squeue -u $USER` names no path
            continue
        # Every other stub got the experiment folder (a file under it, or its parent for df) as one word.
        assert any(a == str(exp) or a.startswith(f"{exp}/") or a == str(exp.parent) for a in argv[1:]), argv
