"""Reasoning parsing (LM Studio's ``reasoningParsing``): a stream post-processor above every engine.

The token texts of a prediction go through :class:`ReasoningParser`, which splits them into pieces typed as LM
Studio's ``LLMPredictionFragment.reasoningType``: ``"reasoningStartTag"`` (the start string, ``<think>``),
``"reasoning"`` (the thinking), ``"reasoningEndTag"`` (``</think>``) and ``"none"`` (the answer). A tag split over
several tokens (``<th`` + ``ink>``) is recognised: text that may still become a tag is held back until the next
token decides. It never touches the engine's token loop, so it works for the in-kernel and remote engines alike.
A prompt that already opened the reasoning (a template whose generation prompt ends with ``<think>``) starts the
parser inside it.
"""

from __future__ import annotations

from dataclasses import dataclass

from .config.reasoning import DEFAULT_END, DEFAULT_START, ReasoningParsingSpec

NONE, REASONING, START_TAG, END_TAG = "none", "reasoning", "reasoningStartTag", "reasoningEndTag"


@dataclass
class Piece:
    """A typed piece of output text and the tokens it completes (0 for a piece that shares a token)."""

    text: str
    reasoning_type: str
    tokens_count: int = 0


def _held_back(text: str, tag: str) -> int:
    """How many characters at the end of ``text`` are a proper prefix of ``tag`` (they may become the tag)."""
    for n in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:n]):
            return n
    return 0


class ReasoningParser:
    """Splits streamed text at the reasoning tags; :meth:`feed` each token's text, :meth:`finish` at the end."""

    def __init__(self, start: str = DEFAULT_START, end: str = DEFAULT_END, *, inside: bool = False) -> None:
        self.start, self.end = start, end
        self.inside = inside  # in the reasoning section
        self._pending = ""  # text that may still turn into a tag
        self._tokens = 0  # tokens fed whose text is not out yet

    @classmethod
    def for_prediction(cls, spec: ReasoningParsingSpec | None, prompt: str | None) -> "ReasoningParser | None":
        """The parser of a prediction (None when parsing is off); inside the reasoning when ``prompt`` opened it."""
        start = spec.start_string if spec is not None and spec.start_string else DEFAULT_START
        end = spec.end_string if spec is not None and spec.end_string else DEFAULT_END
        if spec is not None and spec.enabled is False:
            return None
        tail = (prompt or "").rstrip()
        return cls(start, end, inside=bool(tail) and tail.endswith(start))

    def feed(self, text: str, tokens: int = 1) -> list[Piece]:
        """The pieces ``text`` (one token's) completes; the last piece carries the token counts."""
        self._tokens += tokens
        buffer, pieces = self._pending + text, []
        while buffer:
            tag = self.end if self.inside else self.start
            kind = REASONING if self.inside else NONE
            at = buffer.find(tag)
            if at >= 0:
                if at:
                    pieces.append(Piece(buffer[:at], kind))
                pieces.append(Piece(tag, END_TAG if self.inside else START_TAG))
                self.inside = not self.inside
                buffer = buffer[at + len(tag):]
                continue
            keep = _held_back(buffer, tag)
            if len(buffer) > keep:
                pieces.append(Piece(buffer[:len(buffer) - keep], kind))
            buffer = buffer[len(buffer) - keep:] if keep else ""
            break
        self._pending = buffer
        return self._counted(pieces)

    def finish(self) -> list[Piece]:
        """What is still held back (a partial tag that never completed), as text of the current section."""
        pieces = [Piece(self._pending, REASONING if self.inside else NONE)] if self._pending else []
        self._pending = ""
        return self._counted(pieces)

    def _counted(self, pieces: list[Piece]) -> list[Piece]:
        if pieces:
            pieces[-1].tokens_count, self._tokens = self._tokens, 0
        return pieces


def split_content(pieces: list[Piece]) -> tuple[str, str, int]:
    """``(reasoning_content, non_reasoning_content, reasoning tokens)`` of a prediction's pieces (tags in neither
    content, as LM Studio's ``reasoningContent`` / ``nonReasoningContent``; tag tokens count as reasoning)."""
    reasoning = "".join(p.text for p in pieces if p.reasoning_type == REASONING)
    answer = "".join(p.text for p in pieces if p.reasoning_type == NONE)
    tokens = sum(p.tokens_count for p in pieces if p.reasoning_type != NONE)
    return reasoning, answer, tokens


class PredictionPieces:
    """A prediction's typed pieces: each token's text through the parser (or, with parsing off, as answer text)."""

    def __init__(self, spec: ReasoningParsingSpec | None, prompt: str | None) -> None:
        self.parser = ReasoningParser.for_prediction(spec, prompt)
        self.pieces: list[Piece] = []

    def feed(self, text: str, tokens: int) -> list[Piece]:
        """The pieces one token's text completes."""
        out = self.parser.feed(text, tokens) if self.parser is not None else [Piece(text, NONE, tokens)]
        self.pieces.extend(out)
        return out

    def finish(self) -> list[Piece]:
        """What the parser still held back (a partial tag that never completed)."""
        out = self.parser.finish() if self.parser is not None else []
        self.pieces.extend(out)
        return out

    def split(self) -> tuple[str, str, int]:
        """``(reasoning_content, non_reasoning_content, reasoning tokens)`` (:func:`split_content`)."""
        return split_content(self.pieces)
