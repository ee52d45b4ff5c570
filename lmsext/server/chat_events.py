"""The ``reasoning.*`` and ``message.*`` SSE events of ``/api/v1/chat`` from a prediction's typed fragments."""

from __future__ import annotations

from typing import Any, Iterator

Event = tuple[str, dict[str, Any]]


class ChatEvents:
    """Turns fragments (``reasoning_type`` as LM Studio's) into LM Studio's events, in order:
    ``reasoning.start``, ``reasoning.delta``…, ``reasoning.end`` for a reasoning section, then ``message.start``,
    ``message.delta``…, ``message.end`` for the answer (``message.start``/``end`` always come, once)."""

    def __init__(self) -> None:
        self.in_reasoning = False
        self.message_started = False

    def fragment(self, fragment: Any) -> Iterator[Event]:
        """The events of one fragment."""
        kind = getattr(fragment, "reasoning_type", "none")
        if kind == "reasoningStartTag" or (kind == "reasoning" and not self.in_reasoning):
            if not self.in_reasoning:
                self.in_reasoning = True
                yield "reasoning.start", {"type": "reasoning.start"}
        if kind == "reasoning":
            yield "reasoning.delta", {"type": "reasoning.delta", "content": fragment.content}
        elif kind == "reasoningEndTag":
            yield from self._reasoning_end()
        elif kind == "none":
            yield from self._reasoning_end()
            if not self.message_started:
                self.message_started = True
                yield "message.start", {"type": "message.start"}
            yield "message.delta", {"type": "message.delta", "content": fragment.content}

    def message_end(self) -> Iterator[Event]:
        """The end of the reply: an open reasoning section ends, the message starts if it never did, and ends."""
        yield from self._reasoning_end()
        if not self.message_started:
            self.message_started = True
            yield "message.start", {"type": "message.start"}
        yield "message.end", {"type": "message.end"}

    def _reasoning_end(self) -> Iterator[Event]:
        if self.in_reasoning:
            self.in_reasoning = False
            yield "reasoning.end", {"type": "reasoning.end"}
