"""Small helpers of the panels: slider ranges read from the config's own constraints, text conversions,
and a two-way binding between controls and one section of the session defaults.

No engine logic: bounds come from :mod:`lmsext.config` (pydantic constraints), defaults and load-time
ranges from the engine's constants and the model's metadata, passed in by the panels.
"""

from __future__ import annotations

import typing
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import annotated_types
import ipywidgets as w

from ..errors import ConfigError, ModelNotLoadedError

#: Upper ends for settings the config leaves unbounded (UI choices, not limits of the engine).
UI_MAX = {"top_k_sampling": 200, "repeat_penalty": 2.0, "max_tokens": 1_000_000}
#: Lower end of ``repeat_penalty``'s slider (values below 1 reward repetition).
UI_MIN = {"repeat_penalty": 0.5}


def field_bounds(cls: type, name: str, step: float = 0.01) -> tuple[float, float]:
    """``(min, max)`` of setting ``name`` of config class ``cls`` from its constraints (``ge``/``gt``/``le``);
    a strict ``gt`` bound becomes ``bound + step``; :data:`UI_MAX`/:data:`UI_MIN` fill unbounded ends."""
    low: float | None = None
    high: float | None = None
    for arg in typing.get_args(cls.model_fields[name].annotation) or (cls.model_fields[name].annotation,):
        for meta in getattr(arg, "__metadata__", ()):
            for c in getattr(meta, "metadata", [meta]):
                if isinstance(c, annotated_types.Ge):
                    low = float(c.ge)
                elif isinstance(c, annotated_types.Gt):
                    low = float(c.gt) + step
                elif isinstance(c, annotated_types.Le):
                    high = float(c.le)
                elif isinstance(c, annotated_types.Lt):
                    high = float(c.lt) - step
    low = UI_MIN.get(name, low if low is not None else 0.0)
    high = UI_MAX.get(name, high)
    if high is None:
        raise ValueError(f"{cls.__name__}.{name} has no upper bound: add one to UI_MAX")
    return low, high


def parse_seed(text: str) -> int | None:
    """A seed box's text: empty = random (None), else an integer (ConfigError otherwise)."""
    text = text.strip()
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"seed {text!r}: must be an integer, or empty for a random seed", key="seed",
                          value=text) from None


def escape_stop(text: str) -> str:
    """A stop string as typed in a box: newlines and tabs as ``\\n`` / ``\\t``."""
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r")


class Binding:
    """Two-way binding of controls to one section ("load" or "predict") of the session defaults.

    ``add(control, key, to_config)``: moving ``control`` sets ``key`` to
    ``to_config(control.value)`` (``None`` unsets it); a change of the session calls ``refresh`` (the
    panel's) with the new config, and values the panel writes back through :meth:`set_values` are not
    sent back. A bad value is reported to ``on_error``, changes nothing and the controls return to the
    session's values.
    """

    def __init__(self, session: Any, section: str, refresh: Callable[[Any], None],
                 on_error: Callable[[str], None]) -> None:
        self.session = session
        self.section = section
        self.trait = "load_config" if section == "load" else "prediction_config"
        self.refresh = refresh
        self.on_error = on_error
        self.syncing = False
        self.controls: dict[str, w.ValueWidget] = {}
        session.observe(self._session_changed, names=self.trait)

    def add(self, control: w.ValueWidget, key: str, to_config: Callable[[Any], Any] = lambda v: v) -> w.ValueWidget:
        """Bind ``control`` to setting ``key``; returns the control."""
        self.controls[key] = control
        return self.watch(control, lambda value: {key: to_config(value)})

    def watch(self, control: w.ValueWidget, to_values: Callable[[Any], dict[str, Any]]) -> w.ValueWidget:
        """Moving ``control`` updates the session with ``to_values(control.value)`` ({key: value}; None
        unsets). For a control that is not one setting's value (a "no limit" switch); the panel's
        ``refresh`` moves it back, inside :meth:`quiet`. Returns the control."""
        def changed(change: dict) -> None:
            if self.syncing:
                return
            try:
                self.session.update(self.section, to_values(change["new"]))
            except ConfigError as exc:
                self.refresh(self.session.config(self.section))  # back to what the session holds
                self.on_error(str(exc))
        control.observe(changed, names="value")
        return control

    @contextmanager
    def quiet(self) -> Iterator[None]:
        """Controls moved inside this block do not write to the session."""
        syncing, self.syncing = self.syncing, True
        try:
            yield
        finally:
            self.syncing = syncing

    def set_values(self, values: dict[str, Any]) -> None:
        """Move controls to ``values`` ({key: control value}) without writing to the session."""
        with self.quiet():
            for key, value in values.items():
                control = self.controls.get(key)
                if control is not None and control.value != value:
                    control.value = value

    def _session_changed(self, change: dict) -> None:
        self.refresh(change["new"])

    def close(self) -> None:
        """Stop following the session."""
        self.session.unobserve(self._session_changed, names=self.trait)




def model_to_use(client: Any, session: Any, model: Any) -> Any:
    """The model a panel's Send uses: ``model`` (an LLM, or an identifier loaded on ``client``), else the
    session's model when it is loaded, else ``client.llm.model()`` (JIT: the embedded default when none is)."""
    llms = client.llm
    if model is not None:
        return model if hasattr(model, "respond_stream") else llms.get(str(model))
    if session.model:
        try:
            return llms.get(session.model)
        except ModelNotLoadedError:
            pass
    return llms.model()

__all__ = ["Binding", "UI_MAX", "UI_MIN", "escape_stop", "field_bounds", "model_to_use", "parse_seed"]
