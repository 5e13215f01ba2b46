"""The in-job tokenizer hook: torchtune calls :func:`prompted_tokenizer` on the compute node.

A contract with every ``finetune.yaml`` and ``eval_config.yaml`` the planner writes: they
name the hook by its import path (:data:`HOOK`), so it must keep working under that path
(and under ``planner.core.recipes.prompted_tokenizer``, the path of earlier versions).
Imports torchtune lazily, inside the hook, so planning never needs it.
"""

from __future__ import annotations

from typing import Any

from planner.torchtune.shapes import RecipeError

#: What configs name as the tokenizer component when a run has a prompt.
HOOK = f"{__name__}.prompted_tokenizer"


def split_prompt(prompt: str) -> tuple[str, str]:
    """Split a ``{input}`` template into the text before and after the input."""
    if prompt.count("{input}") != 1:
        raise RecipeError(f"prompt must contain '{{input}}' exactly once, got {prompt!r}")
    before, after = prompt.split("{input}")
    return before, after


def format_prompt(prompt: str | None, text: str) -> str:
    """Apply a prompt template to one input, as training does.

    Args:
        prompt: Template with ``{input}``, or None for the plain input.
        text: The input.

    Returns:
        The user message text.
    """
    if prompt is None:
        return text
    before, after = split_prompt(prompt)
    return before + text + after


# ------------------------------------------------------- runtime hook (torchtune)


class _UserPromptTemplate:
    """Wrap user messages in a prompt, then apply the tokenizer's own template."""

    def __init__(self, prompt: str, inner: Any) -> None:
        self.before, self.after = split_prompt(prompt)
        self.inner = inner

    def __call__(self, messages: list[Any], inference: bool = False) -> list[Any]:
        from torchtune.data import Message

        wrapped = []
        for m in messages:
            if m.role == "user":
                content = list(m.content)
                if self.before:
                    content = [{"type": "text", "content": self.before}] + content
                if self.after:
                    content = content + [{"type": "text", "content": self.after}]
                m = Message(role=m.role, content=content, masked=m.masked, ipython=m.ipython, eot=m.eot)
            wrapped.append(m)
        # Tokenizers call their template with the messages only (some templates,
        # e.g. Llama2ChatTemplate, take no other argument).
        return self.inner(wrapped) if self.inner is not None else wrapped


def prompted_tokenizer(base_component: str, prompt: str, **kwargs: Any) -> Any:
    """Build a torchtune tokenizer whose user messages are wrapped in ``prompt``.

    torchtune instantiates this from a config's ``tokenizer`` node (it cannot take a
    template with parameters from YAML); both training and evaluation go through it.

    Args:
        base_component: Dotpath of the family's tokenizer builder.
        prompt: Template with ``{input}`` exactly once.
        **kwargs: Arguments of the base builder (path, max_seq_len, ...).

    Returns:
        The tokenizer.
    """
    from torchtune.config._utils import _get_component_from_path

    tokenizer = _get_component_from_path(base_component)(**kwargs)
    tokenizer.prompt_template = _UserPromptTemplate(prompt, getattr(tokenizer, "prompt_template", None))
    return tokenizer
