"""``%lm_config`` (the session defaults) and ``%lm_panel`` (the slider panels over the same defaults)."""

from __future__ import annotations

import re
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import line_magic, magics_class, no_var_expand
from IPython.core.magic_arguments import argument, magic_arguments
from IPython.display import display

from .. import render as views
from ..config import LoadModelConfig, PredictionConfig
from ..errors import ModelNotLoadedError
from ..models import EMBEDDED_MODEL_KEY
from ..session import SECTIONS
from .args import key_values, parse_args
from .suggestions import word_hint
from .shared import FamilyMagics, user_errors


@magics_class
class ConfigMagics(FamilyMagics):
    """The session defaults the magics and panels use, as text (``%lm_config``) and as sliders (``%lm_panel``)."""

    @line_magic
    @no_var_expand
    @user_errors("%lm_config")
    def lm_config(self, line: str = "") -> None:
        """Show or set the session defaults the magics (and panels) use.

        Usage::

          %lm_config                                  show all defaults
          %lm_config load|predict                     show one section
          %lm_config predict temperature=0.3 maxTokens=40
          %lm_config load contextLength=1024 gpu='off'
          %lm_config temperature=0.3                  the section is inferred from the key
          %lm_config predict temperature=None         unset a key
          %lm_config [load|predict] --reset           forget the defaults (of one section)

        Keys take any LM Studio spelling (``maxTokens``, ``max_tokens``); values are Python literals
        (strings without quotes are fine: ``contextOverflowPolicy=rollingWindow``), also JSON's
        true/false/null. %%lm_respond merges: these defaults ← LMMagics.default_prediction_config ← flags.
        """
        text = line.strip()
        section = None
        m = re.match(r"(load|predict|prediction)(?:\s+|$)", text)
        if m:
            section = "predict" if m.group(1).startswith("predict") else "load"
            text = text[m.end():]
        words = text.split()
        reset = "--reset" in words
        if reset:
            text = " ".join(w for w in words if w != "--reset")
        try:
            values = key_values(text)
        except UsageError as exc:  # a mistyped section ('predcit temperature=0.3'): the nearest one
            first = text.split()[0] if section is None and text.split() else ""
            hint = None if "=" in first else word_hint(first, ["load", "predict"])
            raise (UsageError(f"{exc}; {hint}") if hint else exc) from None
        groups: dict[str, dict[str, Any]] = {}
        for key, value in values.items():
            groups.setdefault(section or _section_of(key), {})[key] = value
        new = {sec: self._updated(sec, vals, reset) for sec, vals in groups.items()}
        if reset:
            self.lm.session.reset(section)
        for sec, cfg in new.items():
            setattr(self.lm.session, "load_config" if sec == "load" else "prediction_config", cfg)
        shown = [section] if section else (list(groups) if groups else list(SECTIONS))
        self.show(views.config_bundle([layer for sec in shown for layer in self._config_layers(sec)]))

    def _updated(self, section: str, values: dict[str, Any], reset: bool):
        return self.lm.session.updated(section, values, SECTIONS[section]() if reset else None)

    def _config_layers(self, section: str) -> list[tuple[str, dict[str, Any]]]:
        if section == "load":
            return [("load defaults (%lm_load starts from these; --config and flags override them)",
                     self.lm.session.load_config.to_dict())]
        session_cfg = self.lm.session.prediction_config
        magic_cfg = PredictionConfig.parse(self.lm.default_prediction_config)
        bound = self.lm.session.max_tokens_bound
        limit = (f"; maxTokens {bound} when nothing sets it: LMMagics.default_max_tokens" if bound
                 else "; no default maxTokens")
        return [("prediction defaults (%lm_config predict)", session_cfg.to_dict()),
                ("LMMagics.default_prediction_config (overrides the defaults above)", magic_cfg.to_dict()),
                (f"effective for %%lm_respond / %%lm_complete (flags override these{limit})",
                 self.lm.session.bounded(session_cfg.merged(magic_cfg)).to_dict())]

    @line_magic
    @no_var_expand
    @user_errors("%lm_panel")
    @magic_arguments()
    @argument("which", nargs="?", choices=("load", "predict", "both"), default="both",
              help="the load-settings panel, the prediction panel, or both (default)")
    @argument("model", nargs="?", help="model key, path or loaded instance for the load panel "
              "(default: the current model)")
    def lm_panel(self, line: str) -> Any:
        """Show the slider panels: a model's load settings (Load), prediction settings with a prompt (Send, Stop).

        The panels edit the session defaults the magics use: moving the temperature slider changes what
        the next %%lm_respond uses, and %lm_config changes move the sliders. ``p = %lm_panel predict``
        keeps the panel (``p.result`` is its last prediction).
        """
        args = parse_args(self.lm_panel, line)
        try:
            import ipywidgets
            from .. import widgets
        except ImportError as exc:
            raise UsageError(f"the panels need ipywidgets and anywidget ({exc})") from None
        panels: list[Any] = []
        if args.which in ("load", "both"):
            target = self._panel_model(args.model)
            if target is None and (args.which == "load" or not self.lm.client.llm.list_loaded()):
                target = EMBEDDED_MODEL_KEY
                self.show(views.message_bundle(f"no model given: the load panel is for the embedded default "
                                               f"model {EMBEDDED_MODEL_KEY}"))
            if target is not None:
                panels.append(widgets.LoadPanel(target))
        if args.which in ("predict", "both"):
            panels.append(widgets.PredictionPanel())
        shown = panels[0] if len(panels) == 1 else ipywidgets.VBox(panels)
        display(shown)
        return self.lm._returned("lm_panel", line, shown)

    def _panel_model(self, name: str | None) -> Any:
        """The loaded instance (or model key) the load panel is for; None when there is no candidate."""
        llms = self.lm.client.llm
        if name:
            try:
                return llms.get(name)
            except ModelNotLoadedError:
                return name
        loaded = llms.list_loaded()
        current = [llm for llm in loaded if llm.identifier == self.lm.session.model]
        if current or len(loaded) == 1:
            return (current or loaded)[0]
        return self.lm.default_model


def _section_of(key: str) -> str:
    in_load = LoadModelConfig.canonical_key(key) is not None
    in_predict = PredictionConfig.canonical_key(key) is not None
    if in_load and in_predict:
        raise UsageError(f"{key} is both a load and a prediction setting: write %lm_config load {key}=… "
                         f"or %lm_config predict {key}=…")
    if in_load:
        return "load"
    if in_predict:
        return "predict"
    raise PredictionConfig.unknown_key_error(key)


__all__ = ["ConfigMagics"]
