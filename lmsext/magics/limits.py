"""The notebook's default token limit on ``%%lm_respond`` / ``%%lm_complete``: a prediction that sets no
``maxTokens`` (no ``--max-tokens``, ``%lm_config predict``, ``LMMagics.default_prediction_config``) stops at
``LMMagics.default_max_tokens`` (256, :data:`lmsext.session.NOTEBOOK_MAX_TOKENS`), and its stats line says so:
``stop: maxPredictedTokensReached (hit the 256-token limit — --max-tokens to change)``. The Python API keeps
LM Studio's default, no limit; ``--max-tokens false`` or ``%lm_config predict maxTokens=false`` lifts it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..config import PredictionConfig
from ..render.stop_reasons import bound_note
from ..results import PredictionResult, PredictionStream

if TYPE_CHECKING:
    from ..session import Session


def bounded_config(session: "Session", config: PredictionConfig) -> tuple[PredictionConfig, int | None]:
    """``config`` under the session's token bound, and the bound when it applied (None when a setting gave its own)."""
    bounded = session.bounded(config)
    return bounded, (bounded.max_tokens if bounded is not config else None)


def noting_limit(stream: PredictionStream, limit: int | None) -> PredictionStream:
    """``stream`` whose result notes the notebook's default limit ``limit`` it ran under (its stats line then says
    how to change it); ``stream`` itself when no default limit applied."""
    if limit is None:
        return stream

    def finish() -> PredictionResult:
        result = stream.result()
        if bound_note(limit) not in result.stats.notes:
            result.stats.notes.append(bound_note(limit))
        return result

    return PredictionStream(iter(stream), finish, stream.cancel)


__all__ = ["bounded_config", "noting_limit"]
