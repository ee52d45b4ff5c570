"""``PredictionPanel()``: sliders for the prediction settings (bound to the session), a prompt, Send and Stop.

The controls edit the session's prediction defaults — what the next ``%%lm_respond`` uses — and follow
``%lm_config predict`` changes. Slider ranges are the config's own constraints
(:func:`~lmsext.widgets.controls.field_bounds`); unset settings show LM Studio's defaults
(:data:`lmsext.engine.sampling.DEFAULTS`).

Send runs the prediction on a background thread and streams it into a :class:`StreamWidget`, so the
kernel's main thread stays idle and processes the Stop click at once: Stop calls
:meth:`PredictionStream.cancel` (the engine's stop flag, checked every token) and the prediction ends
with stop reason ``userStopped``.
"""

from __future__ import annotations

import threading
from typing import Any

import ipywidgets as w

from ..config import PredictionConfig
from ..engine.sampling import DEFAULTS
from ..errors import LmsextError, ModelNotLoadedError
from ..ui.display import esc
from ..ui.magic_args import unescape
from ..ui.session import Session, get_session
from .controls import Binding, escape_stop, field_bounds, parse_seed
from .stream import StreamWidget

_STYLE = {"description_width": "120px"}
_WIDE = w.Layout(width="400px")


def _float_slider(key: str, description: str, step: float = 0.01) -> w.FloatSlider:
    low, high = field_bounds(PredictionConfig, key, step)
    return w.FloatSlider(min=low, max=high, step=step, value=DEFAULTS.get(key, low), description=description,
                         readout_format=".2f", style=_STYLE, layout=_WIDE)


def _rounded(value: float) -> float:
    return round(float(value), 4)


class PredictionPanel(w.VBox):
    """Prediction settings, a prompt box, Send and Stop, and the streamed reply.

    ``model``: an :class:`~lmsext.LLM` or identifier to use; by default the session's current model
    (the last ``%lm_load``'ed or panel-loaded one), else the first loaded instance. :attr:`result` is
    the last :class:`~lmsext.PredictionResult`.
    """

    def __init__(self, model: Any = None, *, session: Session | None = None, client: Any = None) -> None:
        from ..client import default_client
        self.client = client or default_client()
        self.session = session or get_session()
        self.model = model
        self.result: Any = None
        self.error: str | None = None
        self._thread: threading.Thread | None = None
        self._stream: Any = None
        self._stop_wanted = False

        self.binding = Binding(self.session, "predict", self._refresh, self._show_error)
        add = self.binding.add
        self.temperature = add(_float_slider("temperature", "temperature"), "temperature", _rounded)
        self.max_tokens = add(w.BoundedIntText(min=0, max=int(field_bounds(PredictionConfig, "max_tokens")[1]),
                                               description="max tokens", tooltip="0 = no limit", style=_STYLE,
                                               layout=w.Layout(width="260px")),
                              "max_tokens", lambda v: v if v > 0 else False)
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
        self.mode = w.ToggleButtons(options=[("respond", "respond"), ("complete", "complete")], value="respond",
                                    tooltips=["chat reply through the model's template", "continue the raw text"],
                                    style={"button_width": "90px"})
        self.prompt = w.Textarea(placeholder="Prompt", layout=w.Layout(width="520px", height="70px"))
        self.send_button = w.Button(description="Send", button_style="primary", icon="paper-plane")
        self.stop_button = w.Button(description="Stop", button_style="warning", icon="stop", disabled=True)
        self.reset_button = w.Button(description="Defaults", tooltip="forget the session's prediction settings")
        self.model_label = w.HTML()
        self.status = w.HTML()
        self.stream = StreamWidget(stop_mode="none", on_stop=self.stop)
        self.send_button.on_click(lambda _: self._send_clicked())
        self.stop_button.on_click(lambda _: self.stop())
        self.reset_button.on_click(lambda _: self.session.reset("predict"))
        self.session.observe(self._model_changed, names="model")

        super().__init__([
            w.HTML("<b>Prediction settings</b> <span style='color:#888'>(session defaults: %%lm_respond uses "
                   "them too)</span>"),
            self.temperature, self.max_tokens, self.top_k, self.top_p, self.min_p, self.repeat_penalty,
            self.xtc_probability, self.xtc_threshold, self.seed, self.stop_strings,
            w.HBox([self.mode, self.model_label]),
            self.prompt,
            w.HBox([self.send_button, self.stop_button, self.reset_button, self.status]),
            self.stream,
        ])
        self.add_class("lmsext-prediction-panel")
        self._refresh(self.session.prediction_config)
        self._model_changed()

    # -- session ↔ controls --------------------------------------------------------------------

    def _refresh(self, config: PredictionConfig) -> None:
        explicit = config.explicit()
        values: dict[str, Any] = {}
        for key in self.binding.controls:
            value = explicit.get(key)
            if key == "max_tokens":
                values[key] = value if isinstance(value, int) and value is not False else 0
            elif key == "seed":
                values[key] = "" if value is None else str(value)
            elif key == "stop_strings":
                values[key] = [escape_stop(s) for s in value or []]
            elif value is None:
                values[key] = DEFAULTS[key]
            elif value is False:  # "off": the slider's neutral end
                values[key] = {"top_p_sampling": 1.0, "repeat_penalty": 1.0}.get(key, 0)
            else:
                values[key] = value
        self.binding.set_values(values)
        self.status.value = ""

    def _show_error(self, message: str) -> None:
        self.status.value = f'<span style="color:#c62828">{esc(message)}</span>'

    def _model_changed(self, change: Any = None) -> None:
        try:
            name = self.llm().identifier
        except LmsextError:
            name = None
        self.model_label.value = (f"model: <b>{esc(name)}</b>" if name
                                  else "<span style='color:#888'>no model loaded (%lm_load or the load panel)</span>")

    @property
    def config(self) -> PredictionConfig:
        """The prediction config Send uses: the session's prediction defaults."""
        return self.session.prediction_config

    def llm(self):
        """The model Send uses (raises ModelNotLoadedError when there is none)."""
        llms = self.client.llm
        if self.model is not None:
            return self.model if hasattr(self.model, "respond_stream") else llms.get(str(self.model))
        if self.session.model:
            try:
                return llms.get(self.session.model)
            except ModelNotLoadedError:
                pass
        return llms.model()

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
            if self.mode.value == "respond":
                stream = llm.respond_stream(text, self.config)
            else:
                stream = llm.complete_stream(text, self.config)
        except LmsextError as exc:
            self._show_error(str(exc))
            raise
        self.status.value = f"generating with {esc(llm.identifier)}…"
        self.error, self._stream, self._stop_wanted = None, stream, False
        self.stream.begin()
        self.send_button.disabled, self.stop_button.disabled = True, False
        self._thread = threading.Thread(target=self._drive, args=(stream,), name="lmsext-predict", daemon=True)
        self._thread.start()
        return self._thread

    def _drive(self, stream: Any) -> None:
        try:
            for fragment in stream:
                self.stream.feed(fragment.content, fragment.tokens_count)
                if self._stop_wanted:
                    stream.cancel()  # again: a Stop that came before the engine started
            result = stream.result()
        except Exception as exc:  # noqa: BLE001 — the thread reports everything in the panel
            stream.close()
            self.error = str(exc) or type(exc).__name__
            self.stream.fail(self.error)
            self._show_error(self.error)
        else:
            self.result = result
            self.stream.finish(result)
            self.status.value = f"stop: {esc(result.stats.stop_reason)}"
        finally:
            self.send_button.disabled, self.stop_button.disabled = False, True

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
        super().close()


__all__ = ["PredictionPanel"]
