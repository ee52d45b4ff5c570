"""``ActView``: an ``act()`` loop shown in a notebook cell as it runs, one table row per tool call.

    view = ActView()
    model.act(chat, [add], max_prediction_rounds=3, **view.callbacks())

Each round appears when it starts; a call appears with its arguments as soon as the reply is parsed,
and its result (red when it failed) once the tool returned; the final answer closes the table. The
display is one output updated in place (``IPython.display`` with a ``display_id``); outside a
notebook it prints nothing and keeps the rounds in :attr:`ActView.rounds`.
"""

from __future__ import annotations

from typing import Any

from ..render.tools import act_rounds_bundle
from .act import PredictionRoundResult, ToolCallOutcome


class ActView:
    """Live display of an ``act()`` loop; pass ``**view.callbacks()`` to :meth:`lmsext.LLM.act`."""

    def __init__(self, display: bool = True) -> None:
        self.rounds: list[dict[str, Any]] = []
        self._handle: Any = None
        self._display = display

    def callbacks(self) -> dict[str, Any]:
        """The ``act()`` callbacks that feed this view."""
        return {"on_round_start": self.round_started, "on_prediction_completed": self.prediction_completed,
                "on_tool_call": self.tool_called}

    def round_started(self, round_index: int) -> None:
        """A round began."""
        self.rounds.append({"round": round_index, "calls": [], "answer": None, "running": True})
        self._show()

    def prediction_completed(self, result: PredictionRoundResult) -> None:
        """The round's reply is in: its calls (results pending) or its answer."""
        current = self.rounds[-1]
        current["calls"] = [{"id": c.id, "name": c.name, "arguments": c.arguments, "result": None, "error": False}
                            for c in result.tool_calls]
        if not result.tool_calls:
            current["answer"], current["running"] = result.content, False
        self._show()

    def tool_called(self, outcome: ToolCallOutcome) -> None:
        """A tool returned (or failed)."""
        current = self.rounds[-1]
        for call in current["calls"]:
            if call["result"] is None and call["id"] == outcome.request.id:
                call["result"], call["error"] = outcome.result, outcome.error
                break
        current["running"] = any(c["result"] is None for c in current["calls"])
        self._show()

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        return act_rounds_bundle(self.rounds)

    def _show(self) -> None:
        from IPython import get_ipython
        from IPython.display import display
        if not self._display or get_ipython() is None:
            return
        if self._handle is None:
            self._handle = display(act_rounds_bundle(self.rounds), raw=True, display_id=True)
        else:
            self._handle.update(act_rounds_bundle(self.rounds), raw=True)
