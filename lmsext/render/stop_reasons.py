"""LM Studio's stop reasons in plain language, beside their names: ``stop: eosFound (the model ended its reply)``.

A prediction that stopped at the notebook's default token limit (the bound the magics put on a prediction that
sets no ``maxTokens``, see :data:`lmsext.session.NOTEBOOK_MAX_TOKENS`) says so and how to change it:
``stop: maxPredictedTokensReached (hit the 256-token limit — --max-tokens to change)``.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..results import PredictionStats

#: Plain-language labels of LM Studio's eight ``stopReason`` values.
STOP_LABELS = {
    "eosFound": "the model ended its reply",
    "maxPredictedTokensReached": "hit the token limit",
    "stopStringFound": "a stop string matched",
    "userStopped": "stopped by the user",
    "modelUnloaded": "the model was unloaded",
    "failed": "failed",
    "toolCalls": "a tool-call stop string matched",
    "contextLengthReached": "the context is full",
}

_BOUND_NOTE = re.compile(r"^maxTokens (\d+): the notebook's default limit")


def bound_note(limit: int) -> str:
    """The stats note a prediction bounded by the notebook's default token limit carries."""
    return (f"maxTokens {limit}: the notebook's default limit (LMMagics.default_max_tokens; "
            "the Python API has none)")


def notebook_limit(stats: "PredictionStats") -> int | None:
    """The notebook's default token limit the prediction ran under (None when a setting gave its own)."""
    for note in stats.notes or []:
        found = _BOUND_NOTE.match(note)
        if found:
            return int(found.group(1))
    return None


def stop_label(reason: str) -> str:
    """``eosFound (the model ended its reply)``: LM Studio's name, then the plain words; an unknown reason as it is."""
    label = STOP_LABELS.get(reason)
    return f"{reason} ({label})" if label else reason


def stop_text(stats: "PredictionStats") -> str:
    """The stop part of a stats line: LM Studio's name with the plain words beside it, the stop string, and at
    the notebook's default limit how to change it."""
    limit = notebook_limit(stats)
    if stats.stop_reason == "maxPredictedTokensReached" and limit is not None:
        return f"stop: maxPredictedTokensReached (hit the {limit}-token limit — --max-tokens to change)"
    if stats.stop_reason == "stopStringFound" and stats.stop_string is not None:
        return f"stop: stopStringFound (stop string {stats.stop_string!r} matched)"
    text = f"stop: {stop_label(stats.stop_reason)}"
    if stats.stop_string is not None:
        text += f" ({stats.stop_string!r})"
    return text


__all__ = ["STOP_LABELS", "bound_note", "notebook_limit", "stop_label", "stop_text"]
