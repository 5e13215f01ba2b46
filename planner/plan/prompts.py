"""Interactive prompts for the ``new`` wizard (rich), behind a small interface.

The wizard re-asks a question until its answer parses, showing the parser's message, so a
typo costs one line, not the whole session.
"""

from __future__ import annotations

import functools
import os
from datetime import date
from pathlib import Path
from typing import Any, Callable

from rich.console import Console
from rich.prompt import Prompt

from planner.plan.fs import check_dataset, check_model
from planner.plan.verify import resolve_data_path, resolve_model
from planner.spec import wizard as w
from planner.spec.localconfig import LocalSettings


class Prompter:
    """Asks questions on a console; a test passes a console reading from a pipe."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console()

    def ask(self, text: str, default: str, parse: Callable[[str], Any], help: str = "") -> Any:
        """Ask until ``parse`` accepts the answer."""
        if help:
            self.console.print(f"[dim]{help}[/dim]")
        while True:
            answer = Prompt.ask(text, default=default or None, console=self.console)
            try:
                return parse(answer if answer is not None else "")
            except ValueError as exc:
                self.console.print(f"[red]{exc}[/red]")

    def confirm(self, text: str, default: bool = True) -> bool:
        """A yes/no question."""
        return bool(self.ask(text, "yes" if default else "no", w.parse_yes_no))


def run_wizard(prompter: Prompter, settings: LocalSettings, today: date) -> dict[str, Any]:
    """Ask seed 002's questions; return the spec mapping."""
    p = prompter
    p.console.rule("[bold]1. Experiment design")
    question = p.ask("What is the scientific question?", "", lambda s: s.strip() or _raise("say in one line what you test"))
    factors = p.ask(
        "Which knobs vary? (comma-separated, e.g. lora_rank, learning_rate; empty for none)", "lora_rank",
        lambda s: w.parse_factors(s) if s.strip() else [],
        help="Knobs: " + ", ".join(sorted(w.KNOBS)),
    )
    levels = {f: p.ask(f"Levels of {f} (comma-separated)", "", functools.partial(_parse_levels, f)) for f in factors}
    seeds = p.ask("Seeds (replicates, comma-separated)", "42", w.parse_int_list)
    base_controls = p.confirm("Include base-model controls (evaluate each base model without fine-tuning)?", True)

    p.console.rule("[bold]2. Resources")
    available = sorted(x.name for x in Path(settings.models_dir).iterdir() if x.is_dir()) if Path(settings.models_dir).is_dir() else []
    if available:
        p.console.print(f"Models in {settings.models_dir}: {', '.join(available)}")
    models = p.ask("Which models? (names under models_dir, or paths; comma-separated)", available[0] if available else "",
                   lambda s: _existing_models(w.parse_list(s), settings))
    datasets = sorted(x.name for x in Path(settings.datasets_dir).glob("*.json")) if Path(settings.datasets_dir).is_dir() else []
    dataset = p.ask(f"Dataset (JSON with train/validation/test; relative to {settings.datasets_dir})", datasets[0] if datasets else "",
                    lambda s: _existing_dataset(s.strip(), settings))
    tasks: list[dict[str, str]] = []
    while True:
        name = p.ask("Evaluation task name (empty to finish)", "" if tasks else "capitalization", lambda s: s.strip())
        if not name:
            break
        script = p.ask(f"Script of task {name}", f"tasks/{name}/eval.py", lambda s: s.strip() or _raise("give a path"))
        tasks.append({"name": name, "script": script})

    p.console.rule("[bold]3. Training configuration")
    epochs = p.ask("Epochs", "2", lambda s: _knob("epochs", s))
    gpus = p.ask("GPUs per job (0 = CPU)", str(settings.slurm.gpus_per_node), w.parse_positive_int)
    batch = p.ask("Batch size (examples per GPU per step)" if gpus else "Batch size (examples per step)", "4",
                  lambda s: _knob("batch_size", s))
    max_seq_len = p.ask("Max sequence length (tokens per example; longer ones are cut)", str(w.KNOBS["max_seq_len"].default),
                        lambda s: _knob("max_seq_len", s))
    train = _train_examples(dataset, settings)
    epochs_all = max(levels.get("epochs", [epochs]))
    batch_low = min(levels.get("batch_size", [batch]))
    total = None if train is None else -(-train // batch_low) * epochs_all
    warmup = p.ask(
        "Warm-up steps (linear warm-up of the learning rate)" + (f"; training has ~{total} steps" if total is not None else ""),
        str(w.default_warmup(train, batch_low, epochs_all) if train is not None else w.KNOBS["num_warmup_steps"].default),
        lambda s: w.parse_warmup(s, total),
    )
    system_prompt = p.ask("System prompt for training and evaluation", "", lambda s: s)

    p.console.rule("[bold]4. Evaluation strategy")
    eval_epochs = p.ask("Which epochs to evaluate? (last, all, or 0-based list)", "last", w.parse_epochs_choice)

    p.console.rule("[bold]5. Naming")
    suggestion = w.suggested_name(tasks[0]["name"][:3] if tasks else "exp", factors, today)
    # Checked as it is typed, like every other answer: a bad or taken name is asked again
    # rather than failing after the last question and losing every answer.
    name = p.ask("Experiment name", suggestion, lambda s: _free_name(w.parse_name(s), settings))
    return w.spec_from_answers({
        "name": name, "question": question, "models": models, "dataset": dataset, "factors": levels,
        "seeds": seeds, "base_model_controls": base_controls, "tasks": tasks, "epochs": epochs,
        "batch_size": batch, "gpus": gpus, "system_prompt": system_prompt, "eval_epochs": eval_epochs,
        "max_seq_len": max_seq_len, "num_warmup_steps": warmup,
    })


def _free_name(name: str, settings: LocalSettings) -> str:
    target = Path(settings.experiments_dir).expanduser() / name
    if os.path.lexists(target):
        raise ValueError(f"{target} already exists; choose another name")
    return name


def _train_examples(dataset: str, settings: LocalSettings) -> int | None:
    found = check_dataset(resolve_data_path(dataset, settings.datasets_dir, Path.cwd()), "input", "output")
    return found.splits.get("train")


def _existing_models(models: list[str], settings: LocalSettings) -> list[str]:
    """Check each model as it is named, so a typo is fixed at once rather than after every question."""
    if not models:
        raise ValueError("name at least one model")
    for model in models:
        path = resolve_model(model, settings, Path.cwd())
        found = check_model(path)
        if found.problem:
            raise ValueError(f"model {model!r}: {found.problem} at {path}")
    return models


def _existing_dataset(path: str, settings: LocalSettings) -> str:
    if not path:
        raise ValueError("give the dataset path")
    resolved = resolve_data_path(path, settings.datasets_dir, Path.cwd())
    if not resolved.is_file():
        raise ValueError(f"dataset {path!r}: file not found at {resolved}")
    return path


def _knob(name: str, text: str) -> Any:
    return w.parse_levels(name, text)[0]


def _raise(message: str) -> Any:
    raise ValueError(message)


def _parse_levels(factor: str, text: str) -> list[Any]:
    return w.parse_levels(factor, text)
