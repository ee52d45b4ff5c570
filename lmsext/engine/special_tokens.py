"""Special tokens a reply does not print as text unless asked (``show_special``).

llama.cpp already leaves CONTROL tokens (``<|im_start|>``, ``<end_of_turn>``) out of a piece unless asked, but
prints USER_DEFINED ones: many models mark their markers that way (Gemma 3's ``<start_of_image>``, the
``<unusedN>`` slots), and a reply then shows ``<start_of_image>`` as if the model had written it. A
USER_DEFINED token whose whole text looks like a marker — ``<|…|>``, ``<start_of_…>`` / ``<end_of_…>``,
``<word_word…>``, ``<unusedN>``, ``[UPPER_CASE]`` — is hidden the same way; ordinary user-defined words
(``<b>``, ``hello``) still print. ``show_special=True`` prints every special token's text, CONTROL included.
"""

from __future__ import annotations

import re
import weakref
from typing import Any

import llama_cpp

#: The whole text of a USER_DEFINED token that is a marker, not a word.
MARKER_TEXT = re.compile(r"<\|[^\s|]+\|>|<(?:start|end)_of_\w+>|<[a-z0-9]+(?:_[a-z0-9]+)+>|<unused\d+>"
                         r"|\[[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)*\]")

_hidden: "weakref.WeakKeyDictionary[Any, dict[int, bool]]" = weakref.WeakKeyDictionary()


def is_hidden_marker(model: Any, vocab: Any, token: int) -> bool:
    """True for a USER_DEFINED token of ``model`` whose text is a marker (cached per model and token)."""
    cache = _hidden.get(model)
    if cache is None:
        cache = _hidden[model] = {}
    found = cache.get(token)
    if found is None:
        user_defined = bool(llama_cpp.llama_vocab_get_attr(vocab, token) & llama_cpp.LLAMA_TOKEN_ATTR_USER_DEFINED)
        text = model.piece_unchecked(token, True).decode("utf-8", errors="replace") if user_defined else ""
        found = cache[token] = user_defined and MARKER_TEXT.fullmatch(text) is not None
    return found


def shown_piece(model: Any, vocab: Any, token: int, show_special: bool) -> bytes:
    """The bytes a reply prints for ``token``: every special token's text with ``show_special``, else none of a
    CONTROL token (llama.cpp's own rule) nor of a USER_DEFINED marker."""
    if show_special:
        return model.piece_unchecked(token, True)
    return b"" if is_hidden_marker(model, vocab, token) else model.piece_unchecked(token)


__all__ = ["MARKER_TEXT", "is_hidden_marker", "shown_piece"]
