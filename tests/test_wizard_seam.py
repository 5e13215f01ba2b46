"""The wizard driven through its prompt seam (every question and message recorded), and once under a real pty."""

from __future__ import annotations

import os
import pty
import re
import select
import sys
import time
from datetime import date
from pathlib import Path
from typing import Any, Callable

from rich.console import Console

from planner.plan.prompts import Prompter, run_wizard
from planner.spec.local_settings import load_local_settings
from tests.conftest import ROOT, load_yaml


class Scripted(Prompter):
    """Answers from a list, through each question's own parser, as the terminal prompter does."""

    def __init__(self, answers: list[str]) -> None:
        super().__init__(Console(file=open(os.devnull, "w")))
        self.answers = list(answers)
        self.asked: list[str] = []
        self.errors: list[str] = []

    def ask(self, text: str, default: str, parse: Callable[[str], Any], help: str = "") -> Any:
        while True:
            self.asked.append(text)
            answer = self.answers.pop(0)
            try:
                return parse(answer or default)
            except ValueError as exc:
                self.errors.append(str(exc))


BASE = ["Q?", "lora_rank", "4, 16", "42", "yes", "", "", "capitalization", "", ""]


def test_a_taken_name_is_asked_again_with_every_other_answer_kept(example: Path, monkeypatch: Any) -> None:
    monkeypatch.chdir(example)
    settings = load_local_settings(example / "claude.local.md")
    (Path(settings.experiments_dir) / "taken").mkdir(parents=True)
    prompter = Scripted(BASE + ["2", "1", "4", "128", "", "", "all", "taken", "x" * 300, "fresh"])
    spec = run_wizard(prompter, settings, date(2025, 10, 22))
    assert spec["name"] == "fresh"
    assert prompter.asked[-3:] == ["Experiment name"] * 3
    assert prompter.errors[-2].endswith("taken already exists; choose another name")
    assert "keep it under 231 bytes" in prompter.errors[-1]
    # One GPU: the batch question says per GPU; 2 epochs of 100 steps offer 20 warm-up steps.
    assert "Batch size (examples per GPU per step)" in prompter.asked
    assert spec["controls"] == {"epochs": 2, "batch_size": 4, "max_seq_len": 128, "num_warmup_steps": 20, "system_prompt": ""}
    assert spec["resources"]["gpus"] == 1 and spec["evaluation"]["epochs"] == "all"


def test_the_wizard_under_a_real_terminal(example: Path) -> None:
    answers = ["Does rank matter?", "lora_rank", "4, 16", "42", "yes", "", "", "capitalization", "", "",
               "1", "0", "8", "64", "500", "", "", "last", "a/b", "", "yes"]
    pid, fd = pty.fork()
    if pid == 0:  # the child: plan-experiment new on a terminal
        os.chdir(example)
        os.environ["PYTHONPATH"] = str(ROOT)
        os.environ["COLUMNS"] = "200"
        os.execv(sys.executable, [sys.executable, "-m", "planner.cli.main", "new", "--local-config", "claude.local.md"])
    transcript = b""
    deadline = time.monotonic() + 120
    for answer in answers + [None]:
        # Wait for the next prompt (a line ending in ': ' with nothing after it), then type.
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(fd, 65536)
                except OSError:
                    chunk = b""
                if not chunk:
                    break
                transcript += chunk
            elif re.search(rb"\): $|: $", transcript.rstrip(b"\r\n ") + b" "):
                break
        if answer is None:
            break
        os.write(fd, answer.encode() + b"\n")
        transcript += b"\n"
    _, status = os.waitpid(pid, 0)
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", transcript.decode(errors="replace"))
    assert os.waitstatus_to_exitcode(status) == 0, text[-3000:]
    assert "500 warm-up steps is longer than the whole training (50 steps)" in text
    assert "the name becomes a folder name: drop the '/'" in text
    written = sorted((example / "experiments").iterdir())
    assert len(written) == 1
    assert load_yaml(written[0] / "experiment.yaml")["controls"]["num_warmup_steps"] == 5
