"""``PredictionPanel()``: sliders for the prediction settings (bound to the session), a prompt, Send and Stop.

The controls edit the session's prediction defaults — what the next ``%%lm_respond`` uses — and follow
``%lm_config predict`` changes. Slider ranges are the config's own constraints
(:func:`~lmsext.widgets.controls.field_bounds`); unset settings show LM Studio's defaults
(:data:`lmsext.config.SAMPLING_DEFAULTS`). Max tokens is bounded as the magics bound it: with ``maxTokens``
unset the box shows the notebook's default limit (``LMMagics.default_max_tokens``, 256) and Send stops there,
its stats line saying "hit the 256-token limit". The "no limit" switch is the user's explicit choice and wins
over that bound: on sets ``maxTokens: false`` (the reply ends at the end of text, a stop string or the context
policy) and hides the box; off sets ``maxTokens`` to the number shown (unset again when that is the default
limit). ``%lm_config predict maxTokens=False`` turns the switch on, ``maxTokens=None`` back to the default.

Conversation: in "respond" mode Send continues a chat, the session's chat ``'default'`` (``chat=NAME``
for another) — the very chat consecutive ``%%lm_respond`` cells continue. The panel, like its
sliders, is a view of the session: a prompt sent from the panel and the next ``%%lm_respond`` cell
(or the other way round) are one conversation, ``%lm_chat show|save`` shows or saves it and
``%lm_chat reset`` clears it, as the panel's "New chat" button does. The turn count follows changes
made by the magics. Each reply is recorded as ``%%lm_respond`` records it: the user message and the
reply — also a reply stopped with Stop (``userStopped``, the partial text) — are added once the
prediction ends; a prediction that fails records nothing, and neither does one whose chat was reset
or replaced (New chat, ``%lm_chat reset``, a cell) while it generated. "complete" mode continues the
raw prompt text: a one-shot that neither reads nor changes the chat. In "respond" mode the conversation shows
as bubbles (:attr:`conversation`, a :class:`~lmsext.widgets.chat_view.ChatView` of the same session chat), the
reply streaming into the last one and its stats line under it; in "complete" mode the reply streams into
:attr:`stream`.

Send runs the prediction on a background thread and streams it into a :class:`StreamWidget`, so the
kernel's main thread stays idle and processes the Stop click at once: Stop calls
:meth:`PredictionStream.cancel` (the engine's stop flag, checked every token) and the prediction ends
with stop reason ``userStopped``.
"""

from __future__ import annotations

import threading
from typing import Any

import ipywidgets as w

from ..chat import Chat
from ..config import SAMPLING_DEFAULTS as DEFAULTS
from ..config import PredictionConfig, unescape
from ..errors import LmsextError
from ..models import EMBEDDED_MODEL_KEY
from ..render import esc, stats_line
from ..session import Session, bounded_config, get_session, noting_limit
from .chat_view import ChatView
from .controls import Binding, escape_stop, field_bounds, model_to_use, parse_seed
from .model_picker import ModelPicker
from .stream import StreamWidget
from .template_field import template_text_field, template_to_text, text_to_template

_STYLE = {"description_width": "120px"}
_WIDE = w.Layout(width="400px")
#: What the max-tokens box holds when neither a setting nor the notebook's default gives a limit (what switching
#: "no limit" off then sets).
DEFAULT_TOKEN_LIMIT = 200


def _float_slider(key: str, description: str, step: float = 0.01) -> w.FloatSlider:
    low, high = field_bounds(PredictionConfig, key, step)
    return w.FloatSlider(min=low, max=high, step=step, value=DEFAULTS.get(key, low), description=description,
                         readout_format=".2f", style=_STYLE, layout=_WIDE)


def _rounded(value: float) -> float:
    return round(float(value), 4)


class PredictionPanel(w.VBox):
    """Prediction settings, a prompt box, Send and Stop, and the streamed reply.

    ``model``: an :class:`~lmsext.LLM` or identifier to use; by default the session's current model
    (the last ``%lm_load``'ed or panel-loaded one), else the first loaded instance. ``chat``: the name
    of the session chat Send continues in "respond" mode (``%%lm_respond --chat NAME``'s). :attr:`result`
    is the last :class:`~lmsext.PredictionResult`, :attr:`chat` the conversation so far.
    """

    def __init__(self, model: Any = None, *, chat: str = "default", session: Session | None = None,
                 client: Any = None) -> None:
        from ..client import default_client
        if not isinstance(chat, str) or not chat.strip():
            raise TypeError(f"PredictionPanel(chat=...): a chat name (non-empty string), not {chat!r:.40}")
        self.client = client or default_client()
        self.session = session or get_session()
        self.model = model
        self.chat_name = chat
        self.result: Any = None
        self.error: str | None = None
        self._thread: threading.Thread | None = None
        self._stream: Any = None
        self._stop_wanted = False

        self.binding = Binding(self.session, "predict", self._refresh, self._show_error)
        max_tokens_row = self._make_setting_controls()
        self._make_action_controls(chat)

        super().__init__([
            w.HTML("<b>Prediction settings</b> <span style='color:#888'>(session defaults: %%lm_respond uses "
                   "them too)</span>"),
            self.temperature, max_tokens_row, self.top_k, self.top_p, self.min_p, self.repeat_penalty,
            self.xtc_probability, self.xtc_threshold, self.seed, self.stop_strings, self.prompt_template,
            self.draft_model,
            w.HBox([self.mode, self.model_label]),
            self.picker,
            w.HBox([self.chat_label, self.new_chat_button]),
            self.conversation,
            self.prompt,
            w.HBox([self.send_button, self.stop_button, self.reset_button, self.status]),
            self.stream,
        ])
        self.add_class("lmsext-prediction-panel")
        self._refresh(self.session.prediction_config)
        self._model_changed()
        self._show_chat()

    def _make_setting_controls(self) -> w.HBox:
        """One control per prediction setting, each bound to the session's prediction config; returns the
        max-tokens row (label, "no limit", the number)."""
        add = self.binding.add
        self.temperature = add(_float_slider("temperature", "temperature"), "temperature", _rounded)
        self.max_tokens = add(w.BoundedIntText(min=1, max=int(field_bounds(PredictionConfig, "max_tokens")[1]),
                                               value=DEFAULT_TOKEN_LIMIT, tooltip="most tokens a reply may have",
                                               layout=w.Layout(width="120px")), "max_tokens")
        self.no_limit = self.binding.watch(
            w.Checkbox(value=False, description="no limit", indent=False, layout=w.Layout(width="90px"),
                       tooltip="maxTokens false: the reply ends at the end of text, a stop string or the context "
                               "policy (off: the number shown, by default the notebook's limit)"),
            self._no_limit_values)
        max_tokens_row = w.HBox([w.Label("max tokens", layout=w.Layout(width="124px")), self.no_limit,
                                 self.max_tokens])
        top_k_max = int(field_bounds(PredictionConfig, "top_k_sampling")[1])
        self.top_k = add(w.IntSlider(min=0, max=top_k_max, value=DEFAULTS["top_k_sampling"], description="top-k",
                                     tooltip="0 = off", style=_STYLE, layout=_WIDE), "top_k_sampling")
        self.top_p = add(_float_slider("top_p_sampling", "top-p"), "top_p_sampling", _rounded)
        self.min_p = add(_float_slider("min_p_sampling", "min-p"), "min_p_sampling", _rounded)
        self.repeat_penalty = add(_float_slider("repeat_penalty", "repeat penalty"), "repeat_penalty", _rounded)
        self.xtc_probability = add(_float_slider("xtc_probability", "XTC probability"), "xtc_probability", _rounded)
        self.xtc_threshold = add(_float_slider("xtc_threshold", "XTC threshold"), "xtc_threshold", _rounded)
        self.seed = add(w.Text(description="seed", placeholder="random", continuous_update=False, style=_STYLE),
                        "seed", parse_seed)
        self.stop_strings = add(w.TagsInput(allow_duplicates=False, placeholder="stop strings (\\n = newline)"),
                                "stop_strings", lambda tags: [unescape(s) for s in tags] or None)
        self.prompt_template = add(template_text_field(), "prompt_template", text_to_template)
        self.draft_model = add(w.Text(description="draft model", placeholder="none (key, identifier or 'lookup')",
                                      continuous_update=False, style=_STYLE,
                                      tooltip="speculative decoding: a draft model, or 'lookup' (prompt lookup)"),
                               "draft_model", lambda text: text.strip() or None)
        return max_tokens_row

    def _make_action_controls(self, chat: str) -> None:
        """Mode, prompt, Send/Stop/Defaults/New chat, the labels and the streamed reply, with their handlers."""
        self.mode = w.ToggleButtons(options=[("respond", "respond"), ("complete", "complete")], value="respond",
                                    tooltips=["chat reply through the model's template", "continue the raw text"],
                                    style={"button_width": "90px"})
        self.prompt = w.Textarea(placeholder="Prompt", layout=w.Layout(width="520px", height="70px"))
        self.send_button = w.Button(description="Send", button_style="primary", icon="paper-plane")
        self.stop_button = w.Button(description="Stop", button_style="warning", icon="stop", disabled=True)
        self.reset_button = w.Button(description="Defaults", tooltip="forget the session's prediction settings")
        self.new_chat_button = w.Button(description="New chat", icon="plus",
                                        tooltip=f"forget the conversation (%lm_chat reset --chat {chat})")
        self.chat_label = w.HTML()
        #: a dropdown of the loaded and downloaded models; its Load makes the pick the model Send uses
        self.picker = ModelPicker(client=self.client, session=self.session,
                                  selected=f"loaded:{self.session.model}" if self.session.model else None)
        self.picker.on_load = lambda llm: self._model_changed()
        self.model_label = w.HTML()
        self.status = w.HTML()
        self.stream = StreamWidget(stop_mode="none", on_stop=self.stop)
        #: the conversation as bubbles (the session chat Send continues)
        self.conversation = ChatView(chat, compose=False, session=self.session, client=self.client)
        self.conversation.on_msg(self._conversation_msg)
        self.send_button.on_click(lambda _: self._send_clicked())
        self.stop_button.on_click(lambda _: self.stop())
        self.reset_button.on_click(lambda _: self.session.reset("predict"))
        self.new_chat_button.on_click(lambda _: self.new_chat())
        self.mode.observe(self._show_chat, names="value")
        self.session.observe(self._model_changed, names="model")
        self.session.observe(self._show_chat, names="chats")
        self.session.observe(self._bound_changed, names="max_tokens_bound")

    # -- session ↔ controls --------------------------------------------------------------------

    def _no_limit_values(self, on: bool) -> dict[str, Any]:
        """The "no limit" switch → the setting: on is ``maxTokens: false`` (wins over the notebook's default
        limit); off is the number shown, or unset when that is the default limit."""
        if on:
            return {"max_tokens": False}
        value = self.max_tokens.value
        return {"max_tokens": None if value == self.session.max_tokens_bound else value}

    def _bound_changed(self, change: Any = None) -> None:
        self._refresh(self.session.prediction_config)

    def _refresh(self, config: PredictionConfig) -> None:
        explicit = config.explicit()
        values: dict[str, Any] = {}
        limit = self.session.bounded(config).max_tokens  # a setting's, else the notebook's default limit
        limited = isinstance(limit, int) and not isinstance(limit, bool)  # None or False: no limit
        for key in self.binding.controls:
            value = explicit.get(key)
            if key == "max_tokens":
                if limited:
                    values[key] = limit  # else the box keeps the last limit, for when "no limit" goes off
            elif key in ("seed", "draft_model"):
                values[key] = "" if value is None else str(value)
            elif key == "stop_strings":
                values[key] = [escape_stop(s) for s in value or []]
            elif key == "prompt_template":
                values[key] = template_to_text(value)
            elif value is None:
                values[key] = DEFAULTS[key]
            elif value is False:  # "off": the slider's neutral end
                values[key] = {"top_p_sampling": 1.0, "repeat_penalty": 1.0}.get(key, 0)
            else:
                values[key] = value
        self.binding.set_values(values)
        with self.binding.quiet():
            self.no_limit.value = not limited
        self.max_tokens.layout.display = None if limited else "none"
        self.status.value = ""

    def _show_error(self, message: str) -> None:
        self.status.value = f'<span style="color:#c62828">{esc(message)}</span>'

    def _model_changed(self, change: Any = None) -> None:
        try:
            name = self.llm().identifier if self.model is not None or self.client.llm.list_loaded() else None
        except LmsextError:
            name = None
        self.model_label.value = (f"model: <b>{esc(name)}</b>" if name
                                  else f"<span style='color:#888'>no model loaded: Send loads the embedded default "
                                       f"model {EMBEDDED_MODEL_KEY} (or %lm_load one, or use the load panel)</span>")

    @property
    def config(self) -> PredictionConfig:
        """The prediction config Send uses: the session's prediction defaults, under the notebook's default token
        limit when they set no ``maxTokens`` (as the magics bound a cell)."""
        return self.session.bounded(self.session.prediction_config)

    # -- the conversation ----------------------------------------------------------------------

    @property
    def chat(self) -> Chat:
        """The conversation Send continues (a copy of the session's chat :attr:`chat_name`)."""
        return self.session.chat(self.chat_name)

    @property
    def turns(self) -> int:
        """Exchanges in the conversation so far: its user messages."""
        return sum(1 for m in self.chat if m["role"] == "user")

    def new_chat(self) -> None:
        """Forget the conversation (as ``%lm_chat reset``): the next Send starts a new chat. A reply
        still generating is then not recorded."""
        self.session.drop_chat(self.chat_name)
        self.status.value = "new chat"

    def _show_chat(self, change: Any = None) -> None:
        turns = self.turns
        text = f"{turns} turn{'s' if turns != 1 else ''}" if turns else "new"
        where = "" if self.chat_name == "default" else f" '{esc(self.chat_name)}'"
        note = (" <span style='color:#888'>(complete mode: a one-shot, not part of it)</span>"
                if self.mode.value == "complete" else "")
        # respond mode: the conversation view (the reply streams into its last bubble); complete: the stream view
        self.conversation.layout.display = "none" if self.mode.value == "complete" else None
        self.stream.layout.display = None if self.mode.value == "complete" else "none"
        self.chat_label.value = f"conversation{where}: <b>{text}</b>{note}"

    def llm(self):
        """The model Send uses; when none is loaded, the embedded default model (loaded then, saying so)."""
        return model_to_use(self.client, self.session, self.model)

    # -- generation ----------------------------------------------------------------------------

    @property
    def busy(self) -> bool:
        """True while a prediction started by Send runs."""
        return self._thread is not None and self._thread.is_alive()

    def _send_clicked(self) -> None:
        try:
            self.send()
        except LmsextError:
            pass  # shown in the status line

    def send(self, prompt: str | None = None) -> threading.Thread:
        """Start a prediction of ``prompt`` (default: the prompt box) on a background thread and return it.

        Errors found before generating (no model, a bad setting, busy) raise and show in the status line.
        """
        text = self.prompt.value if prompt is None else prompt
        try:
            if self.busy:
                raise LmsextError("a prediction is already running: Stop it first")
            if not text.strip():
                raise LmsextError("the prompt is empty")
            llm = self.llm()
            chat = base = None
            config, limit = bounded_config(self.session, self.session.prediction_config)
            if self.mode.value == "respond":
                base = self.session.chats.get(self.chat_name)  # to notice a reset while generating
                chat = self.session.chat(self.chat_name)
                chat.add_user_message(text.strip())  # as %%lm_respond adds the cell
                stream = noting_limit(llm.respond_stream(chat, config), limit)
                self.conversation.begin_live(text.strip())
                self.conversation.busy = True
            else:
                stream = noting_limit(llm.complete_stream(text, config), limit)
        except LmsextError as exc:
            self._show_error(str(exc))
            raise
        self.status.value = f"generating with {esc(llm.identifier)}…"
        self.error, self._stream, self._stop_wanted = None, stream, False
        self.stream.begin(prompt=text if chat is None else "")  # complete mode: the prompt the reply continues
        self.send_button.disabled, self.stop_button.disabled = True, False
        self.new_chat_button.disabled = True
        self._thread = threading.Thread(target=self._drive, args=(stream, chat, base), name="lmsext-predict",
                                        daemon=True)
        self._thread.start()
        return self._thread

    def _record(self, chat: Chat, base: Chat | None, result: Any) -> str:
        """Add the reply to the session chat as %%lm_respond does; a status note."""
        if self.session.chats.get(self.chat_name) is not base:
            return " · the chat was reset meanwhile: this reply is not in it"
        chat.add_assistant_response(result.non_reasoning_content)
        self.session.set_chat(self.chat_name, chat)
        return ""

    def _drive(self, stream: Any, chat: Chat | None = None, base: Chat | None = None) -> None:
        try:
            for fragment in stream:
                self.stream.feed(fragment.content, fragment.tokens_count, getattr(fragment, "contains_drafted", False))
                if chat is not None:
                    self.conversation.feed_fragment(fragment)
                if self._stop_wanted:
                    stream.cancel()  # again: a Stop that came before the engine started
            result = stream.result()
        except Exception as exc:  # noqa: BLE001 — the thread reports everything in the panel
            stream.close()
            self.error = str(exc) or type(exc).__name__
            self.stream.fail(self.error)
            self._show_error(self.error)
            if chat is not None:
                self.conversation.status = self.error
        else:
            self.result = result
            note = self._record(chat, base, result) if chat is not None else ""
            self.stream.finish(result)
            self.status.value = note.lstrip(" ·")  # the stats line under the reply says how it stopped
            if chat is not None:
                self.conversation.status = stats_line(result.stats) + note
        finally:
            if chat is not None:
                self.conversation.end_live()
                self.conversation.busy = False
            self.send_button.disabled, self.stop_button.disabled = False, True
            self.new_chat_button.disabled = False

    def _conversation_msg(self, _widget: Any, content: Any, _buffers: Any) -> None:
        """The conversation view's Stop and New chat act on the panel's prediction."""
        if isinstance(content, dict) and content.get("action") == "stop":
            self.stop()

    def stop(self) -> None:
        """Stop the running prediction (it ends with ``userStopped``, keeping its text)."""
        self._stop_wanted = True
        if self._stream is not None and self.busy:
            self.status.value = "stopping…"
            self._stream.cancel()

    def join(self, timeout: float | None = None) -> None:
        """Wait for the running prediction to end."""
        if self._thread is not None:
            self._thread.join(timeout)

    def close(self) -> None:
        """Stop following the session (and any running prediction) and close the widgets."""
        binding = getattr(self, "binding", None)
        if binding is not None:  # None when the constructor failed part-way
            self.stop()
            binding.close()
            self.session.unobserve(self._model_changed, names="model")
            self.session.unobserve(self._show_chat, names="chats")
            self.session.unobserve(self._bound_changed, names="max_tokens_bound")
            self.conversation.close()
            self.picker.close()
        super().close()


__all__ = ["PredictionPanel"]
