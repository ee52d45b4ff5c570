"""The conversations ``/api/v1/chat`` keeps for ``previous_response_id``, and what a turn re-reads of them.

A chain used to be re-rendered and re-tokenized whole on every turn, so a turn cost grew with everything
ever said (turn 12 of a chain of long replies took 4.7 s), although the context overflow policy drops all
but the last context-full of it. Each stored message now keeps its token count (a reply's is known from
the prediction, an input is counted once, in the worker thread), and :func:`trim_chain` drops the oldest
whole messages that no context could hold any more before the prompt is built. The prompt is the same
as with the whole chain: only messages the policy would drop anyway are left out, with a margin.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: A message may be left out when the messages after it already take this much more than the context
#: (a rendered prompt has at least the tokens of its messages, less one merge at each boundary at most).
MARGIN_TOKENS = 64


@dataclass
class StoredChat:
    """A stored exchange: its messages (``role``, ``content``) and each one's token count (None: not counted)."""

    messages: list[dict[str, str]]
    tokens: list[int | None] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.tokens = (list(self.tokens) + [None] * len(self.messages))[: len(self.messages)]


def _head_size(messages: list[dict[str, str]], policy: str) -> int:
    """How many leading messages the policy always keeps: truncateMiddle keeps the system prompt and the first
    user message (as lmsext.engine.overflow does); rollingWindow keeps none."""
    if policy != "truncateMiddle":
        return 0
    n = 1 if messages and messages[0]["role"] == "system" else 0
    if len(messages) > n and messages[n]["role"] == "user":
        n += 1
    return n


def trim_chain(llm: Any, chat: StoredChat, policy: str) -> StoredChat:
    """``chat`` without the oldest whole messages (after the kept head) that cannot reach the context any more.

    Runs in a worker thread: it counts the tokens of messages not counted yet. ``stopAtLimit`` keeps all (the
    request must fail as it would with the whole chain)."""
    if policy == "stopAtLimit":
        return chat
    messages, tokens = chat.messages, list(chat.tokens)
    head = _head_size(messages, policy)
    limit = llm.get_context_length() + MARGIN_TOKENS
    suffix, full = 0, None
    for i in range(len(messages) - 1, head - 1, -1):
        if tokens[i] is None:
            tokens[i] = llm.count_tokens(messages[i]["content"])
        suffix += tokens[i]
        if suffix >= limit:  # no prompt can start at i or before: i..end alone overflow the context
            full = i
            break
    if full is None:
        return StoredChat(messages, tokens)
    # keep from the first user message after i (the policy's prompts start at a user message)
    users = [j for j in range(full + 1, len(messages)) if messages[j]["role"] == "user"]
    cut = users[0] if users else max((j for j in range(head, len(messages)) if messages[j]["role"] == "user"),
                                     default=head)
    if cut <= head:
        return StoredChat(messages, tokens)
    return StoredChat(messages[:head] + messages[cut:], tokens[:head] + tokens[cut:])


__all__ = ["StoredChat", "trim_chain"]
