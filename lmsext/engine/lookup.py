"""Draft-free proposals for speculative decoding: prompt lookup (n-gram matching on the text so far).

The last ``n`` tokens (``n`` from :data:`MAX_NGRAM` down to 1) are looked up earlier in the prompt
and the generated text; the tokens that followed their most recent earlier occurrence are the
proposal. It costs no model call, so it pays off wherever the reply repeats its input (edits of a
given text, code, quotes, lists). ``draftModel: "lookup"`` selects it (llama.cpp's ``ngram-simple``
speculative type, llama-cpp-python's ``LlamaPromptLookupDecoding``).
"""

from __future__ import annotations

from typing import Sequence

#: The ``draftModel`` value that selects prompt lookup instead of a draft model.
LOOKUP_KEY = "lookup"
#: Longest n-gram matched (longer matches are tried first: they predict better).
MAX_NGRAM = 3
#: Shortest n-gram matched: a single repeated token predicts too little (measured on stories: most
#: 1-token matches were rejected, and each rejected draft costs a verification batch).
MIN_NGRAM = 2
#: Only the most recent tokens are searched (bounded cost per step on long contexts).
WINDOW = 4096


def lookup_proposal(history: Sequence[int], k: int, max_ngram: int = MAX_NGRAM, min_ngram: int = MIN_NGRAM
                    ) -> list[int]:
    """Up to ``k`` tokens that followed the latest earlier occurrence of ``history``'s last n-gram."""
    if k <= 0 or len(history) < 2:
        return []
    start = max(0, len(history) - WINDOW)
    window = list(history[start:])
    n_hist = len(window)
    for n in range(min(max_ngram, n_hist - 1), min_ngram - 1, -1):
        tail = window[n_hist - n:]
        # search backwards for the most recent earlier occurrence with at least one token after it
        for i in range(n_hist - n - 1, -1, -1):
            if window[i:i + n] == tail:
                follow = window[i + n:i + n + k]
                if follow:
                    return follow
    return []
