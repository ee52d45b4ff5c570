"""Stop strings: the Aho-Corasick matcher gives exactly what the plain scan of every stop string gave, a
real prediction with 50,000 stop strings stops at the one that occurs, and the count/size caps are one line.

(Its speed — per-token cost independent of the number of stop strings — is measured, not tested: 50,000
stop strings took stories260K from thousands of tokens per second to 19; see the issue-13 report.)
"""

from __future__ import annotations

import random

import pytest

from lmsext.engine.textstream import StopStringMatcher
from lmsext.config.limits import MAX_STOP_STRING_CHARS, MAX_STOP_STRINGS
from lmsext.errors import ConfigError

GREEDY = {"temperature": 0}


class ScanMatcher:
    """The former matcher: every stop string searched in the pending text, every prefix checked for hold-back."""

    def __init__(self, stops):
        self.stops = [s for s in stops if s]
        self.pending = ""

    def feed(self, text):
        if not self.stops:
            return text, None
        self.pending += text
        best = None
        for stop in self.stops:
            i = self.pending.find(stop)
            if i >= 0 and (best is None or i < best[0]):
                best = (i, stop)
        if best is not None:
            emit, self.pending = self.pending[:best[0]], ""
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

    def flush(self):
        out, self.pending = self.pending, ""
        return out


def _run(matcher, feeds):
    out = []
    for feed in feeds:
        out.append(matcher.feed(feed))
        if out[-1][1] is not None:
            break
    out.append(matcher.flush())
    return out


def test_matcher_agrees_with_scanning_every_stop_string():
    rng = random.Random(13)
    for _ in range(5000):
        stops = ["".join(rng.choice("abé") for _ in range(rng.randint(1, 5))) for _ in range(rng.randint(1, 6))]
        text = "".join(rng.choice("abcé") for _ in range(rng.randint(0, 16)))
        feeds, i = [], 0
        while i < len(text):
            n = rng.randint(1, 4)
            feeds.append(text[i:i + n])
            i += n
        assert _run(StopStringMatcher(stops), feeds) == _run(ScanMatcher(stops), feeds), (stops, feeds)


def test_fifty_thousand_stop_strings_stop_at_the_one_that_occurs(module_model):
    reference = module_model.complete("Once upon a time", config={**GREEDY, "maxTokens": 40}).content
    word = reference[15:22]
    stops = [f"never-{i}-stop" for i in range(49_999)] + [word]
    r = module_model.complete("Once upon a time", config={**GREEDY, "maxTokens": 40, "stopStrings": stops})
    assert r.stats.stop_reason == "stopStringFound" and r.stats.stop_string == word
    assert r.content == reference[:reference.index(word)]


@pytest.mark.parametrize("stops, match", [
    (["x"] * (MAX_STOP_STRINGS + 1), r"stopStrings: 100,001 stop strings; at most 100,000"),
    (["y" * 1000] * (MAX_STOP_STRING_CHARS // 1000 + 1), r"stopStrings: 1,001,000 characters in all; at most"),
])
def test_stop_string_caps_are_one_line(module_model, stops, match):
    with pytest.raises(ConfigError, match=match) as info:
        module_model.complete("Once", config={"maxTokens": 2, "stopStrings": stops})
    assert "\n" not in str(info.value)
