"""``StreamWidget``: a prediction streaming into the notebook, as an anywidget (front end ``js/stream.js``).

While tokens arrive, :meth:`StreamWidget.feed` only appends; at most once per ``interval`` (50 ms,
so ≤ 20 per second) the new text goes out as ONE custom message ``{seq, delta, tokens, elapsed}`` —
only the new text, a sequence number, and the live counters. The first token goes out at once. At
the end :meth:`~StreamWidget.finish` sets the synced traits ``text``, ``stats``, ``stats_line``, ``stop_reason``
and ``done``, so a saved notebook (widget state) and headless execution keep the result. ``stats_line`` is
the plain view's line (:func:`lmsext.render.stats_line`: LM Studio's stop reason with plain words beside it,
"hit the 256-token limit" at the notebook's default limit): the finished view says each fact once, in that
line. A completion's ``prompt`` (its end) is shown greyed before the text that continues it.

Feeding is thread-safe: the prediction panel feeds from a background thread while the kernel's main
thread stays free to process the Stop click. :class:`WidgetStreamView` is the drop-in for
:class:`lmsext.magics.stream_view.StreamView` that ``%%lm_respond`` uses in widget-capable front ends.
"""

from __future__ import annotations

import math
import threading
import time
from typing import TYPE_CHECKING, Any, Callable

import anywidget
import traitlets as t
from IPython.display import display

from ..render import prompt_tail, stream_bundle
from ..render import stats_line as line_of_stats
from ..results import finite
from .frontend import asset, kernel_id, widget_bundle

if TYPE_CHECKING:
    from ..results import PredictionResult

#: Seconds between two delta messages (≤ 20 messages per second).
FLUSH_INTERVAL = 0.05


class StreamWidget(anywidget.AnyWidget):
    """The text of one prediction at a time, with live counters, a stop-reason badge and a Stop button.

    ``stop_mode``: "message" — Stop sends ``{type: "stop", run}`` and :attr:`on_stop` is called (for a
    generation on a background thread); "interrupt" — Stop asks the Jupyter server to interrupt the
    kernel (a generation running in a cell); "none" — no Stop button.
    """

    _esm = asset("stream.js")

    run = t.Int(0, help="Counts predictions shown; a new value clears the view.").tag(sync=True)
    text = t.Unicode("", help="The final text (set at the end).").tag(sync=True)
    stats = t.Dict(help="The final PredictionStats as a dict.").tag(sync=True)
    stop_reason = t.Unicode("", help="LM Studio's stop reason of the finished prediction.").tag(sync=True)
    stats_line = t.Unicode("", help="The finished prediction's stats line, as the plain view says it.").tag(sync=True)
    prompt = t.Unicode("", help="Text shown greyed before the stream (a completion's prompt, its end).").tag(sync=True)
    done = t.Bool(False, help="True once the prediction finished.").tag(sync=True)
    running = t.Bool(False, help="True while the prediction runs.").tag(sync=True)
    error = t.Unicode("", help="What went wrong, if something did.").tag(sync=True)
    markdown = t.Bool(True, help="Render the final text as Markdown.").tag(sync=True)
    stop_mode = t.Enum(("message", "interrupt", "none"), "message", help="What the Stop button does.").tag(sync=True)
    kernel_id = t.Unicode("", help="Jupyter server's id of this kernel (for stop_mode 'interrupt').").tag(sync=True)
    drafted = t.List(help="[start, end) character ranges of the final text that a draft proposed and the model "
                          "accepted (speculative decoding): the view colours them.").tag(sync=True)

    def __init__(self, *, interval: float = FLUSH_INTERVAL, on_stop: Callable[[], Any] | None = None,
                 clock: Callable[[], float] = time.monotonic, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.interval = interval
        self.on_stop = on_stop
        self.clock = clock
        self.messages = 0
        self._lock = threading.RLock()
        self._parts: list[str] = []
        self._pending: list[str] = []
        self._drafted: list[list[int]] = []  # [start, end) of accepted draft text, in UTF-16 units (as JS slices)
        self._chars = 0
        self._seq = 0
        self._sent = 0
        self._tokens = 0
        self._t0 = clock()
        self._last = -math.inf
        self.on_msg(self._on_message)

    # -- the kernel side of a run ----------------------------------------------------------------

    def begin(self, prompt: str = "") -> None:
        """Start a new prediction: clear the view (``run`` + 1) and show it as running, after ``prompt``
        greyed (a completion's prompt: its last :data:`~lmsext.render.PROMPT_TAIL_CHARS` characters)."""
        with self._lock:
            self._parts, self._pending, self._drafted = [], [], []
            self._chars = 0
            self._seq, self._sent, self._tokens, self.messages = 0, 0, 0, 0
            self._t0, self._last = self.clock(), -math.inf
        with self.hold_sync():
            self.run += 1
            self.text, self.stats, self.stop_reason, self.error, self.drafted = "", {}, "", "", []
            self.stats_line, self.prompt = "", prompt_tail(prompt)
            self.done, self.running = False, True

    def feed(self, text: str, tokens: int = 1, drafted: bool = False) -> None:
        """One fragment (``tokens`` tokens of ``text``): O(1) append; a message at most every ``interval``.
        ``drafted``: a draft proposed it and the model accepted it (coloured in the final view)."""
        if not text and not tokens:
            return
        now = self.clock()
        with self._lock:
            units = _utf16_len(text)
            if drafted and text:
                if self._drafted and self._drafted[-1][1] == self._chars:
                    self._drafted[-1][1] += units
                else:
                    self._drafted.append([self._chars, self._chars + units])
            self._chars += units
            self._parts.append(text)
            self._pending.append(text)
            self._tokens += tokens
            if now - self._last >= self.interval:
                self._flush(now)

    def flush(self) -> None:
        """Send what is pending now."""
        with self._lock:
            self._flush(self.clock())

    def _flush(self, now: float) -> None:
        delta = "".join(self._pending)
        if not delta:
            return
        self._pending = []
        msg = {"seq": self._seq, "delta": delta, "tokens": self._tokens, "elapsed": round(now - self._t0, 4)}
        self._seq += 1
        self._sent += len(delta)
        self._last = now
        self.messages += 1
        self.send(msg)  # under the lock: messages leave in sequence order whatever thread flushes

    @property
    def partial_text(self) -> str:
        """Everything fed in this run so far."""
        with self._lock:
            if len(self._parts) > 1:
                self._parts = ["".join(self._parts)]
            return self._parts[0] if self._parts else ""

    def finish(self, result: "PredictionResult") -> None:
        """The final state: text, stats and stop reason on the synced traits."""
        self.flush()
        with self.hold_sync():
            self.text = result.content
            self.stats = finite(result.stats.to_dict())
            self.stats_line = line_of_stats(result.stats)
            self.stop_reason = result.stats.stop_reason
            self.error = result.parse_error or result.stats.error or ""
            with self._lock:
                same = self._chars == _utf16_len(result.content)
                self.drafted = [list(r) for r in self._drafted] if same and self._drafted else []
            self.running, self.done = False, True

    def fail(self, message: str) -> None:
        """The prediction failed: keep the text so far and say why."""
        self.flush()
        with self.hold_sync():
            self.text = self.partial_text
            self.error = message
            self.running, self.done = False, True

    # -- messages from the front end ---------------------------------------------------------------

    def _on_message(self, _widget: Any, content: Any, _buffers: Any) -> None:
        if not isinstance(content, dict):
            return
        kind = content.get("type")
        if kind == "stop" and self.running and content.get("run") == self.run and self.on_stop is not None:
            self.on_stop()
        elif kind == "sync" and self.running:
            with self._lock:
                text = self.partial_text[:self._sent]  # what the messages so far carried
                self.send({"type": "snapshot", "seq": self._seq - 1, "text": text, "tokens": self._tokens})


class WidgetStreamView:
    """:class:`~lmsext.magics.stream_view.StreamView`'s interface (``start``/``feed``/``abort``/``finish``/``text``)
    on a :class:`StreamWidget`, for :func:`lmsext.magics.stream_view.run_stream` in a cell.

    The output is the widget plus a plain fallback (text/HTML, updated once at the end), so front ends
    without widgets and saved notebooks still show the final text and stats. Stop interrupts the
    kernel, which the engine turns into ``userStopped``.
    """

    def __init__(self, interval: float = FLUSH_INTERVAL, *, markdown: bool = True) -> None:
        self.widget = StreamWidget(interval=interval, markdown=markdown, stop_mode="interrupt", kernel_id=kernel_id())
        self.markdown = markdown
        #: text shown greyed before the stream (``%%lm_complete``'s prompt), as the plain view's ``prompt``
        self.prompt = ""
        self._handle: Any = None

    @property
    def text(self) -> str:
        """Everything fed so far."""
        return self.widget.partial_text

    def start(self) -> None:
        """Show the widget (running)."""
        self.widget.begin(prompt=self.prompt)
        self._handle = display(widget_bundle(self.widget, stream_bundle("…")), raw=True, display_id=True)

    def feed(self, text: str, drafted: bool = False) -> None:
        """One fragment of text (one token); ``drafted``: accepted from a draft (coloured at the end)."""
        if drafted:
            self.widget.feed(text, drafted=True)
        else:
            self.widget.feed(text)

    def abort(self) -> None:
        """The prediction failed: keep what was shown (or take the output down if nothing was)."""
        text = self.text
        self.widget.fail("")
        if self._handle is not None:
            self._handle.update(widget_bundle(self.widget, stream_bundle(text)) if text else {"text/plain": ""},
                                raw=True)

    def finish(self, result: "PredictionResult") -> None:
        """The final state, on the widget and in the fallback."""
        self.widget.finish(result)
        if self._handle is not None:
            fallback = stream_bundle(result.content, result.stats, markdown=False, parse_error=result.parse_error)
            self._handle.update(widget_bundle(self.widget, fallback), raw=True)


def _utf16_len(text: str) -> int:
    """Length of ``text`` in UTF-16 code units (JavaScript's string length)."""
    return len(text.encode("utf-16-le")) // 2


__all__ = ["FLUSH_INTERVAL", "StreamWidget", "WidgetStreamView"]
