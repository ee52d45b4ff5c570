"""LM Studio's context overflow policies for chats: which messages a prompt that outgrows the context keeps.

LM Studio defines ``contextOverflowPolicy`` as:

* ``stopAtLimit`` — stop the prediction when the context is full (stop reason
  ``contextLengthReached``); a prompt that does not fit at all is an error;
* ``truncateMiddle`` — keep the system prompt and the first user message, truncate the middle;
* ``rollingWindow`` — maintain a rolling window and truncate past messages.

For a chat, :func:`fit_chat` applies them to whole messages, so the chat template always sees a
well-formed conversation: ``truncateMiddle`` keeps the system prompt and the first user message and
drops the oldest messages after them; ``rollingWindow`` drops the oldest messages (the system prompt
is the oldest); both keep as many recent messages as fit, starting at a user message, and always the
last one. Only when the kept messages alone are still too long are tokens cut, by
:func:`~.generate.fit_prompt` (``truncateMiddle``: the head and the end of the prompt,
``rollingWindow``: BOS and the end). The room left to generate is ``maxTokens``, at most half of
the context (a quarter when ``maxTokens`` is unset); ``stopAtLimit`` may fill the whole context.

When generation itself reaches the end of the context, the token loop shifts the cache: it drops
half of the tokens after the kept head (``truncateMiddle``: the system prompt and first user
message, up to a quarter of the context; ``rollingWindow``: BOS) and goes on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from ..errors import PredictionError
from .model import EngineModel


def prompt_budget(n_ctx: int, max_tokens: int | None, policy: str) -> int:
    """How many prompt tokens may stay in a context of ``n_ctx`` under ``policy``."""
    if policy == "stopAtLimit":
        return n_ctx
    reserve = min(max_tokens or n_ctx // 4, n_ctx // 2)
    return max(n_ctx - reserve, 1)


@dataclass
class FittedChat:
    """The prompt of a chat after the overflow policy: its tokens, the head to keep on context shifts,
    how many whole messages were dropped and how many tokens of the full prompt are not in it."""

    tokens: list[int]
    keep_head: int
    dropped_messages: int = 0
    removed_tokens: int = 0


def _head(messages: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The system prompt (when the chat starts with one) and the first user message."""
    head: list[dict[str, Any]] = []
    if messages and messages[0]["role"] == "system":
        head.append(messages[0])
    first_user = next((m for m in messages[len(head):] if m["role"] == "user"), None)
    if first_user is not None and messages[len(head)] is first_user:
        head.append(first_user)
    return head


def fit_chat(engine: EngineModel, messages: Sequence[dict[str, Any]], *, max_tokens: int | None,
             policy: str) -> FittedChat:
    """Render ``messages`` through the chat template, dropping whole messages per ``policy`` until
    the prompt fits the context (see the module docstring)."""
    messages = list(messages)
    tokens = engine.render_prompt(messages)[0]
    head = _head(messages)
    # what a context shift keeps while generating: truncateMiddle the system prompt and first user
    # message, rollingWindow only BOS
    keep_head = (_head_tokens(engine, head) or 1) if policy == "truncateMiddle" else 1
    limit = prompt_budget(engine.n_ctx, max_tokens, policy)
    if len(tokens) <= limit or policy == "stopAtLimit" or len(messages) <= 1:
        return FittedChat(tokens, keep_head)
    if policy == "truncateMiddle":
        fixed, rest = head, messages[len(head):]
        if not rest:  # the whole chat is the head: only tokens can go
            return FittedChat(tokens, keep_head)
    else:
        fixed, rest = [], messages
    # candidate starts: a user message (templates expect one after the system prompt), and the last
    # message in any case; fewer messages never make the prompt longer, so search the first that fits
    starts = [i for i, m in enumerate(rest) if m["role"] == "user" and i > 0] or []
    if len(rest) - 1 not in starts:
        starts.append(len(rest) - 1)
    best: tuple[int, list[int]] | None = None
    lo, hi = 0, len(starts) - 1
    while lo <= hi:
        mid = (lo + hi) // 2
        candidate = _render(engine, fixed + rest[starts[mid]:])
        if candidate is not None and len(candidate) <= limit:
            best = (starts[mid], candidate)
            hi = mid - 1
        else:
            lo = mid + 1
    if best is None:  # even the last message does not fit: keep it, tokens will be cut
        start = starts[-1]
        kept = _render(engine, fixed + rest[start:])
        if kept is None:
            raise PredictionError("the chat does not fit the context and the chat template cannot render a "
                                  "shorter version of it")
    else:
        start, kept = best
    return FittedChat(kept, keep_head, dropped_messages=start, removed_tokens=max(len(tokens) - len(kept), 0))


def _render(engine: EngineModel, messages: list[dict[str, Any]]) -> list[int] | None:
    try:
        return engine.render_prompt(messages)[0]
    except PredictionError:  # a template that refuses this shape of conversation
        return None


def _head_tokens(engine: EngineModel, head: list[dict[str, Any]]) -> int:
    try:
        text = engine.chat_template.render(head, add_generation_prompt=False)
    except PredictionError:
        return 0
    return len(engine.tokenize(text, parse_special=True))


__all__ = ["FittedChat", "fit_chat", "prompt_budget"]
