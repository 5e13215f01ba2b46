"""The questions of ``plan-experiment new`` (seed 002), and how answers become a spec.

Pure: each question has a default and a parser that either returns a value or raises
ValueError with a message saying what to type instead. The prompting loop lives in
planner.plan.prompts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any, Callable

import yaml

from planner.spec.knobs import KNOBS, check_knob, coerce_knob
from planner.spec.spec import name_problem


@dataclass
class Question:
    """One question of the wizard."""

    key: str
    text: str
    default: str
    parse: Callable[[str], Any]
    help: str = ""


def parse_list(text: str) -> list[str]:
    """Comma-separated items, blanks dropped."""
    return [item.strip() for item in text.split(",") if item.strip()]


def parse_yes_no(text: str) -> bool:
    """yes/no."""
    value = text.strip().lower()
    if value in {"y", "yes", "true"}:
        return True
    if value in {"n", "no", "false"}:
        return False
    raise ValueError(f"answer yes or no (got {text!r})")


def parse_levels(knob: str, text: str) -> list[Any]:
    """Levels of one factor, e.g. ``4, 64`` or ``1e-5, 1e-4``; each checked against the knob."""
    levels = []
    for item in parse_list(text):
        try:
            value = yaml.safe_load(item)
        except yaml.YAMLError:
            value = item
        value = coerce_knob(knob, value)
        problem = check_knob(knob, value)
        if problem:
            raise ValueError(f"{knob} level {item!r} {problem}")
        levels.append(value)
    if not levels:
        raise ValueError(f"give at least one level for {knob}, separated by commas")
    return levels


def parse_factors(text: str) -> list[str]:
    """Names of the knobs that vary."""
    names = parse_list(text)
    unknown = [n for n in names if n not in KNOBS]
    if unknown:
        raise ValueError(f"unknown knob(s) {unknown}; choose from {', '.join(sorted(KNOBS))}")
    return names


def parse_int_list(text: str) -> list[int]:
    """Comma-separated whole numbers."""
    try:
        values = [int(v) for v in parse_list(text)]
    except ValueError:
        raise ValueError(f"give whole numbers separated by commas (got {text!r})") from None
    if not values:
        raise ValueError("give at least one number")
    return values


def parse_epochs_choice(text: str) -> Any:
    """last | all | a list of 0-based epochs."""
    value = text.strip().lower()
    if value in {"last", "all"}:
        return value
    try:
        return sorted({int(v) for v in parse_list(value)})
    except ValueError:
        raise ValueError("answer last, all, or 0-based epochs like 0, 1") from None


def parse_positive_int(text: str) -> int:
    """A whole number >= 0."""
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"give a whole number (got {text!r})") from None
    if value < 0:
        raise ValueError("give a number >= 0")
    return value


def default_warmup(train_examples: int, batch_size: int, epochs: int) -> int:
    """Warm-up steps to offer: a tenth of the training steps, at most 100 (torchtune's recipes use 100).

    A fixed 100 would be longer than a small run's whole training (a 50-step epoch).
    """
    steps = -(-train_examples // max(batch_size, 1)) * epochs
    return min(100, steps // 10)


def parse_warmup(text: str, total_steps: int | None) -> int:
    """Warm-up steps: a whole number >= 0, and no more than the training steps when known."""
    value = parse_positive_int(text)
    if total_steps is not None and value > total_steps:
        raise ValueError(f"{value} warm-up steps is longer than the whole training ({total_steps} steps); give at most {total_steps}")
    return value


def parse_name(text: str) -> str:
    """An experiment name: checked now, with the spec's own rules, so it is re-asked rather than failing later."""
    value = text.strip()
    problem = name_problem(value)
    if problem:
        raise ValueError(problem)
    return value


def suggested_name(task: str, factors: list[str], today: date) -> str:
    """Seed 002's naming pattern: task indicator, key factor, date."""
    factor = {"lora_rank": "lora_comparison", "learning_rate": "lr_sweep", "train_samples": "data_sizes"}.get(
        factors[0] if factors else "", "_".join(factors[:2]) or "baseline"
    )
    return f"{task}_{factor}_{today:%Y-%m-%d}"


def spec_from_answers(answers: dict[str, Any]) -> dict[str, Any]:
    """Assemble the spec mapping (the keys of experiment.yaml) from the wizard's answers."""
    controls: dict[str, Any] = {
        "epochs": answers["epochs"],
        "batch_size": answers["batch_size"],
        "max_seq_len": answers["max_seq_len"],
        "num_warmup_steps": answers["num_warmup_steps"],
        "system_prompt": answers["system_prompt"],
    }
    controls = {k: v for k, v in controls.items() if k not in answers["factors"]}
    return {
        "name": answers["name"],
        "question": answers["question"],
        "models": answers["models"],
        "dataset": {"path": answers["dataset"]},
        "factors": answers["factors"],
        "paired": {},
        "replicates": {"seeds": answers["seeds"]},
        "base_model_controls": answers["base_model_controls"],
        "controls": controls,
        "evaluation": {"tasks": answers["tasks"], "epochs": answers["eval_epochs"]},
        "resources": {"gpus": answers["gpus"], "time": "auto"},
    }
