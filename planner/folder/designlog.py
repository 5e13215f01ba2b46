"""design-experiment.log entries in seed 002's format.

Each entry::

    [YYYY-MM-DD HH:MM:SS] ACTION: Description
    Command: ...
    Result: ...
    Explanation: ...

followed by a blank line. Other keys (Input, Calculation, Decision, Reasoning, Status,
Next Steps) appear where an action calls for them, in that fixed order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

_ORDER = ("command", "input", "calculation", "decision", "reasoning", "result", "status", "next_steps", "explanation")
_TITLES = {
    "command": "Command",
    "input": "Input",
    "calculation": "Calculation",
    "decision": "Decision",
    "reasoning": "Reasoning",
    "result": "Result",
    "status": "Status",
    "next_steps": "Next Steps",
    "explanation": "Explanation",
}


@dataclass
class LogEntry:
    """One logged check, calculation or decision."""

    when: datetime
    action: str
    description: str
    fields: dict[str, str] = field(default_factory=dict)

    def render(self) -> str:
        """Format the entry, one physical line per field (newlines inside values are folded)."""
        lines = [f"[{self.when:%Y-%m-%d %H:%M:%S}] {self.action}: {_one_line(self.description)}"]
        for key in _ORDER:
            if key in self.fields and self.fields[key] is not None:
                lines.append(f"{_TITLES[key]}: {_one_line(str(self.fields[key]))}")
        return "\n".join(lines) + "\n\n"


def _one_line(text: str) -> str:
    # A value with a newline (a hostile name, a multi-line result) must not forge a new entry.
    return text.replace("\r", "\\r").replace("\n", "\\n")


class DesignLog:
    """Collects entries during planning; written to disk once the plan is approved."""

    def __init__(self) -> None:
        self.entries: list[LogEntry] = []

    def add(self, when: datetime, action: str, description: str, **fields: str | None) -> LogEntry:
        """Append an entry; ``fields`` use the lower-case keys of ``_ORDER``."""
        unknown = set(fields) - set(_ORDER)
        if unknown:
            raise ValueError(f"unknown log fields {sorted(unknown)}")
        entry = LogEntry(when, action, description, {k: v for k, v in fields.items() if v is not None})
        self.entries.append(entry)
        return entry

    def render(self) -> str:
        """The whole log text."""
        return "".join(e.render() for e in self.entries)
