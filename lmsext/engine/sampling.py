"""Build llama.cpp's native sampler chain from a prediction config (LM Studio defaults)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Sequence

import llama_cpp

from ..config import SAMPLING_DEFAULTS
from ..errors import ConfigError

#: LM Studio's defaults for its llama.cpp engine (the one table: lmsext.config.SAMPLING_DEFAULTS).
DEFAULTS = SAMPLING_DEFAULTS
REPEAT_LAST_N = 64


@dataclass(frozen=True)
class SamplingSettings:
    """The resolved sampler settings of one prediction (``None``/``False`` = off)."""

    temperature: float
    top_k: int
    top_p: float
    min_p: float
    repeat_penalty: float
    xtc_probability: float
    xtc_threshold: float
    seed: int
    grammar: str | None = None

    @classmethod
    def resolve(cls, config, default_seed: int | None, grammar: str | None) -> "SamplingSettings":
        """Apply LM Studio defaults to the unset fields of a PredictionConfig."""

        def get(name: str) -> float:
            value = getattr(config, name, None)
            if value is None:
                return DEFAULTS[name]
            if value is False:
                return {"top_k_sampling": 0, "top_p_sampling": 1.0, "min_p_sampling": 0.0,
                        "repeat_penalty": 1.0, "xtc_probability": 0.0, "xtc_threshold": 0.1}[name]
            return value

        seed = getattr(config, "seed", None)
        if seed is None:
            seed = default_seed if default_seed is not None else secrets.randbits(32)
        return cls(temperature=float(get("temperature")), top_k=int(get("top_k_sampling")),
                   top_p=float(get("top_p_sampling")), min_p=float(get("min_p_sampling")),
                   repeat_penalty=float(get("repeat_penalty")),
                   xtc_probability=float(get("xtc_probability")),
                   xtc_threshold=float(get("xtc_threshold")), seed=int(seed), grammar=grammar)

    @property
    def greedy(self) -> bool:
        """Temperature 0 means always the most likely token."""
        return self.temperature <= 0.0


def prefilter_size(settings: SamplingSettings) -> int:
    """How many top candidates the repeat penalty may run on instead of the whole vocabulary, 0 = all.

    The penalty only lowers logits, and of at most ``REPEAT_LAST_N`` distinct tokens (the window). A
    token outside the raw top ``k + REPEAT_LAST_N`` has at least ``k`` unpenalised tokens above it, so
    it cannot be in the top ``k`` after the penalty either: when the next stage is top-k (``k`` > 0) or
    greedy (``k`` = 1), cutting to the raw top ``k + REPEAT_LAST_N`` first gives the same candidates,
    the same order and the same draws (up to the order of exactly equal logits). Without a top-k or
    greedy stage after it, the penalty needs every token.
    """
    if settings.repeat_penalty == 1.0:
        return 0
    if settings.greedy:
        return 1 + REPEAT_LAST_N
    return settings.top_k + REPEAT_LAST_N if settings.top_k > 0 else 0


class SamplerChain:
    """Owns a ``llama_sampler`` chain; free it with :meth:`close` (or use as a context manager).

    ``prefilter`` (default) runs the repeat penalty on the top candidates where that is exact (see
    :func:`prefilter_size`): on a 150 k-token vocabulary it saves most of the chain's time per token.
    """

    def __init__(self, vocab, n_vocab: int, settings: SamplingSettings,
                 history: Sequence[int] = (), *, prefilter: bool = True) -> None:
        self.ptr = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
        add = lambda s: llama_cpp.llama_sampler_chain_add(self.ptr, s)  # noqa: E731
        if settings.grammar is not None:
            grammar = llama_cpp.llama_sampler_init_grammar(vocab, settings.grammar.encode("utf-8"), b"root")
            if not grammar:
                self.close()
                raise ConfigError("structured: llama.cpp rejected the grammar", key="structured")
            add(grammar)
        pre = prefilter_size(settings) if prefilter else 0
        if pre and pre < n_vocab:
            add(llama_cpp.llama_sampler_init_top_k(pre))
        if settings.repeat_penalty != 1.0:
            penalties = llama_cpp.llama_sampler_init_penalties(n_vocab, REPEAT_LAST_N, settings.repeat_penalty, 0.0, 0.0)
            for token in list(history)[-REPEAT_LAST_N:]:
                llama_cpp.llama_sampler_accept(penalties, token)
            add(penalties)
        if settings.greedy:
            add(llama_cpp.llama_sampler_init_greedy())
        else:
            if settings.top_k > 0:
                add(llama_cpp.llama_sampler_init_top_k(settings.top_k))
            if settings.top_p < 1.0:
                add(llama_cpp.llama_sampler_init_top_p(settings.top_p, 1))
            if settings.min_p > 0.0:
                add(llama_cpp.llama_sampler_init_min_p(settings.min_p, 1))
            if settings.xtc_probability > 0.0:
                add(llama_cpp.llama_sampler_init_xtc(settings.xtc_probability, settings.xtc_threshold, 1,
                                                     settings.seed))
            add(llama_cpp.llama_sampler_init_temp(settings.temperature))
            add(llama_cpp.llama_sampler_init_dist(settings.seed))

    def sample(self, ctx) -> int:
        """Sample (and accept) the next token from the last logits of ``ctx``."""
        return llama_cpp.llama_sampler_sample(self.ptr, ctx, -1)

    def close(self) -> None:
        """Free the chain and every sampler in it."""
        if self.ptr:
            llama_cpp.llama_sampler_free(self.ptr)
            self.ptr = None

    def __enter__(self) -> "SamplerChain":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
