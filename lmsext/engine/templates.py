"""Chat templates: the GGUF's own Jinja template, or lmsext's documented plain fallback.

Templates are rendered with Jinja2's sandbox, as Hugging Face ``transformers`` does, with the
usual globals (``messages``, ``add_generation_prompt``, ``bos_token``, ``eos_token``,
``raise_exception``, ``strftime_now``).

Fallback (models without ``tokenizer.chat_template``, such as base models)::

    {system}\\n\\n                      (only when there is a system prompt)
    User: {content}\\n                  (each user message)
    Assistant: {content}\\n             (each assistant message)
    Assistant:                          (the generation prompt)

and ``"\\nUser:"`` is added as an implicit stop string so a base model does not write the user's
next turn.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any, Sequence

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

from ..errors import PredictionError

FALLBACK_NAME = "lmsext-plain"
FALLBACK_STOP = "\nUser:"


def _raise(message: str) -> None:
    raise jinja2.TemplateError(message)


def _strftime_now(fmt: str) -> str:
    return datetime.datetime.now().strftime(fmt)


@dataclass
class ChatTemplate:
    """A renderer for chat messages; ``source`` is the Jinja text or ``None`` for the fallback."""

    source: str | None
    bos_token: str = ""
    eos_token: str = ""

    def __post_init__(self) -> None:
        self._compiled = None
        if self.source is not None:
            env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                                loader=jinja2.BaseLoader())
            env.globals["raise_exception"] = _raise
            env.globals["strftime_now"] = _strftime_now
            env.filters.setdefault("tojson", lambda v, **kw: __import__("json").dumps(v, **kw))
            try:
                self._compiled = env.from_string(self.source)
            except jinja2.TemplateError as exc:
                raise PredictionError(f"the model's chat template does not compile: {exc}") from None

    @property
    def name(self) -> str:
        """``"gguf"`` for the model's own template, else the fallback's name."""
        return "gguf" if self.source is not None else FALLBACK_NAME

    @property
    def implicit_stops(self) -> list[str]:
        """Stop strings this template needs so a model stops at the end of its turn."""
        return [] if self.source is not None else [FALLBACK_STOP]

    def render(self, messages: Sequence[dict[str, Any]], add_generation_prompt: bool = True) -> str:
        """Render ``messages`` (``{"role", "content"}`` dicts) to the prompt text."""
        if self._compiled is None:
            return _render_fallback(messages, add_generation_prompt)
        try:
            return self._compiled.render(
                messages=list(messages), add_generation_prompt=add_generation_prompt,
                bos_token=self.bos_token, eos_token=self.eos_token)
        except jinja2.TemplateError as exc:
            raise PredictionError(f"the model's chat template failed: {exc}") from None


def _render_fallback(messages: Sequence[dict[str, Any]], add_generation_prompt: bool) -> str:
    parts: list[str] = []
    for message in messages:
        role, content = message["role"], message["content"]
        if role == "system":
            parts.append(f"{content}\n\n")
        elif role == "user":
            parts.append(f"User: {content}\n")
        else:
            parts.append(f"Assistant: {content}\n")
    if add_generation_prompt:
        parts.append("Assistant:")
    return "".join(parts)
