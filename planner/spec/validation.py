"""Turn pydantic validation errors into one-line messages that name key, value and fix."""

from __future__ import annotations

import difflib
from typing import Any

from pydantic import BaseModel, ValidationError

from planner.spec.loading import short_repr


def _model_at(model: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """Follow ``loc`` through nested pydantic models; return the model that owns the last key."""
    current: type[BaseModel] | None = model
    for part in loc[:-1]:
        if current is None or not isinstance(part, str):
            return None if current is None else current
        field = current.model_fields.get(part)
        if field is None:
            return None
        ann = field.annotation
        current = ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None
    return current


def _key_part(part: Any) -> str:
    """One step of a key path, on one line: a key written with odd characters is quoted."""
    text = str(part)
    return text if text.isprintable() and len(text) <= 60 else short_repr(part)


def nearest(word: str, choices: list[str]) -> str | None:
    """Return the closest valid spelling of ``word``, if any is close enough."""
    found = difflib.get_close_matches(word, choices, n=1, cutoff=0.5)
    return found[0] if found else None


def describe_errors(exc: ValidationError, model: type[BaseModel], source: str) -> list[str]:
    """Render every error of ``exc`` as ``source: key: problem (got value); fix``."""
    problems: list[str] = []
    for err in exc.errors():
        loc = tuple(err.get("loc", ()))
        if loc and loc[-1] == "[key]":  # a mapping's key itself is wrong: the path ends at that key
            loc = loc[:-1]
        key = ".".join(_key_part(p) for p in loc) or "(top level)"
        value = err.get("input")
        if err.get("type") == "extra_forbidden":
            owner = _model_at(model, loc)
            valid = sorted(owner.model_fields) if owner is not None else []
            guess = nearest(str(loc[-1]), valid) if loc else None
            hint = f"did you mean '{guess}'?" if guess else f"valid keys: {', '.join(valid)}"
            problems.append(f"{source}: unknown key '{key}'; {hint}")
            continue
        if err.get("type") == "missing":
            problems.append(f"{source}: missing required key '{key}'; add it")
            continue
        msg = err.get("msg", "invalid value")
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
        shown = short_repr(value) if not isinstance(value, dict) else "a mapping"
        problems.append(f"{source}: {key}: {msg} (got {shown})")
    return problems
