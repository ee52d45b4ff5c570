"""Chat templates: the GGUF's own Jinja template, or lmsext's documented plain fallback.

Templates are rendered with Jinja2's sandbox, as Hugging Face ``transformers`` does, with the
usual globals (``messages``, ``add_generation_prompt``, ``bos_token``, ``eos_token``,
``raise_exception``, ``strftime_now``).

Fallback (models without ``tokenizer.chat_template``, such as base models)::

    {system}\\n\\n                      (only when there is a system prompt)
    User: {content}\\n                  (each user message)
    Assistant: {content}\\n             (each assistant message; no extra space when the content
                                        starts with one, as a reply the model wrote does)
    Assistant:                          (the generation prompt)

and ``"\\nUser:"`` is added as an implicit stop string so a base model does not write the user's
next turn. With tools (``rawTools``), the fallback writes after the system prompt
``Tools (call one as {"name": ..., "arguments": {...}}):\\n`` and one JSON line per tool definition,
then a blank line; a tool result is ``Tool: {content}\\n``; an assistant message with ``tool_calls``
and no text is written as their JSON.

Tool definitions reach a template as its ``tools`` variable (OpenAI's list of
``{"type": "function", "function": {...}}``, as Hugging Face templates take them) while
:func:`template_tools` is active: the prediction that offers tools renders its prompt inside it.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime
import json
import threading
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import jinja2
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment, safe_range
from jinja2.utils import Namespace

from .errors import PredictionError

FALLBACK_NAME = "lmsext-plain"
FALLBACK_STOP = "\nUser:"


_TOOLS: contextvars.ContextVar[list[dict[str, Any]] | None] = contextvars.ContextVar("lmsext_template_tools",
                                                                                   default=None)


@contextlib.contextmanager
def template_tools(tools: list[dict[str, Any]] | None) -> Iterator[None]:
    """Within this block, chat templates render with ``tools`` (None or [] = no tools)."""
    token = _TOOLS.set(list(tools) if tools else None)
    try:
        yield
    finally:
        _TOOLS.reset(token)


def _raise(message: str) -> None:
    raise jinja2.TemplateError(message)


#: Limits of one render (a template comes from a model file: a broken or hostile one must not wedge or
#: exhaust the kernel). Generous for real templates over chats of millions of characters.
MAX_TEMPLATE_CALLS = 500_000
MAX_TEMPLATE_ITERATIONS = 2_000_000
MAX_TEMPLATE_STRING = 32 * 1024 * 1024


class _Budget(threading.local):
    calls = 0
    iterations = 0
    output = 0


_budget = _Budget()


def _check_size(value: Any) -> Any:
    if isinstance(value, (str, list, tuple)) and len(value) > MAX_TEMPLATE_STRING:
        raise SecurityError(f"the template built a value of {len(value):,} items (limit {MAX_TEMPLATE_STRING:,})")
    return value


def _finalize(value: Any) -> Any:
    """Every ``{{ expression }}`` output passes here: the total written is capped."""
    _budget.output += len(value) if isinstance(value, str) else 16
    if _budget.output > MAX_TEMPLATE_STRING:
        raise SecurityError(f"the template writes more than {MAX_TEMPLATE_STRING:,} characters")
    return value


def _range(*args: int) -> range:
    r = safe_range(*args)
    _budget.iterations += len(r)
    if _budget.iterations > MAX_TEMPLATE_ITERATIONS:
        raise SecurityError(f"the template loops more than {MAX_TEMPLATE_ITERATIONS:,} times")
    return r


class _Namespace(Namespace):
    """``namespace()`` whose attributes cannot grow past the size limit (no doubling loops)."""

    def __setitem__(self, name: str, value: Any) -> None:
        super().__setitem__(name, _check_size(value))


class _SafeSandbox(ImmutableSandboxedEnvironment):
    """The sandbox with a budget: calls, loop iterations and the size of built strings are capped."""

    intercepted_binops = frozenset(("*", "**", "+"))

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and isinstance(right, (int, float)) and abs(right) > 1024:
            raise SecurityError(f"the template raises to the power {right}")
        if operator == "*":
            for seq, n in ((left, right), (right, left)):
                if isinstance(seq, (str, list, tuple)) and isinstance(n, int) and len(seq) * n > MAX_TEMPLATE_STRING:
                    raise SecurityError("the template repeats a value past the size limit")
        if operator == "+" and isinstance(left, (str, list, tuple)) and isinstance(right, (str, list, tuple)):
            if len(left) + len(right) > MAX_TEMPLATE_STRING:
                raise SecurityError("the template concatenates past the size limit")
        return super().call_binop(context, operator, left, right)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        _budget.calls += 1
        if _budget.calls > MAX_TEMPLATE_CALLS:
            raise SecurityError(f"the template makes more than {MAX_TEMPLATE_CALLS:,} calls")
        for arg in (*args, *kwargs.values()):  # arguments are built before the call (recursive doubling)
            _check_size(arg)
        return _check_size(super().call(__context, __obj, *args, **kwargs))


def _tojson(value: Any, ensure_ascii: bool = False, indent: int | None = None, separators: Any = None,
            sort_keys: bool = False) -> str:
    """``tojson`` as ``transformers`` defines it for chat templates (tool definitions keep their order and text)."""
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _strftime_now(fmt: str) -> str:
    return datetime.datetime.now().strftime(fmt)


@dataclass
class ChatTemplate:
    """A renderer for chat messages; ``source`` is the Jinja text or ``None`` for the fallback."""

    source: str | None
    bos_token: str = ""
    eos_token: str = ""
    #: what error messages call this template (a prediction's ``promptTemplate`` names itself)
    label: str = "the model's chat template"

    def __post_init__(self) -> None:
        self._compiled = None
        if self.source is not None:
            env = _SafeSandbox(trim_blocks=True, lstrip_blocks=True, loader=jinja2.BaseLoader(),
                               finalize=_finalize)
            env.globals["range"] = _range
            env.globals["namespace"] = _Namespace
            env.globals["raise_exception"] = _raise
            env.globals["strftime_now"] = _strftime_now
            env.filters["tojson"] = _tojson  # Hugging Face's: Jinja's own escapes <>&' and sorts keys
            try:
                self._compiled = env.from_string(self.source)
            except Exception as exc:  # TemplateError, and whatever else a broken template raises
                raise PredictionError(f"{self.label} does not compile: {_describe(exc)}") from None

    @property
    def name(self) -> str:
        """``"gguf"`` for the model's own template, else the fallback's name."""
        return "gguf" if self.source is not None else FALLBACK_NAME

    @property
    def implicit_stops(self) -> list[str]:
        """Stop strings this template needs so a model stops at the end of its turn."""
        return [] if self.source is not None else [FALLBACK_STOP]

    def render(self, messages: Sequence[dict[str, Any]], add_generation_prompt: bool = True,
               **variables: Any) -> str:
        """Render ``messages`` (``{"role", "content"}`` dicts) to the prompt text; ``variables`` (such as
        ``enable_thinking``) are passed to a Jinja template as well."""
        tools = _TOOLS.get()
        if self._compiled is None:
            return _render_fallback(messages, add_generation_prompt, tools)
        _budget.calls = _budget.iterations = _budget.output = 0
        try:
            return _check_size(self._compiled.render(
                messages=list(messages), add_generation_prompt=add_generation_prompt,
                bos_token=self.bos_token, eos_token=self.eos_token, **variables,
                **({"tools": tools} if tools else {})))
        except Exception as exc:  # TemplateError, SecurityError, TypeError, RecursionError, MemoryError, …
            raise PredictionError(f"{self.label} failed: {_describe(exc)}") from None


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if isinstance(exc, jinja2.TemplateError) and text:
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _render_fallback(messages: Sequence[dict[str, Any]], add_generation_prompt: bool,
                     tools: list[dict[str, Any]] | None = None) -> str:
    parts: list[str] = []
    listed = not tools
    for message in messages:
        role, content = message["role"], message["content"]
        if not listed and role != "system":
            parts.append(_fallback_tools(tools or []))
            listed = True
        if role == "system":
            parts.append(f"{content}\n\n")
        elif role == "user":
            parts.append(f"User: {content}\n")
        elif role == "tool":
            parts.append(f"Tool: {content}\n")
        else:
            if not content and message.get("tool_calls"):
                calls = [c.get("function", c) for c in message["tool_calls"]]
                content = " " + json.dumps(calls[0] if len(calls) == 1 else calls, ensure_ascii=False)
            # A reply the model wrote continues "Assistant:" with its own leading space: render it as
            # the model saw it, so the next turn's prompt reuses the reply's tokens from the KV cache.
            sep = "" if content[:1].isspace() else " "
            parts.append(f"Assistant:{sep}{content}\n")
    if not listed:
        parts.append(_fallback_tools(tools or []))
    if add_generation_prompt:
        parts.append("Assistant:")
    return "".join(parts)


def _fallback_tools(tools: list[dict[str, Any]]) -> str:
    lines = [json.dumps(t.get("function", t), ensure_ascii=False) for t in tools]
    return 'Tools (call one as {"name": ..., "arguments": {...}}):\n' + "\n".join(lines) + "\n\n"
