"""``LoadSummaryWidget``: the load-config summary as an anywidget (front end ``js/load_summary.js``).

The content is :func:`lmsext.render.load_summary_data` of a :class:`~lmsext.results.LoadResult`
(the same as the HTML/text summary): each setting's requested and applied value, highlighted where
llama.cpp applied something else, with the reason.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anywidget
import traitlets as t
from IPython.display import display

from ..render import load_summary_bundle, load_summary_data
from .frontend import asset, widget_bundle

if TYPE_CHECKING:
    from ..results import LoadResult


class LoadSummaryWidget(anywidget.AnyWidget):
    """Shows a load result's summary; set :attr:`result` (or the ``summary`` trait) to change it."""

    _esm = asset("load_summary.js")

    summary = t.Dict(help="load_summary_data() of the result shown.").tag(sync=True)

    def __init__(self, result: "LoadResult | None" = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if result is not None:
            self.result = result

    @property
    def result(self) -> "LoadResult | None":
        """The LoadResult shown (None before one is set)."""
        return getattr(self, "_result", None)

    @result.setter
    def result(self, value: "LoadResult | None") -> None:
        self._result = value
        self.summary = load_summary_data(value) if value is not None else {}


def show_load_summary(result: "LoadResult") -> LoadSummaryWidget:
    """Display ``result``'s summary as the widget, with the HTML/text summary as the fallback."""
    widget = LoadSummaryWidget(result)
    display(widget_bundle(widget, load_summary_bundle(result)), raw=True)
    return widget


__all__ = ["LoadSummaryWidget", "show_load_summary"]
