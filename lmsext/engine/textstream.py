"""Turn a stream of token bytes into safe text deltas: UTF-8 reassembly and stop-string hold-back."""

from __future__ import annotations

import codecs
from typing import Sequence


class StopStringMatcher:
    """Releases text only once it can no longer be the start of a stop string.

    ``feed(text)`` returns ``(emit, found)``: the text safe to show now and the stop string found (or
    ``None``). After a stop string is found, the text before it is emitted and nothing after it.
    """

    def __init__(self, stops: Sequence[str]) -> None:
        self.stops = [s for s in stops if s]
        self.pending = ""

    def feed(self, text: str) -> tuple[str, str | None]:
        """Add decoded text; return what may be shown and the stop string hit, if any."""
        if not self.stops:
            return text, None
        self.pending += text
        best: tuple[int, str] | None = None
        for stop in self.stops:
            i = self.pending.find(stop)
            if i >= 0 and (best is None or i < best[0]):
                best = (i, stop)
        if best is not None:
            emit = self.pending[: best[0]]
            self.pending = ""
            return emit, best[1]
        hold = 0
        for stop in self.stops:
            for k in range(min(len(stop) - 1, len(self.pending)), hold, -1):
                if self.pending.endswith(stop[:k]):
                    hold = k
                    break
        cut = len(self.pending) - hold
        emit, self.pending = self.pending[:cut], self.pending[cut:]
        return emit, None

    def flush(self) -> str:
        """Release whatever was held back (the generation ended without a stop string)."""
        out, self.pending = self.pending, ""
        return out


class Utf8Assembler:
    """Incremental UTF-8 decoding: multi-byte characters split across tokens are held back."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def feed(self, data: bytes) -> str:
        """Decode ``data``; an incomplete trailing character waits for the next call."""
        return self._decoder.decode(data)

    def flush(self) -> str:
        """Decode what is left; an incomplete character becomes U+FFFD."""
        return self._decoder.decode(b"", final=True)
