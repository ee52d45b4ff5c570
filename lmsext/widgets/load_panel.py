"""``LoadPanel(model)``: sliders and switches for every load setting of one model, bound to the session.

Ranges come from the model's GGUF metadata (``client.llm.model_info``, a :class:`~lmsext.backend.ModelInfo`)
and LM Studio's facts: context length from 256 to the trained context in steps of
:data:`lmsext.config.CONTEXT_STEP` (what llama.cpp allocates), GPU offload from 0 to the
offloadable layers ("N of M layers"), active experts from 1 to ``expert_count`` (disabled, with the
reason, on a dense model). The controls edit the session's load defaults — the ones ``%lm_load``
starts from — and follow ``%lm_config load`` changes. Defaults and notes ("applied differently") come
from the public API's load preview (``client.llm.plan(info, config)``); the memory estimate is the
public API's, ``client.llm.estimate(path, config)`` — the numbers ``model.estimate()`` and
``%lm_load … --estimate-only`` show (weights, KV cache, compute buffers, overhead) — with the verdict
the load applies (:attr:`MemoryEstimate.fits`: Load refuses a config that does not fit). Nothing is
computed here. Recomputing it on every slider move is cheap: the model's metadata and GGUF summary
are cached per file (the metadata cache re-checks a hash of the file's header: a few ms for a large
vocabulary), so it costs a load plan and an available-memory read (psutil) — 0.15 ms on stories260K. The
verdict uses the memory available now: while the panel's model is loaded, a reload (which unloads it
first) has more.

The Load button loads (or reloads) the model with the session's load config on a background thread,
with llama.cpp's load progress in a progress bar, then shows the load-config summary.

Opened for a loaded instance (``LoadPanel(llm)``, ``%lm_panel load`` after ``%lm_load``), the panel edits
THAT instance: it says "editing <identifier>", shows the instance's load summary, and its controls start
from the settings the instance was loaded with (a copy of the session: moving them changes neither the
session's load defaults nor the instance until Load reloads it).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import ipywidgets as w

from ..config import CACHE_QUANTIZATION_TYPES, CONTEXT_STEP, DEFAULT_CONTEXT_LENGTH, LoadModelConfig
from ..errors import LmsextError
from ..models import EMBEDDED_MODEL_KEY
from ..render import esc
from ..session import Session, get_session
from ..units import format_bytes
from .controls import Binding, parse_seed
from .model_picker import ModelPicker
from .summary import LoadSummaryWidget

_WIDE = w.Layout(width="440px")
_STYLE = {"description_width": "150px"}


class LoadPanel(w.VBox):
    """Controls for every load setting of ``model`` (a model key, a GGUF path, a DownloadedModel or a
    loaded :class:`~lmsext.LLM`; default: the embedded default model ``stories260K``), a live memory
    estimate, and a Load button."""

    def __init__(self, model: Any = EMBEDDED_MODEL_KEY, *, session: Session | None = None, client: Any = None,
                 picker: bool = True) -> None:
        from ..client import default_client
        self.client = client or default_client()
        self.session = session or get_session()
        self.llm: Any = None
        #: The memory estimate shown (a :class:`~lmsext.engine.estimate.MemoryEstimate`), None for a bad config.
        self.memory: Any = None
        self._thread: threading.Thread | None = None
        self._last_progress = 0.0
        self.binding: Binding | None = None
        #: the dropdown of loaded and downloaded models above the controls (None with ``picker=False``)
        self.picker: ModelPicker | None = None
        self._make_action_controls()
        super().__init__([])
        self.add_class("lmsext-load-panel")
        self.show_model(model)
        if picker:
            choice = f"loaded:{self.identifier}" if self.identifier is not None else f"file:{self.model_key}"
            self.picker = ModelPicker(client=self.client, session=self.session, load_button=False, selected=choice)
            self.picker.on_select = self.show_model
            self.children = (self.picker, *self.children)

    def show_model(self, model: Any) -> None:
        """Point the panel at ``model`` (what the picker does): its ranges, settings, estimate and, for a
        loaded instance, "editing <identifier>" and its load summary."""
        if self.busy:
            raise LmsextError("a load is running: pick another model when it is done")
        self.model_key, self.path, self.info, self.identifier = _target(model, self.client)
        #: where the controls' load settings live: the session, or for a loaded instance its own settings
        self.settings = self.session if self.identifier is None else _instance_settings(model)
        try:
            base = self.client.llm.plan(self.info, LoadModelConfig())
            self.total_layers, batch = base.offloadable_layers, base.effective["eval_batch_size"]
        except LmsextError:  # a server plans its own loads: the refusal shows in the notes, Load stays off
            self.total_layers, batch = self.info.n_layer + 1, LoadModelConfig().eval_batch_size or 512
        info = self.info
        trained = info.trained_context or DEFAULT_CONTEXT_LENGTH
        ctx_max = max(CONTEXT_STEP, -(-trained // CONTEXT_STEP) * CONTEXT_STEP)

        if self.binding is not None:  # the controls of the model shown before
            self.binding.close()
            for control in self.binding.controls.values():
                control.close()
        self.binding = Binding(self.settings, "load", self._refresh, self._show_error)
        self._make_setting_controls(batch, trained, ctx_max)

        title = w.HTML(f"<b>Load {esc(self.model_key)}</b> <span style='color:#888'>{esc(info.architecture)} · "
                       f"{info.n_layer} layers · trained context {trained}</span>")
        self.children = [
            *([self.picker] if self.picker is not None else []),
            title,
            self.context_length,
            w.HBox([self.gpu, self.gpu_label]),
            self.eval_batch_size,
            w.HBox([self.num_experts, self.experts_label]),
            w.HBox([self.k_cache, self.v_cache]),
            w.HBox([self.flash_attention, self.offload_kv, self.mmap, self.keep_in_memory]),
            self.seed,
            self.estimate,
            self.notes,
            w.HBox([self.load_button, self.reset_button, self.progress, self.status]),
            self.summary,
        ]
        self.llm, self.status.value, self.progress.value, self.summary.result = None, "", 0.0, None
        self._refresh(self.settings.load_config)
        if self.identifier is not None:
            self._show_instance(model)

    def _make_setting_controls(self, eval_batch_size: int, trained: int, ctx_max: int) -> None:
        """One control per load setting, each bound to the session's load config."""
        info = self.info
        add = self.binding.add
        self.context_length = add(w.IntSlider(
            min=CONTEXT_STEP, max=ctx_max, step=CONTEXT_STEP, description="context length",
            tooltip=f"tokens; llama.cpp allocates multiples of {CONTEXT_STEP}; trained on {trained}",
            style=_STYLE, layout=_WIDE), "context_length")
        self.gpu = add(w.IntSlider(min=0, max=self.total_layers, description="GPU offload", readout=False,
                                   style=_STYLE, layout=_WIDE), "gpu", self._gpu_config)
        self.gpu_label = w.Label()
        self.eval_batch_size = add(w.IntSlider(min=1, max=max(ctx_max, eval_batch_size),
                                               description="eval batch size", style=_STYLE, layout=_WIDE),
                                   "eval_batch_size")
        self.flash_attention = add(w.Checkbox(description="flash attention", indent=False), "flash_attention")
        self.offload_kv = add(w.Checkbox(description="offload KV cache to GPU", indent=False),
                              "offload_kv_cache_to_gpu")
        experts = max(info.expert_count, 1)
        self.num_experts = add(w.IntSlider(min=1, max=experts, description="active experts", style=_STYLE,
                                           layout=_WIDE, disabled=not info.is_moe), "num_experts")
        self.experts_label = w.Label(f"of {info.expert_count} experts" if info.is_moe
                                     else "dense model: no experts to choose")
        self.k_cache = add(w.Dropdown(options=CACHE_QUANTIZATION_TYPES, description="K cache type",
                                      style=_STYLE), "llama_k_cache_quantization_type")
        self.v_cache = add(w.Dropdown(options=CACHE_QUANTIZATION_TYPES, description="V cache type",
                                      style=_STYLE), "llama_v_cache_quantization_type")
        self.mmap = add(w.Checkbox(description="mmap", indent=False), "try_mmap")
        self.keep_in_memory = add(w.Checkbox(description="keep in memory", indent=False), "keep_model_in_memory")
        self.seed = add(w.Text(description="seed", placeholder="random", continuous_update=False, style=_STYLE),
                        "seed", parse_seed)

    def _make_action_controls(self) -> None:
        """The estimate and notes, Load and Defaults, the progress bar, the status and the load summary."""
        self.estimate = w.HTML()
        self.notes = w.HTML()
        self.load_button = w.Button(description="Load", button_style="primary", icon="play")
        self.reset_button = w.Button(description="Defaults", tooltip="forget the session's load settings")
        self.progress = w.FloatProgress(min=0.0, max=1.0, value=0.0, description="", layout=w.Layout(width="300px"))
        self.status = w.HTML()
        self.summary = LoadSummaryWidget()
        self.load_button.on_click(lambda _: self.start_load())
        self.reset_button.on_click(lambda _: self.settings.reset("load"))

    # -- session ↔ controls --------------------------------------------------------------------

    def _gpu_config(self, layers: int) -> dict[str, Any]:
        ratio: Any = "off" if layers <= 0 else "max" if layers >= self.total_layers else layers / self.total_layers
        return {"ratio": ratio}

    def _refresh(self, config: LoadModelConfig) -> None:
        """Show ``config``: requested values where set, the engine's defaults elsewhere, notes and estimate."""
        explicit = config.explicit()
        try:
            plan = self.client.llm.plan(self.info, config)
            # what client.llm.estimate / model.estimate() / %lm_load --estimate-only say, and Load checks
            memory = self.client.llm.estimate(str(self.path), config, allow_download=False)
        except LmsextError as exc:
            plan, memory = None, None
            self.notes.value = f'<span style="color:#c62828">{esc(exc)}</span>'
            self.estimate.value = "<b>Memory estimate</b> –"
            self.load_button.disabled = True
        self.memory = memory
        values: dict[str, Any] = {}
        effective = plan.effective if plan is not None else {}
        for key in self.binding.controls:
            if key == "gpu":
                if plan is not None:
                    values[key] = plan.gpu_layers
            elif key in explicit:
                values[key] = explicit[key]
            elif key in effective:
                values[key] = effective[key]
        if "seed" in values:
            values["seed"] = "" if values["seed"] is None else str(values["seed"])
        if not self.info.is_moe:
            values.pop("num_experts", None)
        self.binding.set_values(values)
        self._show_gpu_label()
        if plan is None:
            return
        self.load_button.disabled = self.busy
        notes = "".join(f"<li>{esc(n)}</li>" for n in plan.notes)
        self.notes.value = (f'<div style="color:#b35900">Applied differently:<ul style="margin:0">{notes}</ul></div>'
                            if notes else "")
        self.estimate.value = _estimate_html(memory)

    def _show_gpu_label(self) -> None:
        layers = self.gpu.value
        word = " (off)" if layers == 0 else " (max)" if layers == self.total_layers else ""
        self.gpu_label.value = f"{layers} of {self.total_layers} layers{word}"

    def _show_error(self, message: str) -> None:
        self.notes.value = f'<span style="color:#c62828">{esc(message)}</span>'

    def _show_instance(self, llm: Any) -> None:
        """Say which instance the panel edits and show its load summary."""
        self.llm = llm
        self.status.value = (f"editing <b>{esc(self.identifier)}</b> <span style='color:#888'>(loaded; Load reloads "
                             "it with these settings)</span>")
        self.summary.result = llm.load_result

    @property
    def config(self) -> LoadModelConfig:
        """The load config the Load button uses: the session's load defaults (for a loaded instance, the
        settings it was loaded with, as edited in the panel)."""
        return self.settings.load_config

    # -- loading -------------------------------------------------------------------------------

    @property
    def busy(self) -> bool:
        """True while a load started by the button runs."""
        return self._thread is not None and self._thread.is_alive()

    def start_load(self) -> threading.Thread | None:
        """What the Load button does: :meth:`load` on a background thread (the kernel stays responsive)."""
        if self.busy:
            return None
        self.load_button.disabled = True
        self._thread = threading.Thread(target=self._load_quietly, name="lmsext-load-panel", daemon=True)
        self._thread.start()
        return self._thread

    def join(self, timeout: float | None = None) -> None:
        """Wait for a load started by the button."""
        if self._thread is not None:
            self._thread.join(timeout)

    def _load_quietly(self) -> None:
        try:
            self.load()
        except LmsextError:
            pass  # shown in the status line
        finally:
            self.load_button.disabled = False

    def load(self):
        """Load (or reload: unload first) the model with :attr:`config`; returns the :class:`~lmsext.LLM`."""
        llms = self.client.llm
        previous = self._loaded_instance()
        self.progress.value, self.progress.bar_style = 0.0, "info"
        self.status.value = "reloading…" if previous is not None else "loading…"
        self._last_progress = 0.0
        try:
            llms.plan(self.info, self.config)  # a config that cannot load fails before the old instance goes
            identifier = None
            if previous is not None:
                identifier = previous.identifier
                llms.unload(identifier)
            llm = llms.load(self.model_key, config=self.config, identifier=identifier,
                            on_load_progress=self._on_progress)
        except LmsextError as exc:
            self.progress.bar_style = "danger"
            self.status.value = f'<span style="color:#c62828">{esc(exc)}</span>'
            raise
        self.llm, self.identifier = llm, llm.identifier
        self.session.model = llm.identifier
        self.progress.value, self.progress.bar_style = 1.0, "success"
        lr = llm.load_result
        self.status.value = f"loaded as '{esc(llm.identifier)}' in {lr.load_time_seconds:.2f} s"
        self.summary.result = lr
        if self.picker is not None:
            self.picker.refresh(f"loaded:{llm.identifier}")
        return llm

    def _on_progress(self, fraction: float) -> None:
        now = time.monotonic()
        if fraction >= 1.0 or fraction - self.progress.value >= 0.02 or now - self._last_progress >= 0.1:
            self._last_progress = now
            self.progress.value = min(max(fraction, 0.0), 1.0)

    def _loaded_instance(self):
        loaded = self.client.llm.list_loaded()
        mine = [llm for llm in loaded if Path(llm.load_result.path).resolve() == self.path.resolve()]
        for wanted in (self.identifier, self.session.model):
            for llm in mine:
                if llm.identifier == wanted:
                    return llm
        return mine[0] if mine else None

    def close(self) -> None:
        """Stop following the session and close the widgets (also after a constructor that failed)."""
        binding = getattr(self, "binding", None)
        if binding is not None:
            binding.close()
        if getattr(self, "picker", None) is not None:
            self.picker.close()
        super().close()


def _estimate_html(memory: Any) -> str:
    """The estimate as ``MemoryEstimate.describe()`` words it, the total in bold, and the load's verdict."""
    parts = (f"weights {format_bytes(memory.weights)} + KV cache {format_bytes(memory.kv_cache)} + compute buffers "
             f"{format_bytes(memory.compute)} + overhead {format_bytes(memory.overhead)} = "
             f"<b>{format_bytes(memory.total)}</b>")
    if memory.fits is None:
        verdict = "<span style='color:#888'>(available memory unknown)</span>"
    elif memory.fits:
        verdict = f"<span style='color:#2e7d32'>fits (available: {format_bytes(memory.available)})</span>"
    else:
        verdict = (f"<span style='color:#c62828'><b>does NOT fit</b> (available: {format_bytes(memory.available)}): "
                   "Load refuses it — lower the context length, use flash attention or a quantized KV cache, "
                   "or %lm_load --force</span>")
    vram = memory.describe_vram() if hasattr(memory, "describe_vram") else ""  # GPU memory per device
    return f"<b>Memory estimate</b> {parts} — {verdict}" + (f"<br>{vram}" if vram else "")


def _instance_settings(llm: Any) -> Session:
    """A private session holding the load settings ``llm`` was loaded with (what it was asked for)."""
    settings = Session()
    requested = {k: v for k, v in llm.load_result.requested.items() if v is not None}
    try:
        settings.load_config = LoadModelConfig.parse(requested)
    except LmsextError:  # an instance loaded elsewhere (a server) may report settings the config refuses
        pass
    return settings


def _target(model: Any, client: Any) -> tuple[str, Path, Any, str | None]:
    """(key to load by, file path, ModelInfo, identifier of a loaded instance to reload) for ``model``."""
    from ..backend import DownloadedModel
    from ..llm import LLM
    if isinstance(model, LLM):
        lr = model.load_result
        return lr.model_key, Path(lr.path), model.get_info(), model.identifier
    if isinstance(model, DownloadedModel):
        path = Path(model.path)
        return model.model_key, path, model.info or client.llm.model_info(str(path)), None
    if not isinstance(model, (str, Path)):
        raise TypeError("LoadPanel(model): a model key, a path, a DownloadedModel or an LLM, "
                        f"not {type(model).__name__}")
    info = client.llm.model_info(str(model), allow_download=True)
    return str(model), Path(info.path), info, None


__all__ = ["LoadPanel"]
