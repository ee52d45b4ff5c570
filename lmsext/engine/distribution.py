"""The next-token distribution, stage by stage, as llama.cpp's own sampler chain shapes it.

:func:`next_token_distribution` decodes a prompt (reusing the KV prefix exactly like the token
loop), reads the logits of the last position (``llama_get_logits_ith(ctx, -1)``: no
``logits_all``, memory stays flat) and runs them through the very :class:`SamplerChain` a
prediction with the same settings would build — one sampler at a time, with ``llama_sampler_apply``
on a ``llama_token_data_array``. After each stage it records which tokens are left and their
renormalised probabilities; the final distribution is what the chain's last sampler (``dist``)
draws from. So the explorer and the engine agree by construction: same samplers, same order, same
history for the repeat penalty. ``samples=N`` draws N tokens through the complete chain (the engine's
``dist`` sampler and its RNG, seeded with ``settings.seed``): the first draw is the token a
``maxTokens=1`` prediction with that seed produces.

XTC is random (it applies with probability ``xtc_probability``): its stage is computed both ways and
the final distribution is the mixture.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import llama_cpp
import numpy as np

from ..errors import PredictionError
from .generate import Decoder, SigintGuard, fit_prompt, thread_plan
from .model import EngineModel
from .sampling import REPEAT_LAST_N, SamplerChain, SamplingSettings
from .token_data import SELECTORS, TOKEN_DATA, _Branch, _samplers  # noqa: F401  (TOKEN_DATA: public here too)

@dataclass(frozen=True)
class SamplerStage:
    """What one sampler of the chain did to the distribution."""

    name: str  #: llama.cpp's name of the sampler: penalties, top-k, top-p, min-p, xtc, temp, greedy, grammar…
    setting: str  #: the setting that drives it, e.g. ``top_k=40``
    kept: int  #: tokens left after this stage
    removed: int  #: tokens this stage removed
    removed_mass: float  #: the model's probability mass of the removed tokens
    chance: float = 1.0  #: probability that the stage applies at all (XTC), else 1

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {"name": self.name, "setting": self.setting, "kept": self.kept, "removed": self.removed,
                "removed_mass": self.removed_mass, "chance": self.chance}


@dataclass(frozen=True)
class TokenCandidate:
    """One next-token candidate: the model's probability and what the samplers made of it."""

    token: int
    text: str
    logit: float
    prob: float  #: the model's probability (softmax of the raw logits)
    stage_probs: tuple[float, ...]  #: renormalised probability after each stage (0 = cut)
    final_prob: float  #: the probability the engine samples it with
    cut_by: str | None  #: the first stage after which it can no longer be sampled (None = kept)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {"token": self.token, "text": self.text, "logit": self.logit, "prob": self.prob,
                "stage_probs": list(self.stage_probs), "final_prob": self.final_prob, "cut_by": self.cut_by}


@dataclass
class NextTokenDistribution:
    """The next-token distribution for a context under given sampler settings.

    ``candidates`` are the ``top_n`` most likely tokens under the model (stable order while settings
    change); ``probs`` / ``model_probs`` are the final / raw distributions over the whole vocabulary.
    """

    prompt_tokens: list[int]
    settings: SamplingSettings
    stages: list[SamplerStage]
    candidates: list[TokenCandidate]
    probs: np.ndarray = field(repr=False)
    model_probs: np.ndarray = field(repr=False)
    samples: list[int] = field(default_factory=list)
    truncated_prompt_tokens: int = 0
    texts: dict[int, str] = field(default_factory=dict, repr=False)

    @property
    def n_vocab(self) -> int:
        """Size of the vocabulary."""
        return int(self.probs.shape[0])

    @property
    def support(self) -> list[int]:
        """Every token the engine can sample, most likely first."""
        idx = np.flatnonzero(self.probs > 0)
        return [int(t) for t in idx[np.argsort(-self.probs[idx], kind="stable")]]

    @property
    def other_prob(self) -> float:
        """Final probability of the tokens that are not among ``candidates``."""
        return max(0.0, 1.0 - sum(c.final_prob for c in self.candidates))

    @property
    def most_likely(self) -> int:
        """The token with the highest final probability (what temperature 0 picks)."""
        return int(np.argmax(self.probs))

    def prob(self, token: int) -> float:
        """Final probability of ``token``."""
        return float(self.probs[token])

    def text(self, token: int) -> str:
        """Text of a candidate or sampled token ('' if unknown here)."""
        return self.texts.get(int(token), "")

    def sample_counts(self) -> dict[int, int]:
        """``{token: count}`` of :attr:`samples`, most frequent first."""
        counts: dict[int, int] = {}
        for t in self.samples:
            counts[t] = counts.get(t, 0) + 1
        return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (what the explorer widget sends to the browser)."""
        return {"prompt_tokens": list(self.prompt_tokens), "stages": [s.to_dict() for s in self.stages],
                "candidates": [c.to_dict() for c in self.candidates], "other_prob": self.other_prob,
                "support_size": int(np.count_nonzero(self.probs)), "n_vocab": self.n_vocab,
                "samples": list(self.samples), "truncated_prompt_tokens": self.truncated_prompt_tokens,
                "settings": {k: getattr(self.settings, k) for k in (
                    "temperature", "top_k", "top_p", "min_p", "repeat_penalty", "xtc_probability",
                    "xtc_threshold", "seed")}}

    def __str__(self) -> str:
        lines = [f"{'token':<16} {'model p':>8} {'sampled p':>9}  cut by"]
        for c in self.candidates:
            lines.append(f"{c.text!r:<16} {c.prob:>8.4f} {c.final_prob:>9.4f}  {c.cut_by or ''}".rstrip())
        lines.append(f"{'(others)':<16} {'':>8} {self.other_prob:>9.4f}")
        lines.append("stages: " + " → ".join(f"{s.name}({s.setting}: {s.kept} left)" for s in self.stages))
        return "\n".join(lines)

    def _repr_pretty_(self, p, cycle) -> None:
        p.text(str(self))


def _setting(name: str, s: SamplingSettings) -> str:
    return {
        "grammar": "structured",
        "penalties": f"repeat_penalty={s.repeat_penalty:g} over the last {REPEAT_LAST_N} tokens",
        "top-k": f"top_k={s.top_k}",
        "top-p": f"top_p={s.top_p:g}",
        "min-p": f"min_p={s.min_p:g}",
        "xtc": f"xtc_probability={s.xtc_probability:g}, xtc_threshold={s.xtc_threshold:g}",
        "temp": f"temperature={s.temperature:g}",
        "greedy": "temperature=0",
    }.get(name, name)


def _softmax(logits: np.ndarray) -> np.ndarray:
    x = logits.astype(np.float64)
    w = np.exp(x - x.max())
    return w / w.sum()


def next_token_distribution(model: EngineModel, tokens: Sequence[int], settings: SamplingSettings, *,
                            top_n: int = 20, samples: int = 0, n_threads: int | None = None,
                            overflow_policy: str = "truncateMiddle") -> NextTokenDistribution:
    """Decode ``tokens`` and report the next-token distribution under ``settings`` (see module doc).

    Holds ``model.lock`` while it works (a running prediction makes it raise ModelBusyError).
    ``samples=N`` also draws N tokens through the full chain seeded with ``settings.seed``.
    """
    tokens = [int(t) for t in tokens]
    if not tokens:
        raise PredictionError("the prompt is empty: give at least one token")
    if top_n < 0 or samples < 0:
        raise PredictionError("top_n and samples must be >= 0")
    model.check_open()
    n_vocab = model.n_vocab
    bad = [t for t in tokens if not 0 <= t < n_vocab]
    if bad:
        raise PredictionError(f"token id {bad[0]} is outside the vocabulary (0..{n_vocab - 1})")
    model.acquire_prediction()  # a user of the handles until release(): an unload cannot free them meanwhile
    try:
        stop = model.stop_requested
        prompt, removed = fit_prompt(tokens, model.n_ctx, 1, overflow_policy, 1)
        ctx = model.ctx
        decoder = Decoder(model, stop)
        guard = SigintGuard(stop)
        try:
            with guard:
                reused = decoder.reuse_prefix(prompt)
                thread_plan(model, n_threads, None, len(prompt) - reused)
                reason = decoder.prompt(prompt[reused:])
        finally:
            close = getattr(guard, "close", None)  # the guard may stay installed between units of work
            if close is not None:
                close()
        if reason:
            raise KeyboardInterrupt("stopped while processing the prompt")
        logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(ctx, -1), shape=(n_vocab,)).copy()
        # the whole-vocabulary chain: its stages are LM Studio's (the prefilter draws the same tokens)
        with SamplerChain(model.vocab, n_vocab, settings, history=prompt, prefilter=False) as chain:
            result = _shape(model, chain, settings, logits, top_n)
            result.samples = _draw(chain, logits, samples)
        result.prompt_tokens = prompt
        result.truncated_prompt_tokens = removed
        for t in result.samples:
            if t not in result.texts:
                result.texts[t] = _piece(model, t)
        return result
    finally:
        model.release()


def _piece(model: EngineModel, token: int) -> str:
    return model.piece_unchecked(int(token), True).decode("utf-8", errors="replace")


def _shape(model: EngineModel, chain: SamplerChain, settings: SamplingSettings, logits: np.ndarray,
           top_n: int) -> NextTokenDistribution:
    n_vocab = logits.shape[0]
    model_probs = _softmax(logits)
    branches = [_Branch.from_logits(logits)]
    stages: list[SamplerStage] = []
    stage_probs: list[np.ndarray] = []
    alive = np.ones(n_vocab, dtype=bool)
    for name, sampler in _samplers(chain):
        if name in SELECTORS:
            continue
        chance = 1.0
        if name == "xtc" and 0.0 < settings.xtc_probability < 1.0:
            # XTC applies with probability p: follow both outcomes (skipped / applied for sure).
            chance = settings.xtc_probability
            forced = llama_cpp.llama_sampler_init_xtc(1.0, settings.xtc_threshold, 1, settings.seed)
            try:
                new = []
                for b in branches:
                    applied = b.copy(b.weight * chance)
                    applied.apply(forced)
                    b.weight *= 1.0 - chance
                    new += [b, applied]
                branches = new
            finally:
                llama_cpp.llama_sampler_free(forced)
        elif name == "xtc" and settings.xtc_probability >= 1.0:
            forced = llama_cpp.llama_sampler_init_xtc(1.0, settings.xtc_threshold, 1, settings.seed)
            try:
                for b in branches:
                    b.apply(forced)
            finally:
                llama_cpp.llama_sampler_free(forced)
        else:
            for b in branches:
                b.apply(sampler)
        dist = sum(b.weight * b.probs(n_vocab, only_selected=name == "greedy") for b in branches)
        now_alive = dist > 0
        # what this stage can remove: for XTC, what it removes when it applies
        gone = alive & ~(branches[-1].probs(n_vocab, name == "greedy") > 0) if chance < 1.0 else alive & ~now_alive
        stages.append(SamplerStage(name=name, setting=_setting(name, settings), kept=int(now_alive.sum()),
                                   removed=int(gone.sum()), removed_mass=float(model_probs[gone].sum()),
                                   chance=chance))
        stage_probs.append(dist)
        alive = now_alive
    final = stage_probs[-1] if stage_probs else model_probs
    k = min(top_n, n_vocab)
    top = np.argpartition(-model_probs, k - 1)[:k] if k else np.array([], dtype=np.int64)
    top = top[np.argsort(-model_probs[top], kind="stable")]
    candidates = []
    texts: dict[int, str] = {}
    for t in (int(x) for x in top):
        cut = next((s.name for s, p in zip(stages, stage_probs) if p[t] <= 0), None)
        texts[t] = _piece(model, t)
        candidates.append(TokenCandidate(token=t, text=texts[t], logit=float(logits[t]), prob=float(model_probs[t]),
                                         stage_probs=tuple(float(p[t]) for p in stage_probs),
                                         final_prob=float(final[t]), cut_by=cut))
    return NextTokenDistribution(prompt_tokens=[], settings=settings, stages=stages, candidates=candidates,
                                 probs=final, model_probs=model_probs, texts=texts)


def _draw(chain: SamplerChain, logits: np.ndarray, n: int) -> list[int]:
    """``n`` tokens drawn by applying the whole chain (its own RNGs advance from the seed)."""
    out = []
    for _ in range(n):
        b = _Branch.from_logits(logits)
        b.apply(chain.ptr)
        out.append(b.selected())
    return out


def chi_square(counts: dict[int, int], probs: np.ndarray, min_expected: float = 5.0) -> tuple[float, int, float]:
    """Pearson's chi-square of sampled ``counts`` against the distribution ``probs``.

    Bins with fewer than ``min_expected`` expected draws are pooled. Returns ``(statistic, degrees of
    freedom, p-value)``; the p-value uses the Wilson–Hilferty approximation. A token drawn with
    probability 0 gives an infinite statistic and p-value 0.
    """
    n = sum(counts.values())
    if n == 0:
        return 0.0, 0, 1.0
    if any(probs[t] <= 0 for t in counts):
        return math.inf, 0, 0.0
    order = np.flatnonzero(probs > 0)
    expected = probs[order] * n
    observed = np.array([counts.get(int(t), 0) for t in order], dtype=np.float64)
    big = expected >= min_expected
    obs = list(observed[big])
    exp = list(expected[big])
    if (~big).any():
        obs.append(observed[~big].sum())
        exp.append(expected[~big].sum())
    obs_a, exp_a = np.array(obs), np.array(exp)
    stat = float(((obs_a - exp_a) ** 2 / exp_a).sum())
    df = max(len(obs) - 1, 1)
    z = ((stat / df) ** (1 / 3) - (1 - 2 / (9 * df))) / math.sqrt(2 / (9 * df))
    return stat, df, 0.5 * math.erfc(z / math.sqrt(2))


def total_variation(counts: dict[int, int], probs: np.ndarray) -> float:
    """Total-variation distance between the empirical distribution of ``counts`` and ``probs``."""
    n = sum(counts.values())
    emp = np.zeros_like(probs)
    for t, c in counts.items():
        emp[t] = c / n
    return float(0.5 * np.abs(emp - probs).sum())


__all__ = ["NextTokenDistribution", "SamplerStage", "TokenCandidate", "chi_square", "next_token_distribution",
           "total_variation"]
