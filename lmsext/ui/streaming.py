"""Show a prediction while it streams: throttled display updates in Jupyter, raw tokens in a terminal.

:func:`run_stream` drives a :class:`~lmsext.results.PredictionStream` into a :class:`StreamView`
and always ends with a :class:`~lmsext.results.PredictionResult`: a KeyboardInterrupt that lands in
the display code (the engine handles one that lands in its own work) closes the stream, so the
result's stop reason is ``userStopped`` and the partial text stays on screen.
"""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Any, Callable

from IPython.display import display

from .display import DIM, RESET, stats_line, stream_bundle

if TYPE_CHECKING:
    from ..results import PredictionResult, PredictionStream


class StreamView:
    """Where the tokens of one prediction go.

    ``mode`` "rich": one output updated in place (``display_id``), at most once per ``interval``
    seconds, then a final update with the full text and the stats line. ``mode`` "text": each token
    written to stdout as it arrives, then the stats line. Work per token is O(1) (an append; the
    text is joined only when an update is sent).
    """

    def __init__(self, mode: str = "rich", interval: float = 0.05, *, markdown: bool = False,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.mode = mode
        self.interval = interval
        self.markdown = markdown
        self.clock = clock
        self.parts: list[str] = []
        self.updates = 0
        self._text = ""
        self._joined = 0
        self._last = 0.0
        self._handle: Any = None
        self._written = 0

    def start(self) -> None:
        """Open the output (an empty placeholder in rich mode)."""
        if self.mode == "rich":
            self._handle = display(stream_bundle("…"), raw=True, display_id=True)
            self._last = self.clock()

    def feed(self, text: str) -> None:
        """One fragment of text."""
        if not text:
            return
        if self.mode == "text":
            sys.stdout.write(text)
            sys.stdout.flush()
            self._written += len(text)
            return
        self.parts.append(text)
        now = self.clock()
        if now - self._last >= self.interval:
            self._last = now
            self._update(stream_bundle(self.text))

    @property
    def text(self) -> str:
        """Everything fed so far."""
        if self._joined < len(self.parts):
            self._text += "".join(self.parts[self._joined:])
            self._joined = len(self.parts)
        return self._text

    def _update(self, data: dict[str, str]) -> None:
        if self._handle is not None:
            self._handle.update(data, raw=True)
            self.updates += 1

    def abort(self) -> None:
        """The prediction failed: keep what was shown (or nothing), without a stats line."""
        if self.mode == "text":
            if self._written:
                sys.stdout.write("\n")
            return
        self._update(stream_bundle(self.text) if self.text else {"text/plain": ""})

    def finish(self, result: "PredictionResult") -> None:
        """The final state: the whole text (the result's) and its stats line."""
        if self.mode == "text":
            line = stats_line(result.stats)
            if result.parse_error:
                line = f"{result.parse_error} · {line}"
            missing = result.content[self._written:]  # a fragment interrupted before it was written
            sys.stdout.write(missing + ("\n\n" if result.content else "") + f"{DIM}[{line}]{RESET}\n")
            sys.stdout.flush()
            return
        self._update(stream_bundle(result.content, result.stats, markdown=self.markdown,
                                   parse_error=result.parse_error))


def run_stream(stream: "PredictionStream", view: StreamView) -> "PredictionResult":
    """Feed ``stream`` into ``view`` and return the result; Ctrl-C ends it as ``userStopped``.

    Any other error (e.g. the engine's) closes the stream (releasing the model), takes the
    placeholder down and propagates.
    """
    view.start()
    try:
        try:
            for fragment in stream:
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


__all__ = ["StreamView", "run_stream"]
