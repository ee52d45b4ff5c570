"""Rendering of lmsext's results for notebooks (HTML) and terminals (aligned text), in one place.

Used by the results' own ``_repr_*_`` methods, the magics and the widgets. It imports no engine and no
front end: everything it shows comes from the public result objects.

* :mod:`.html` — escaping, display bundles, shared styles, value spellings.
* :mod:`.load_summary` — the load-config summary of a :class:`~lmsext.results.LoadResult`.
* :mod:`.prediction` — a prediction, its stats line, the streaming bundles, token probabilities.
* :mod:`.tables` — ``%lm_ps``, ``%lm_ls``, ``%lm_config``, ``%lm_chat show``; message and error lines.

Every ``*_bundle`` function returns a display bundle ``{"text/plain": ..., "text/html": ...}`` for
``IPython.display.display(bundle, raw=True)``.
"""

from .html import BOLD, DIM, RED, RESET, REST_KEYS, bundle, esc, format_requested, format_setting, format_value
from .load_summary import load_summary_bundle, load_summary_data, load_summary_html, load_summary_text
from .prediction import (drafted_bundle, live_stats_bundle, prediction_html, prediction_text, prob_colour, stats_bundle, stats_line,
                         stream_bundle, token_pieces, token_probs_bundle, token_probs_html, token_probs_text)
from .prediction import result_bundle
from .prediction import PROMPT_TAIL_CHARS, prompt_tail
from .tables import (chat_bundle, config_bundle, downloaded_models_bundle, error_bundle, loaded_models_bundle,
                     message_bundle, table_bundle)

__all__ = [
    "BOLD", "DIM", "RED", "RESET", "REST_KEYS", "bundle", "chat_bundle", "config_bundle", "downloaded_models_bundle",
    "drafted_bundle", "error_bundle", "esc", "format_requested", "format_setting", "format_value", "live_stats_bundle",
    "load_summary_bundle", "load_summary_data", "load_summary_html", "load_summary_text", "loaded_models_bundle",
    "message_bundle", "prediction_html", "result_bundle", "prediction_text", "prob_colour", "stats_bundle", "stats_line",
    "stream_bundle", "table_bundle", "token_pieces", "token_probs_bundle", "token_probs_html", "token_probs_text",
    "PROMPT_TAIL_CHARS", "prompt_tail",
]
