"""Speculative decoding: a draft proposes tokens, the model verifies them in one batch.

Each round a proposer (a draft model, :class:`DraftProposer`, or prompt lookup, :mod:`.lookup`)
proposes up to ``k`` tokens after the last chosen one; the model decodes the last token and the
proposal in one batch with logits at every position, and the tokens are chosen position by position:

- greedy (temperature 0): the sampler chain picks at each position, exactly as without a draft; a
  proposed token is accepted while it equals that pick, so the text is identical token for token;
- sampling: the standard speculative-sampling rule (Leviathan et al. 2023, Chen et al. 2023): a
  proposed token ``d`` drawn from the draft's distribution ``q`` is accepted with probability
  ``min(1, p(d) / q(d))``, where ``p`` is the model's distribution after the whole sampler chain
  (penalties, grammar, top-k/p, min-p, temperature); on rejection a token is drawn from
  ``norm(max(0, p - q))``. Prompt lookup proposes with ``q`` a point mass. The output then has
  exactly the model's distribution.

The accepted prefix stays in both KV caches, the rest is removed (``llama_memory_seq_rm``). Every
chosen token goes through the loop's own :func:`~.generate.token_event` (stop strings, end tokens,
``maxTokens``, logprobs), and rounds stop at Ctrl-C/Stop. When drafts keep failing the loop backs
off to plain decoding for a growing number of steps, so poor acceptance costs little.
"""

from __future__ import annotations

import time
import weakref
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import llama_cpp
import numpy as np

from ..backend import GenerationStats, TokenEvent
from ..errors import ConfigError
from .distribution import _Branch, _samplers
from .generate import Decoder, _advance, _sample, thread_plan, token_event
from .draft_plan import Plan
from .lookup import lookup_proposal
from .model import EngineModel
from .sampling import REPEAT_LAST_N, SamplerChain, SamplingSettings

#: Most tokens one draft proposes when ``speculativeDecodingNumDraftTokensExact`` is unset.
DEFAULT_MAX_DRAFT = 8
#: LM Studio's default ``speculativeDecodingMinContinueDraftingProbability``.
DEFAULT_MIN_CONTINUE = 0.75


@dataclass
class SpeculativeConfig:
    """How one prediction speculates: the draft (None = prompt lookup), its key and the draft sizes."""

    draft: EngineModel | None
    key: str
    #: ``speculativeDecodingNumDraftTokensExact``: propose exactly this many (no early stop, no adapting)
    exact: int | None = None
    #: ``speculativeDecodingMinDraftLengthToConsider``: shorter drafts are not verified (counted ignored)
    min_length: int = 0
    #: ``speculativeDecodingMinContinueDraftingProbability``: a draft model stops below this confidence
    min_continue: float = DEFAULT_MIN_CONTINUE

    @property
    def max_draft(self) -> int:
        """Most tokens a round proposes."""
        return self.exact or DEFAULT_MAX_DRAFT

    def loop(self, *args: Any) -> Iterator[TokenEvent]:
        """The token loop of a generation with this config (:func:`speculative_loop`)."""
        return speculative_loop(*args)


def check_vocabularies(target: EngineModel, draft: EngineModel, key: str) -> None:
    """ConfigError (one line) unless ``draft`` tokenizes as ``target``: the same vocabulary size and the same
    pieces (every token of a vocabulary up to 2,048 tokens, an even sample of 2,048 of a larger one)."""
    if draft is target:
        raise ConfigError(f"draftModel {key!r}: the draft must be another model than the one predicting",
                          key="draft_model", value=key)
    checked = target.__dict__.setdefault("compatible_drafts", weakref.WeakSet())
    if draft in checked:  # ~2,000 pieces compared once per pair, not per prediction
        return
    if draft.n_vocab != target.n_vocab:
        raise ConfigError(f"draftModel {key!r}: its vocabulary has {draft.n_vocab} tokens, the model's "
                          f"{target.n_vocab}; a draft must share the model's tokenizer", key="draft_model", value=key)
    step = max(1, target.n_vocab // 2048)
    for t in list(range(0, target.n_vocab, step)) + [target.n_vocab - 1]:
        if draft.token_bytes(t, special=True) != target.token_bytes(t, special=True):
            raise ConfigError(f"draftModel {key!r}: token {t} is {draft.token_bytes(t, True)!r} in the draft but "
                              f"{target.token_bytes(t, True)!r} in the model; a draft must share the model's "
                              "tokenizer", key="draft_model", value=key)
    checked.add(draft)


def repeat_penalised(logits: np.ndarray, history: list[int], penalty: float) -> np.ndarray:
    """``logits`` with llama.cpp's repeat penalty on the last :data:`~.sampling.REPEAT_LAST_N` tokens of
    ``history`` (a positive logit divided by ``penalty``, a negative one multiplied), as the chain does."""
    if penalty == 1.0:
        return logits
    out = logits.astype(np.float32, copy=True)
    seen = np.unique(np.asarray(history[-REPEAT_LAST_N:], dtype=np.int64))
    vals = out[seen]
    out[seen] = np.where(vals > 0, vals / penalty, vals * penalty)
    return out


def draft_distribution(logits: np.ndarray, s: SamplingSettings) -> np.ndarray:
    """The distribution a draft samples from: its logits through top-k, temperature, top-p and min-p."""
    x = logits.astype(np.float64)
    if 0 < s.top_k < x.shape[0]:
        kth = np.partition(x, -s.top_k)[-s.top_k]
        x = np.where(x >= kth, x, -np.inf)
    x = x / max(s.temperature, 1e-6)
    p = np.exp(x - x.max())
    p /= p.sum()
    if s.top_p < 1.0:
        order = np.argsort(-p)
        cut = int(np.searchsorted(np.cumsum(p[order]), s.top_p)) + 1
        keep = np.zeros_like(p, dtype=bool)
        keep[order[:cut]] = True
        p = np.where(keep, p, 0.0)
    if s.min_p > 0.0:
        p = np.where(p >= s.min_p * p.max(), p, 0.0)
    return p / p.sum()


def draft_pick(logits: np.ndarray, history: list[int], settings: SamplingSettings, rng: np.random.Generator
               ) -> tuple[int, np.ndarray | None, float]:
    """A draft's next token from its ``logits`` after ``history``: (token, the distribution it was drawn from —
    None when greedy —, the draft's confidence in it)."""
    logits = repeat_penalised(logits, history, settings.repeat_penalty)
    if settings.greedy:
        token = int(np.argmax(logits))
        return token, None, float(1.0 / np.exp(logits.astype(np.float64) - logits[token]).sum())
    q = draft_distribution(logits, settings)
    token = int(rng.choice(q.shape[0], p=q))
    return token, q, float(q.max())


class DraftProposer:
    """Proposals from a draft model: its own KV cache follows the accepted text (prefix reuse)."""

    def __init__(self, draft: EngineModel, settings: SamplingSettings, spec: SpeculativeConfig, stop: Any,
                 rng: np.random.Generator) -> None:
        self.model, self.settings, self.spec, self.rng = draft, settings, spec, rng
        self.decoder = Decoder(draft, stop)
        self.ctx = draft.ctx

    def propose(self, history: list[int], k: int) -> tuple[list[int], list[np.ndarray | None]]:
        """Up to ``k`` tokens after ``history`` and the distribution each was drawn from."""
        if len(history) + k >= self.model.n_ctx:
            return [], []
        reused = self.decoder.reuse_prefix(history)
        if self.decoder.prompt(history[reused:]):
            return [], []
        tokens: list[int] = []
        dists: list[np.ndarray | None] = []
        n_vocab = self.model.n_vocab
        while len(tokens) < k:
            logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(self.ctx, -1), shape=(n_vocab,))
            token, q, confidence = draft_pick(logits, history + tokens, self.settings, self.rng)
            if not self.spec.exact and tokens and confidence < self.spec.min_continue:
                break
            tokens.append(token)
            dists.append(q)
            if len(tokens) < k and self.decoder.token(token) != 0:
                break
        return tokens, dists


class Verifier:
    """Decodes the last token and a proposal in one batch with logits at every position."""

    def __init__(self, model: EngineModel, n_max: int) -> None:
        self.model = model
        self.ctx = model.ctx
        self.mem = llama_cpp.llama_get_memory(self.ctx)
        self.n_max = n_max
        self.batch = llama_cpp.llama_batch_init(n_max, 0, 1)

    def decode(self, tokens: list[int], threads: Any = None) -> int:
        """Decode ``tokens`` after the cache (all logits kept); llama_decode's code. A verification batch
        is a decode step: it runs on the decode steps' thread count (``threads``), not the prompt's."""
        b, n_past = self.batch, len(self.model.cached_tokens)
        for i, t in enumerate(tokens):
            b.token[i] = t
            b.pos[i] = n_past + i
            b.n_seq_id[i] = 1
            b.seq_id[i][0] = 0
            b.logits[i] = 1
        b.n_tokens = len(tokens)
        if threads is not None:
            llama_cpp.llama_set_n_threads(self.ctx, threads.current, threads.current)
        rc = llama_cpp.llama_decode(self.ctx, b)
        if threads is not None:
            llama_cpp.llama_set_n_threads(self.ctx, threads.current, threads.batch)
        if rc == 0:
            self.model.cached_tokens.extend(tokens)
        return rc

    def keep(self, n: int) -> None:
        """Keep the first ``n`` cached tokens, remove the rest from the KV cache."""
        cached = self.model.cached_tokens
        if n < len(cached):
            llama_cpp.llama_memory_seq_rm(self.mem, 0, n, -1)
            del cached[n:]

    def close(self) -> None:
        """Free the batch."""
        if self.batch is not None:
            llama_cpp.llama_batch_free(self.batch)
            self.batch = None


class Chooser:
    """Chooses the model's token at one verified position: the chain's pick (greedy) or the acceptance rule."""

    def __init__(self, model: EngineModel, chain: SamplerChain, settings: SamplingSettings,
                 rng: np.random.Generator) -> None:
        self.ctx, self.chain, self.settings, self.rng = model.ctx, chain, settings, rng
        self.n_vocab = model.n_vocab
        self.stages = [s for name, s in _samplers(chain) if name != "dist"]

    def choose(self, i: int, proposed: int | None, q: np.ndarray | None) -> int:
        """The token at batch position ``i`` (``proposed`` drawn from ``q``; None q = a point mass)."""
        if self.settings.greedy:
            return int(llama_cpp.llama_sampler_sample(self.chain.ptr, self.ctx, i))
        logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(self.ctx, i), shape=(self.n_vocab,))
        branch = _Branch.from_logits(logits)
        for stage in self.stages:
            branch.apply(stage)
        p = branch.probs(self.n_vocab)
        token = self._accept_or_resample(p, proposed, q)
        llama_cpp.llama_sampler_accept(self.chain.ptr, token)
        return token

    def _accept_or_resample(self, p: np.ndarray, proposed: int | None, q: np.ndarray | None) -> int:
        if proposed is None:
            return int(self.rng.choice(self.n_vocab, p=p))
        q_d = 1.0 if q is None else float(q[proposed])
        if self.rng.random() * q_d < p[proposed]:  # probability min(1, p/q)
            return proposed
        if q is None:
            residual = p.copy()
            residual[proposed] = 0.0
        else:
            residual = np.maximum(p - q, 0.0)
        total = residual.sum()
        if total <= 0.0:
            residual, total = p, p.sum()
        return int(self.rng.choice(self.n_vocab, p=residual / total))


def speculative_loop(model: EngineModel, req: Any, stats: GenerationStats, decoder: Any, chain: SamplerChain,
                     matcher: Any, utf8: Any, guard: Any, threads: Any, keep: int) -> Iterator[TokenEvent]:
    """The token loop of :func:`~.generate.generate` with speculation (``req.speculative``)."""
    spec: SpeculativeConfig = req.speculative
    stats.draft_model_key = spec.key
    rng = np.random.default_rng(req.sampling.seed)
    ctx, vocab = model.ctx, model.vocab
    draft = spec.draft
    if draft is not None:
        draft.acquire_prediction()  # ModelBusyError if the draft is busy elsewhere
    verifier = Verifier(model, spec.max_draft + 1)
    try:
        proposer = DraftProposer(draft, req.sampling, spec, model.stop_requested, rng) if draft is not None else None
        if draft is not None:
            thread_plan(draft, req.n_threads, None, 0)
        chooser = Chooser(model, chain, req.sampling, rng)
        plan = Plan.learned(model, spec)
        history = list(model.cached_tokens)
        with guard:
            token, event = _sample(model, ctx, vocab, req, stats, chain, matcher, utf8)
        while True:
            if event is not None:
                yield event
            if stats.stop_reason is not None:
                return
            history = list(model.cached_tokens) + [token]
            t0 = time.perf_counter()
            k = _draft_size(model, req, stats, plan)
            with guard:
                proposal, dists = _propose(proposer, history, k)
            if len(proposal) < max(1, spec.min_length):
                stats.draft_ignored += len(proposal)
                with guard:
                    _advance(model, req, stats, decoder, token, threads, keep)
                    if stats.stop_reason is None:
                        token, event = _sample(model, ctx, vocab, req, stats, chain, matcher, utf8)
                    else:
                        event = None
                plan.timed_plain(time.perf_counter() - t0)
                continue
            n_past = len(model.cached_tokens)
            with guard:
                rc = verifier.decode([token] + proposal, threads)
            if rc != 0:
                stats.draft_ignored += len(proposal)
                stats.stop_reason = "userStopped" if (model.stop_requested.is_set() or rc == 2) else "failed"
                stats.error = None if stats.stop_reason == "userStopped" else f"llama_decode failed (code {rc})"
                return
            events, token = _verify(model, vocab, req, stats, matcher, utf8, chooser, verifier, plan, proposal,
                                    dists, n_past, guard)
            plan.timed_round(time.perf_counter() - t0, len(events))
            yield from events[:-1]
            event = events[-1]
    finally:
        verifier.close()
        if draft is not None:
            draft.release()


def _draft_size(model: EngineModel, req: Any, stats: GenerationStats, plan: Plan) -> int:
    """Tokens the next round may draft: the plan's, within the context and ``maxTokens`` left."""
    room = model.n_ctx - len(model.cached_tokens) - 1
    left = (req.max_tokens - stats.predicted_tokens) if req.max_tokens is not None else room
    if model.stop_requested.is_set():
        return 0
    return max(0, min(plan.size(), room, left - 1))


def _propose(proposer: DraftProposer | None, history: list[int], k: int
             ) -> tuple[list[int], list[np.ndarray | None]]:
    if k <= 0:
        return [], []
    if proposer is None:
        tokens = lookup_proposal(history, k)
        return tokens, [None] * len(tokens)
    return proposer.propose(history, k)


def accept_round(chooser: Chooser, proposal: list[int], dists: list, first_row: int,
                 emit: Callable[[int, int, bool], bool]) -> tuple[int, int, bool, int]:
    """Choose the tokens of one verified round, rows ``first_row``… of the batch: ``emit(token, row, hit)``
    takes each chosen token (True once the run ended). Returns (accepted, the last chosen token, whether it was
    an accepted draft token, its position in the round). Both the one-slot loop and the scheduler call this."""
    n = len(proposal)
    accepted, token, hit, i = 0, -1, False, 0
    for i in range(n + 1):
        token = chooser.choose(first_row + i, proposal[i] if i < n else None, dists[i] if i < n else None)
        hit = i < n and token == proposal[i]
        ended = emit(token, first_row + i, hit)
        accepted += hit
        if ended or not hit:
            break
    return accepted, token, hit, i


def count_round(stats: GenerationStats, plan: Plan, n: int, accepted: int, hit: bool, i: int) -> None:
    """Add a verified round of ``n`` proposed tokens to the stats and the plan (as :func:`accept_round` left it)."""
    missed = 0 if hit or i == n else 1  # the proposed token at i was rejected
    stats.draft_accepted += accepted
    if stats.stop_reason is not None:
        stats.draft_rejected += missed
        stats.draft_ignored += n - accepted - missed
    else:
        stats.draft_rejected += n - accepted
        plan.record(n, accepted)


def _verify(model, vocab, req, stats, matcher, utf8, chooser: Chooser, verifier: Verifier, plan: Plan,
            proposal: list[int], dists: list, n_past: int, guard: Any
            ) -> tuple[list[TokenEvent | None], int]:
    """Choose the tokens of one verified round: their events and the round's last token (the next "last":
    a correction, the bonus token after a fully accepted draft, or the token that ended the run)."""
    events: list[TokenEvent | None] = []

    def emit(token: int, row: int, hit: bool) -> bool:
        logits_ptr = llama_cpp.llama_get_logits_ith(model.ctx, row) if req.log_probs else None
        events.append(token_event(model, vocab, req, stats, matcher, utf8, token, logits_ptr, drafted=hit))
        return stats.stop_reason is not None

    with guard:
        accepted, token, hit, i = accept_round(chooser, proposal, dists, 0, emit)
        count_round(stats, plan, len(proposal), accepted, hit, i)
        verifier.keep(n_past + 1 + accepted)
    return [e for e in events[:-1] if e is not None] + [events[-1]], token
