"""Find and read claude.local.md."""

from __future__ import annotations

import os
from pathlib import Path

from planner.spec.errors import ConfigError
from planner.spec.localconfig import LocalSettings, parse_local_settings
from planner.spec.loading import decode_text

ENV_VAR = "PLAN_EXPERIMENT_LOCAL"


def find_local_settings(explicit: Path | None, near: Path | None = None) -> Path:
    """``--local-config``, then ``$PLAN_EXPERIMENT_LOCAL``, then ./claude.local.md, then beside ``near``."""
    if explicit is not None:
        if not explicit.is_file():
            raise ConfigError(f"--local-config {explicit}: file not found; give the path of your claude.local.md")
        return explicit
    env = os.environ.get(ENV_VAR)
    if env:
        if not Path(env).is_file():
            raise ConfigError(f"${ENV_VAR}={env}: file not found; point it at your claude.local.md or unset it")
        return Path(env)
    for candidate in (Path.cwd() / "claude.local.md", (near / "claude.local.md") if near else None):
        if candidate is not None and candidate.is_file():
            return candidate
    raise ConfigError(
        "no local settings found (looked for --local-config, $PLAN_EXPERIMENT_LOCAL and "
        "./claude.local.md); copy claude.local.md.example to claude.local.md and edit its yaml block"
    )


def load_local_settings(path: Path) -> LocalSettings:
    """Read, validate and resolve relative directories against the file's folder."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read local settings ({exc.strerror}); check the path and permissions")
    text = decode_text(data, str(path))
    return parse_local_settings(text, str(path)).resolved(str(path.resolve().parent))
