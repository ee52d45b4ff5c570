"""The probability a generated token was sampled with: from the distribution the sampler chain's last stage draws
from — after the repeat penalty, top-k, top-p, min-p, XTC and temperature — not the model's raw softmax.

LM Studio's and OpenAI's ``logprobs`` are the model's own probabilities, and :class:`~lmsext.backend.TokenLogProb`
keeps them so; ``--probs`` colours each token by how likely it was to be *drawn*, which this module gives as
``TokenLogProb.sampled_probability``. The distribution is the explorer's final one
(:mod:`lmsext.engine.distribution`, computed the same way on the prediction's own chain; the tests check they
agree): computed on the logits BEFORE the chain samples (sampling accepts the token into the penalty and grammar
state), by applying each sampler to a copy — ``apply``
changes no state and the ``dist`` sampler (its RNG) is not run, nor is XTC's own (a random stage is followed both
ways and mixed). A greedy chain (temperature 0) gives the chosen token probability 1.

Used from one place, the token loop's ``_sample`` (:mod:`lmsext.engine.generate`), and only with ``logProbs``:
it costs one pass of the chain over the vocabulary per token.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import llama_cpp
import numpy as np

from .token_data import SELECTORS, _Branch, _samplers

if TYPE_CHECKING:
    from .model import EngineModel
    from .sampling import SamplerChain, SamplingSettings


def sampled_distribution(model: "EngineModel", chain: "SamplerChain", settings: "SamplingSettings",
                         logits_ptr: Any) -> np.ndarray:
    """The probabilities (over the vocabulary) the chain will draw the next token from, given the logits at
    ``logits_ptr``; call it before the chain samples. For a greedy chain: 1 for the token it picks, 0 elsewhere.

    The explorer's final distribution (:func:`lmsext.engine.distribution._shape`) without its per-stage
    bookkeeping: every shaping sampler applied in the chain's order, the probabilities computed once at the end.
    """
    logits = np.ctypeslib.as_array(logits_ptr, shape=(model.n_vocab,)).copy()
    branches = [_Branch.from_logits(logits)]
    greedy = False
    for name, sampler in _samplers(chain):
        if name in SELECTORS:
            continue
        if name == "xtc":
            branches = _xtc(branches, settings)
            continue
        for branch in branches:
            branch.apply(sampler)
        greedy = greedy or name == "greedy"
    return sum(b.weight * b.probs(model.n_vocab, only_selected=greedy) for b in branches)


def _xtc(branches: list[Any], settings: "SamplingSettings") -> list[Any]:
    """XTC without touching the chain's own RNG: a stage that always applies, mixed with the branch it skipped
    by its probability (as the explorer computes it)."""
    forced = llama_cpp.llama_sampler_init_xtc(1.0, settings.xtc_threshold, 1, settings.seed)
    try:
        chance = min(settings.xtc_probability, 1.0)
        out = []
        for branch in branches:
            applied = branch.copy(branch.weight * chance)
            applied.apply(forced)
            branch.weight *= 1.0 - chance
            out += ([branch] if branch.weight > 0 else []) + [applied]
        return out
    finally:
        llama_cpp.llama_sampler_free(forced)


def sampled_probability(probs: np.ndarray | None, token: int) -> float | None:
    """``token``'s probability in ``probs`` (None without a distribution)."""
    if probs is None or not 0 <= token < probs.shape[0]:
        return None
    return float(probs[token])


__all__ = ["sampled_distribution", "sampled_probability"]
