"""The notebook's default token limit on ``%%lm_respond`` / ``%%lm_complete``: a prediction that sets no
``maxTokens`` (no ``--max-tokens``, ``%lm_config predict``, ``LMMagics.default_prediction_config``) stops at
``LMMagics.default_max_tokens`` (256, :data:`lmsext.session.NOTEBOOK_MAX_TOKENS`), and its stats line says so:
``stop: maxPredictedTokensReached (hit the 256-token limit — --max-tokens to change)``. The Python API keeps
LM Studio's default, no limit; ``--max-tokens false`` or ``%lm_config predict maxTokens=false`` lifts it.
"""

from __future__ import annotations

# the shared part lives below the front ends (the panels and the chat view bound their predictions too)
from ..session import bounded_config, noting_limit

__all__ = ["bounded_config", "noting_limit"]
