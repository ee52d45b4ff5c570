"""One prediction inside the batched scheduler: its prompt, sampler chain, stop strings and events.

A :class:`Sequence` is what :mod:`.scheduler` keeps per prediction: the fitted prompt and how much of
it is in the KV cache, the token sampled last (decoded in the next step), its own sampler chain (seed,
grammar, penalties), stop-string matcher and UTF-8 assembler, and the queue of :class:`TokenEvent`
its consumer reads. The stop reasons and statistics are those of the single-sequence loop
(:mod:`.generate`), per sequence.
"""

from __future__ import annotations

import collections
import threading
import time
from typing import Any

import llama_cpp

from ..backend import TokenEvent
from .generate import GenerationRequest, _top_logprobs, fit_prompt
from .model import EngineModel
from .sampling import SamplerChain
from .sampled_probs import sampled_distribution, sampled_probability
from .special_tokens import shown_piece
from .textstream import StopStringMatcher, Utf8Assembler


class Sequence:
    """The per-prediction state of a batched generation (see the module docstring)."""

    def __init__(self, req: GenerationRequest, n_ctx_seq: int) -> None:
        self.req = req
        stats = self.stats = req.stats
        stats.t_start = time.perf_counter()
        stats.seed = req.sampling.seed
        reserve = min(req.max_tokens or n_ctx_seq // 4, n_ctx_seq // 2)
        self.prompt, removed = fit_prompt(req.prompt_tokens, n_ctx_seq, reserve, req.overflow_policy, req.keep_head)
        stats.truncated_prompt_tokens = removed + req.pre_truncated
        stats.prompt_tokens = len(self.prompt)
        self.keep = 1 if req.overflow_policy == "rollingWindow" else max(1, min(req.keep_head, n_ctx_seq // 4))
        self.matcher = StopStringMatcher(list(req.stop_strings) + list(req.tool_call_stop_strings))
        self.utf8 = Utf8Assembler()
        self.chain: SamplerChain | None = None
        self.events: collections.deque[TokenEvent] = collections.deque()
        self.slot: Any = None
        #: prompt tokens in the KV cache; the token sampled last, to decode in the next step
        self.fed = 0
        self.pending: int | None = None
        #: set by Ctrl-C while this sequence's consumer drives a step (its SigintGuard)
        self.interrupted = threading.Event()
        self.done = False
        self.submitted = False
        #: 1-based place in the FIFO queue while waiting for a free slot; None once running
        self.queue_position: int | None = None
        #: the speculative state when the prediction has a draft (engine/batch_speculative.py)
        self.draft: Any = None
        #: the one-line error that refused it at admission (its draft model busy or unloaded), raised to its consumer
        self.refused: Exception | None = None

    @property
    def cancelled(self) -> bool:
        """Stop asked for this sequence only (Stop, Ctrl-C, a closed stream)."""
        return self.req.cancelled or self.interrupted.is_set()

    def start(self, model: EngineModel, reused: int) -> None:
        """Admitted with ``reused`` prompt tokens already cached: make the sampler chain."""
        self.fed = reused
        self.stats.cached_prompt_tokens = reused
        self.queue_position = None
        req = self.req
        self.chain = SamplerChain(model._vocab, model.n_vocab, req.sampling, history=self.prompt,
                                  prefilter=req.prefilter)

    def sample(self, model: EngineModel, ctx: Any, idx: int) -> bool:
        """Sample the next token from row ``idx`` of the step's logits; False once the sequence ends."""
        req = self.req
        logits_ptr = llama_cpp.llama_get_logits_ith(ctx, idx) if req.log_probs else None
        # the drawn-from distribution, before the chain accepts the token into its penalty and grammar state
        sampled = sampled_distribution(model, self.chain, req.sampling, logits_ptr) if req.log_probs else None
        token = llama_cpp.llama_sampler_sample(self.chain.ptr, ctx, idx)
        return self.take(model, ctx, token, idx, sampled=sampled)

    def take(self, model: EngineModel, ctx: Any, token: int, idx: int, drafted: bool = False,
             sampled: Any = None) -> bool:
        """Take ``token``, chosen from row ``idx`` of the step's logits (``drafted``: an accepted draft token;
        ``sampled``: the distribution it was drawn from, for its logprob's ``sampled_probability``): its event,
        or the end of the sequence; False once it ends."""
        req, stats = self.req, self.stats
        stats.predicted_tokens += 1
        if stats.t_first_token is None:
            stats.t_first_token = time.perf_counter()
        if llama_cpp.llama_vocab_is_eog(model._vocab, token) or token in req.end_tokens:
            self.finish("eosFound")
            return False
        text, found = self.matcher.feed(self.utf8.feed(shown_piece(model, model._vocab, token, req.show_special)))
        logprob = (_top_logprobs(model, req.log_probs, token, llama_cpp.llama_get_logits_ith(ctx, idx))
                   if req.log_probs else None)
        if logprob is not None and sampled is not None:
            logprob.sampled_probability = sampled_probability(sampled, token)
        self.events.append(TokenEvent(text, token, logprob, drafted))
        if found is not None:
            stats.stop_string = found
            self.finish("toolCalls" if found in req.tool_call_stop_strings else "stopStringFound")
            return False
        if req.max_tokens is not None and stats.predicted_tokens >= req.max_tokens:
            self.finish("maxPredictedTokensReached")
            return False
        self.pending = token
        return True

    def finish(self, reason: str | None = None, error: str | None = None) -> None:
        """End the sequence (once): the stop reason, the held-back text, the end time."""
        if self.done:
            return
        stats = self.stats
        if reason is not None and stats.stop_reason is None:
            stats.stop_reason = reason
        if error is not None:
            stats.error = error
        if stats.stop_reason not in ("stopStringFound", "toolCalls"):
            tail = self.matcher.feed(self.utf8.flush())[0] + self.matcher.flush()
            if tail:
                self.events.append(TokenEvent(tail, -1))
        if stats.t_prompt_done is None:
            stats.t_prompt_done = time.perf_counter()
        stats.t_end = time.perf_counter()
        stats.stop_reason = stats.stop_reason or "failed"
        self.pending = None
        self.done = True

    def close(self) -> None:
        """Free the sampler chain."""
        if self.chain is not None:
            self.chain.close()
            self.chain = None


__all__ = ["Sequence"]
