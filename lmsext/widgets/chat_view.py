"""``ChatView``: a session chat as a conversation — bubbles, the reply streaming into the last one, Stop,
New chat and export as Markdown.

The view shows the session's chat ``name`` (:meth:`lmsext.session.Session.chat`), the very chat that
consecutive ``%%lm_respond`` cells and the prediction panel continue: a cell run, a panel Send, a view Send
or ``%lm_chat reset`` show in every view of it. Send records a reply as ``%%lm_respond`` does (the user
message and the reply — also one stopped with Stop — once the prediction ends; nothing when it fails or the
chat was reset meanwhile), under the notebook's default token limit when the session's settings give none (as
``%%lm_respond``'s: "hit the 256-token limit" in the stats line). The reply streams on a background thread (the
kernel stays free to take Stop) into the ``live`` trait, at most :data:`FLUSH_INTERVAL` apart. A reply's reasoning (``reasoning_content`` of the
result, where the model gives one) is shown folded above it. The front end is ``chat_view.js``.

>>> from lmsext.widgets import ChatView
>>> view = ChatView()            # the chat %%lm_respond continues; ChatView("other") for --chat other
>>> view.send("Tell me a story"); view.join()
>>> view.to_markdown()
"""

from __future__ import annotations

import threading
import time
from typing import Any

import anywidget
import traitlets as t

from ..chat import Chat
from ..errors import LmsextError
from ..render import chat_bundle, stats_line
from ..session import Session, bounded_config, get_session, noting_limit
from .controls import model_to_use
from .frontend import asset, widget_bundle

#: Least time between two updates of the streaming bubble (≤ 20 messages/s, as the stream view).
FLUSH_INTERVAL = 0.05
ROLE_TITLES = {"user": "You", "assistant": "Assistant", "system": "System", "tool": "Tool"}


class ChatView(anywidget.AnyWidget):
    """The session chat ``chat`` as bubbles, with a message box, Send, Stop, New chat and Export.

    ``compose=False`` leaves out the message box and Send (the prediction panel has its own prompt).
    ``model``: an :class:`~lmsext.LLM` or identifier; by default the session's current model, else the first
    loaded instance, else the embedded default model (as the prediction panel picks it).
    """

    _esm = asset("chat_view.js")

    chat_name = t.Unicode("default").tag(sync=True)
    model_name = t.Unicode("").tag(sync=True)
    compose = t.Bool(True).tag(sync=True)
    #: the recorded conversation: ``[{"role", "content", "reasoning"}]``
    messages = t.List(t.Dict()).tag(sync=True)
    #: the exchange generating now: ``{"user", "content", "reasoning"}``; empty when none is
    live = t.Dict().tag(sync=True)
    busy = t.Bool(False).tag(sync=True)
    #: the last reply's stats line, or a one-line error
    status = t.Unicode("").tag(sync=True)
    #: the conversation as Markdown (what Export saves)
    markdown = t.Unicode("").tag(sync=True)

    def __init__(self, chat: str = "default", *, model: Any = None, compose: bool = True,
                 session: Session | None = None, client: Any = None, **kwargs: Any) -> None:
        from ..client import default_client
        if not isinstance(chat, str) or not chat.strip():
            raise TypeError(f"ChatView(chat=...): a chat name (non-empty string), not {chat!r:.40}")
        super().__init__(chat_name=chat, compose=compose, **kwargs)
        self.session = session or get_session()
        self.client = client or default_client()
        self.model = model
        self.result: Any = None
        self._reasoning: dict[int, str] = {}
        self._thread: threading.Thread | None = None
        self._stream: Any = None
        self._stop_wanted = False
        self._last_flush = 0.0
        self._live = {"user": "", "content": "", "reasoning": ""}
        self.session.observe(self._chat_changed, names="chats")
        self.on_msg(self._on_front_end_msg)
        self._chat_changed()

    # -- the conversation ----------------------------------------------------------------------

    @property
    def chat(self) -> Chat:
        """A copy of the session chat the view shows."""
        return self.session.chat(self.chat_name)

    def _chat_changed(self, change: Any = None) -> None:
        if self.chat_name not in self.session.chats:
            self._reasoning.clear()
        self.messages = [{"role": m["role"], "content": m["content"], "reasoning": self._reasoning.get(i, "")}
                         for i, m in enumerate(self.chat.messages)]
        self.markdown = self.to_markdown()

    def to_markdown(self) -> str:
        """The conversation as Markdown: one heading per message, reasoning in a folded ``<details>``."""
        parts = [f"# Chat '{self.chat_name}'" + (f" with {self.model_name}" if self.model_name else "")]
        for m in self.messages:
            parts.append(f"### {ROLE_TITLES.get(m['role'], m['role'])}")
            if m.get("reasoning"):
                parts.append(f"<details><summary>reasoning</summary>\n\n{m['reasoning']}\n\n</details>")
            parts.append(m["content"])
        return "\n\n".join(parts) + "\n"

    def new_chat(self) -> None:
        """Forget the conversation (as ``%lm_chat reset``); a reply still generating is then not recorded."""
        self.session.drop_chat(self.chat_name)
        self.status = "new chat"

    # -- the live bubble (also fed by the prediction panel) ------------------------------------

    def begin_live(self, user: str) -> None:
        """Show ``user``'s message and an empty reply bubble that :meth:`feed_live` fills."""
        self._last_flush = 0.0
        self._live = {"user": user, "content": "", "reasoning": ""}
        self.live = dict(self._live)

    def feed_live(self, content: str = "", reasoning: str = "") -> None:
        """Add text to the streaming reply; the front end gets it at most every :data:`FLUSH_INTERVAL`."""
        self._live["content"] += content
        self._live["reasoning"] += reasoning
        now = time.monotonic()
        if now - self._last_flush >= FLUSH_INTERVAL:
            self._last_flush = now
            self.live = dict(self._live)

    def feed_fragment(self, fragment: Any) -> None:
        """A prediction fragment into the streaming reply: reasoning to the folded part, the answer to the bubble
        (the reasoning tags themselves are not shown)."""
        kind = getattr(fragment, "reasoning_type", "none")
        if kind == "reasoning":
            self.feed_live("", fragment.content)
        elif kind == "none":
            self.feed_live(fragment.content)

    def end_live(self) -> None:
        """The reply ended: drop the live bubble (the recorded chat shows it, when it was recorded)."""
        self.live = {}

    # -- Send / Stop ---------------------------------------------------------------------------

    def llm(self):
        """The model Send uses (see the class docstring)."""
        return model_to_use(self.client, self.session, self.model)

    def send(self, text: str) -> threading.Thread:
        """Continue the chat with ``text``, streaming the reply on a background thread (returned). Errors
        found before generating (busy, an empty message, no model) raise and show in :attr:`status`."""
        try:
            if self.busy:
                raise LmsextError("a reply is still generating: Stop it first")
            if not isinstance(text, str) or not text.strip():
                raise LmsextError("the message is empty")
            llm = self.llm()
            base = self.session.chats.get(self.chat_name)  # to notice a reset while generating
            chat = self.session.chat(self.chat_name)
            chat.add_user_message(text.strip())
            config, limit = bounded_config(self.session, self.session.prediction_config)  # as %%lm_respond's
            stream = noting_limit(llm.respond_stream(chat, config), limit)
        except LmsextError as exc:
            self.status = str(exc)
            raise
        self.model_name, self.status = llm.identifier, ""
        self._stream, self._stop_wanted, self.busy = stream, False, True
        self.begin_live(text.strip())
        self._thread = threading.Thread(target=self._drive, args=(stream, chat, base), name="lmsext-chat-view",
                                        daemon=True)
        self._thread.start()
        return self._thread

    def _drive(self, stream: Any, chat: Chat, base: Chat | None) -> None:
        try:
            for fragment in stream:
                self.feed_fragment(fragment)
                if self._stop_wanted:
                    stream.cancel()  # again: a Stop that came before the engine started
            result = stream.result()
        except Exception as exc:  # noqa: BLE001 — the thread reports everything in the view
            stream.close()
            self.status = str(exc) or type(exc).__name__
        else:
            self.result = result
            self.status = stats_line(result.stats) + self.record(chat, base, result)
        finally:
            self.end_live()
            self.busy = False

    def record(self, chat: Chat, base: Chat | None, result: Any) -> str:
        """Add ``result``'s reply (and its reasoning) to the session chat as %%lm_respond does; a status note
        when the chat was reset or replaced while it generated (then nothing is added)."""
        if self.session.chats.get(self.chat_name) is not base:
            return " · the chat was reset meanwhile: this reply is not in it"
        reasoning = getattr(result, "reasoning_content", None)
        # the answer only, as %%lm_respond keeps it (chat templates expect the reasoning left out of the history)
        chat.add_assistant_response(getattr(result, "non_reasoning_content", "") if reasoning else result.content)
        if reasoning:
            self._reasoning[len(chat.messages) - 1] = str(reasoning)
        self.session.set_chat(self.chat_name, chat)
        return ""

    def stop(self) -> None:
        """Stop the reply generating (it ends with ``userStopped`` and is recorded with its text so far)."""
        self._stop_wanted = True
        if self._stream is not None and self.busy:
            self._stream.cancel()

    def join(self, timeout: float | None = None) -> None:
        """Wait for the reply generating to end."""
        if self._thread is not None:
            self._thread.join(timeout)

    def _on_front_end_msg(self, _widget: Any, content: Any, _buffers: Any) -> None:
        if not isinstance(content, dict):
            return
        action = content.get("action")
        try:
            if action == "send":
                self.send(content.get("text", ""))
            elif action == "stop":
                self.stop()
            elif action == "new":
                self.new_chat()
        except LmsextError:
            pass  # shown in the status line

    def close(self) -> None:
        """Stop following the session (and a reply generating) and close the widget (also after a
        constructor that failed part-way)."""
        if getattr(self, "_live", None) is not None:
            self.stop()
            self.session.unobserve(self._chat_changed, names="chats")
        super().close()

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        """The widget, with the chat as text/HTML where widgets do not render."""
        return widget_bundle(super(), chat_bundle(self.chat_name, self.chat))


__all__ = ["ChatView", "FLUSH_INTERVAL"]
