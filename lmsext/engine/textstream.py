"""Turn a stream of token bytes into safe text deltas: UTF-8 reassembly and stop-string hold-back."""

from __future__ import annotations

import codecs
import collections
import functools
from dataclasses import dataclass
from typing import Sequence


@dataclass(frozen=True)
class _Automaton:
    """Aho-Corasick automaton of a list of stop strings (built once per distinct list, then shared).

    Node 0 is the root. ``goto[n]`` maps a character to the next node, ``fail[n]`` is the node of the
    longest proper suffix of ``n``'s text that is a prefix of some stop string, ``depth[n]`` the length
    of ``n``'s text, ``ends[n]`` the stop strings (indexes, list order) that end exactly at ``n`` and
    ``out[n]`` the nearest node on the fail chain (``n`` included) with ``ends``, or -1.
    """

    stops: tuple[str, ...]
    goto: tuple[dict[str, int], ...]
    fail: tuple[int, ...]
    depth: tuple[int, ...]
    ends: tuple[tuple[int, ...], ...]
    out: tuple[int, ...]


@functools.lru_cache(maxsize=8)
def _automaton(stops: tuple[str, ...]) -> _Automaton:
    goto: list[dict[str, int]] = [{}]
    depth = [0]
    ends: list[list[int]] = [[]]
    for index, stop in enumerate(stops):
        node = 0
        for ch in stop:
            nxt = goto[node].get(ch)
            if nxt is None:
                nxt = goto[node][ch] = len(goto)
                goto.append({})
                depth.append(depth[node] + 1)
                ends.append([])
            node = nxt
        ends[node].append(index)
    fail = [0] * len(goto)
    out = [-1] * len(goto)
    queue = collections.deque(goto[0].values())
    while queue:  # breadth first: a node's fail target is shallower, so already final
        node = queue.popleft()
        f = fail[node]
        out[node] = node if ends[node] else out[f]
        for ch, child in goto[node].items():
            g = f if node else 0
            while g and ch not in goto[g]:
                g = fail[g]
            target = goto[g].get(ch, 0)
            fail[child] = target if target != child else 0
            queue.append(child)
    return _Automaton(stops, tuple(goto), tuple(fail), tuple(depth), tuple(tuple(e) for e in ends), tuple(out))


class StopStringMatcher:
    """Releases text only once it can no longer be the start of a stop string.

    ``feed(text)`` returns ``(emit, found)``: the text safe to show now and the stop string found (or
    ``None``). After a stop string is found, the text before it is emitted and nothing after it; when
    several are in the text, the one that starts first wins (then the first in the list).

    Matching is an Aho-Corasick automaton: each character costs O(1) amortised whatever the number of
    stop strings (50,000 stop strings used to cost a scan of all of them per token), and what is held
    back is the depth of the automaton's state — the longest end of the text that may still become a
    stop string.
    """

    def __init__(self, stops: Sequence[str]) -> None:
        self.stops = [s for s in stops if s]
        self._ac = _automaton(tuple(self.stops)) if self.stops else None
        self._state = 0
        self.pending = ""

    def feed(self, text: str) -> tuple[str, str | None]:
        """Add decoded text; return what may be shown and the stop string hit, if any."""
        ac = self._ac
        if ac is None:
            return text, None
        goto, fail, out, depth, ends = ac.goto, ac.fail, ac.out, ac.depth, ac.ends
        base = len(self.pending)
        self.pending += text
        state = self._state
        best: tuple[int, int] | None = None  # (start in pending, stop index)
        for i, ch in enumerate(text, base + 1):  # i: end of the text read so far, in pending
            while state and ch not in goto[state]:
                state = fail[state]
            state = goto[state].get(ch, 0)
            node = out[state]
            while node >= 0:
                start = i - depth[node]
                for index in ends[node]:
                    if best is None or (start, index) < best:
                        best = (start, index)
                node = out[fail[node]] if fail[node] else -1
        if best is not None:
            emit = self.pending[: best[0]]
            self.pending, self._state = "", 0
            return emit, ac.stops[best[1]]
        self._state = state
        cut = len(self.pending) - depth[state]
        emit, self.pending = self.pending[:cut], self.pending[cut:]
        return emit, None

    def flush(self) -> str:
        """Release whatever was held back (the generation ended without a stop string)."""
        out, self.pending, self._state = self.pending, "", 0
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
