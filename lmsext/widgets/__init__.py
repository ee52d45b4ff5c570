"""Notebook widgets (anywidget; the front-end ES modules ship with the package, no node needed).

* :class:`LoadPanel` — sliders for every load setting of a model (ranges from its GGUF metadata), a live
  memory estimate, Load with a progress bar and the load-config summary.
* :class:`PredictionPanel` — sliders for the prediction settings, a prompt, Send and Stop.
* :class:`StreamWidget` — a streamed prediction (deltas ≤ 20 messages/s; final text, stats and stop
  reason on synced traits); :class:`LoadSummaryWidget` — the load-config summary.
* :class:`NextTokenExplorer` — the sampling lab: next-token candidates under live sampler settings.
* :class:`ChatView` — a session chat as bubbles, the reply streaming into the last one, Stop, New chat, Export.
* :class:`ModelPicker` — a dropdown of the loaded and downloaded models, the estimate before loading, Load,
  Download (in both panels).

The panels edit the session defaults (:func:`lmsext.session.get_session`) that the magics use:
``%lm_panel`` shows them, ``%lm_config`` moves their sliders.
"""

from __future__ import annotations

from typing import Any

_LAZY = {"NextTokenExplorer": "explorer", "LoadPanel": "load_panel", "PredictionPanel": "prediction_panel",
         "StreamWidget": "stream", "WidgetStreamView": "stream", "LoadSummaryWidget": "summary",
         "ChatView": "chat_view", "ModelPicker": "model_picker"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'lmsext.widgets' has no attribute {name!r}")


__all__ = list(_LAZY)
