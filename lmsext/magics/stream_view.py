"""Show a prediction while it streams: text deltas on stdout in Jupyter, raw tokens in a terminal.

:func:`run_stream` drives a :class:`~lmsext.results.PredictionStream` into a :class:`StreamView`
and always ends with a :class:`~lmsext.results.PredictionResult`: a KeyboardInterrupt that lands in
the display code (the engine handles one that lands in its own work) closes the stream, so the
result's stop reason is ``userStopped`` and the partial text stays on screen.
"""

from __future__ import annotations

import math
import sys
import time
from typing import TYPE_CHECKING, Any, Callable

from IPython.display import clear_output, display

from ..render import (DIM, PROMPT_TAIL_CHARS, RESET, drafted_bundle, live_stats_bundle, prompt_tail, result_bundle, stats_bundle,
                      stats_line)

#: Grey (ANSI bright black: JupyterLab, Notebook and VS Code render it in a stream; terminals too).
GREY = "\x1b[90m"

if TYPE_CHECKING:
    from ..results import PredictionResult, PredictionStream

#: Seconds between two refreshes of the live stats line (rich mode).
STATS_INTERVAL = 0.5


class StreamView:
    """Where the tokens of one prediction go.

    ``mode`` "rich" (a Jupyter front end without widgets): the text goes out on stdout — ``stream``
    messages, the only append-only output — each carrying only the text that is new since the one
    before, at most one message per ``interval`` seconds whatever the token rate (the first fragment
    at once). Above the text, a one-line display (``display_id``) shows live stats (tokens, tok/s,
    seconds), refreshed every ``stats_interval`` seconds within the same budget of one message per
    ``interval``. At the end the live line goes and the stats line (and any parse error) comes under
    the text, which is in the output once: text, then stats. With ``markdown`` the streamed plain
    text is replaced at the end by the text rendered as Markdown with its stats: one message with
    the whole text, after ``clear_output(wait=True)`` — which also clears what the cell showed
    before the stream.

    ``mode`` "text" (terminal IPython): each token written to stdout as it arrives, then the stats line.

    Work per token is O(1) (appends; the text is joined only when it is sent).
    """

    def __init__(self, mode: str = "rich", interval: float = 0.05, *, markdown: bool = False,
                 clock: Callable[[], float] = time.monotonic, stats_interval: float = STATS_INTERVAL) -> None:
        self.mode = mode
        self.interval = interval
        self.stats_interval = stats_interval
        self.markdown = markdown
        self.clock = clock
        self.parts: list[str] = []
        #: messages sent to the front end (rich mode): stdout flushes and display messages
        self.messages = 0
        self._pending: list[str] = []
        self._text = ""
        self._joined = 0
        self._written = 0  # characters of the text on stdout
        self._tokens = 0
        self._t0 = self._t_first = 0.0
        self._last = self._last_stats = -math.inf
        self._handle: Any = None
        self._live = False
        self._finished = False
        #: text shown dimmed before the streamed text (``%%lm_complete``'s prompt: the completion continues it);
        #: not part of :attr:`text` nor of the result
        self.prompt = ""
        #: indexes in :attr:`parts` of the fragments a draft proposed and the model accepted
        self.drafted: set[int] = set()

    def start(self) -> None:
        """Open the output (rich mode: the live stats line), then the dimmed :attr:`prompt` if there is one."""
        if self.mode == "rich":
            self._t0 = self._last_stats = self.clock()
            self._handle = display(live_stats_bundle(0, 0.0), raw=True, display_id=True)
            self._live = self._handle is not None
            self.messages += 1
        if self.prompt:
            tail = prompt_tail(self.prompt)
            sys.stdout.write(f"{DIM if self.mode == 'text' else GREY}{tail}{RESET}")  # not counted in the text
            sys.stdout.flush()
            self.messages += self.mode == "rich"

    def feed(self, text: str, drafted: bool = False) -> None:
        """One fragment of text: an append; a message when ``interval`` has passed since the last one.
        ``drafted``: a draft proposed it (speculative decoding; the final view colours those)."""
        if not text:
            return
        if drafted:
            self.drafted.add(len(self.parts))
        if self.mode == "text":
            sys.stdout.write(text)
            sys.stdout.flush()
            self._written += len(text)
            return
        self.parts.append(text)
        self._pending.append(text)
        self._tokens += 1
        now = self.clock()
        if self._tokens == 1:
            self._t_first = now
        gap = now - self._last
        if gap >= self.interval:
            self._last = now
            if self._live and self._written and now - self._last_stats >= self.stats_interval:
                self._last_stats = now
                self._show_live(now)
                if gap < 2 * self.interval:  # tokens flow: this slot was the stats line's, the text goes next
                    return
            # else (sparse tokens) both, after a gap of ≥ 2 intervals: still ≤ one message per interval
            self._write(self._take_pending())

    @property
    def text(self) -> str:
        """Everything fed so far."""
        if self._joined < len(self.parts):
            self._text += "".join(self.parts[self._joined:])
            self._joined = len(self.parts)
        return self._text

    def _take_pending(self) -> str:
        delta = "".join(self._pending)
        self._pending = []
        return delta

    def _write(self, delta: str) -> None:
        """``delta`` on stdout as one ``stream`` message (flushed now, not on ipykernel's timer)."""
        if delta:
            sys.stdout.write(delta)
            self._written += len(delta)
            sys.stdout.flush()
            self.messages += 1

    def _show_live(self, now: float) -> None:
        elapsed = now - self._t_first
        rate = (self._tokens - 1) / elapsed if self._tokens > 1 and elapsed > 0 else None
        self._handle.update(live_stats_bundle(self._tokens, now - self._t0, rate), raw=True)
        self.messages += 1

    def _take_down_live(self) -> None:
        if self._live:
            self._live = False
            self._handle.update({"text/plain": ""}, raw=True)
            self.messages += 1

    def abort(self) -> None:
        """The prediction failed: keep the text fed so far (or nothing), without a stats line."""
        if self.mode == "text":
            if self._written:
                sys.stdout.write("\n")
            return
        self._write(self._take_pending())
        self._take_down_live()

    def finish(self, result: "PredictionResult") -> None:
        """The final state: the rest of the text (the result's), then its stats line; may be called again
        after a KeyboardInterrupt in it, without showing anything twice."""
        if self.mode == "text":
            line = stats_line(result.stats)
            if result.parse_error:
                line = f"{result.parse_error} · {line}"
            missing = result.content[self._written:]  # a fragment interrupted before it was written
            sys.stdout.write(missing + ("\n\n" if result.content else "") + f"{DIM}[{line}]{RESET}\n")
            sys.stdout.flush()
            return
        if self._finished:
            return
        content = result.content
        self._pending = []
        if self.drafted and not result.reasoning_content and content == self.text and getattr(result.stats, "used_draft_model_key", None):
            # the teaching view: the reply again as one message, the accepted draft tokens coloured
            clear_output(wait=True)
            self._live = False
            spans = [(part, i in self.drafted) for i, part in enumerate(self.parts)]
            display(drafted_bundle(spans, result.stats), raw=True)
            self.messages += 2
        elif self.markdown or result.reasoning_content or not content.startswith(self.text[:self._written]):
            # one final message with the whole text: rendered as Markdown, the reasoning folded
            # above the answer, or (never expected) a result
            # whose text does not continue what was streamed
            clear_output(wait=True)
            self._live = False
            display(result_bundle(result, markdown=self.markdown), raw=True)
            self.messages += 2
        else:
            self._write(content[self._written:])  # what was fed but not sent yet (and a fragment never fed)
            self._take_down_live()
            display(stats_bundle(result.stats, parse_error=result.parse_error), raw=True)
            self.messages += 1
        self._finished = True


def run_stream(stream: "PredictionStream", view: StreamView) -> "PredictionResult":
    """Feed ``stream`` into ``view`` and return the result; Ctrl-C ends it as ``userStopped``.

    Any other error (e.g. the engine's) closes the stream (releasing the model), lets the view keep
    the text so far (taking its live line down) and propagates.
    """
    view.start()
    try:
        try:
            for fragment in stream:
                if getattr(fragment, "contains_drafted", False):
                    view.feed(fragment.content, True)
                else:
                    view.feed(fragment.content)
        except KeyboardInterrupt:
            stream.close()
        result = stream.result()
    except BaseException:
        stream.close()
        view.abort()
        raise
    try:
        view.finish(result)
    except KeyboardInterrupt:  # a second Ctrl-C while drawing the last frame: draw it anyway
        view.finish(result)
    return result


__all__ = ["PROMPT_TAIL_CHARS", "STATS_INTERVAL", "StreamView", "run_stream"]
