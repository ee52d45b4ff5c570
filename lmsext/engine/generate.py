"""The token loop: prompt processing with KV prefix reuse, sampling, detokenizing, stopping.

A lean loop on llama.cpp's C API and native sampler chain (no ``create_completion``), yielding a
:class:`TokenEvent` per generated token. It sets LM Studio's stop reasons: ``eosFound``,
``stopStringFound``, ``maxPredictedTokensReached``, ``contextLengthReached``, ``userStopped``,
``failed`` (and ``toolCalls`` for a tool-call stop string).

Interrupts: while a generation runs on the main thread, SIGINT (Ctrl-C, Jupyter's "interrupt
kernel") sets the model's stop flag instead of raising in the middle of llama.cpp; the loop checks
it between tokens and llama.cpp's abort callback checks it inside long prompt batches. The result is
a clean ``userStopped`` with the partial text kept and the KV cache consistent.
"""

from __future__ import annotations

import ctypes
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

import llama_cpp
import numpy as np

from ..backend import GenerationStats, TokenEvent, TokenLogProb
from ..errors import PredictionError
from .model import EngineModel
from .sampling import SamplerChain, SamplingSettings
from .sampled_probs import sampled_distribution, sampled_probability
from .sigint import SigintGuard  # noqa: F401  (public here too: distribution.py uses it)
from .special_tokens import shown_piece
from .textstream import StopStringMatcher, Utf8Assembler
from .threads import DecodeThreads, available_cpus, batch_threads


@dataclass
class GenerationRequest:
    """Everything the loop needs beyond the model."""

    prompt_tokens: list[int]
    sampling: SamplingSettings
    max_tokens: int | None = None
    stop_strings: Sequence[str] = ()
    tool_call_stop_strings: Sequence[str] = ()
    overflow_policy: str = "truncateMiddle"
    keep_head: int = 0
    log_probs: int = 0
    n_threads: int | None = None
    stats: GenerationStats = field(default_factory=GenerationStats)
    #: True while this request's generation holds the model; ``cancelled`` stops it (or stops it at once
    #: when it starts later). See :func:`cancel`: a stream that failed with ModelBusyError must not stop
    #: the generation that made it busy.
    started: bool = False
    cancelled: bool = False
    #: prompt tokens already dropped before the request (whole chat messages, see overflow.fit_chat)
    pre_truncated: int = 0
    #: tokens that end the generation as the model's end-of-generation tokens do (stop reason ``eosFound``)
    end_tokens: frozenset[int] = frozenset()
    #: run the repeat penalty on the top candidates where exact (sampling.prefilter_size); False = whole vocabulary
    prefilter: bool = True
    #: print special tokens' text (CONTROL and USER_DEFINED markers; see special_tokens.py); False = hide them
    show_special: bool = False
    #: speculative decoding (a :class:`~.speculative.SpeculativeConfig`); None = one token per step
    speculative: Any = None


def cancel(model: EngineModel, req: GenerationRequest) -> None:
    """Stop ``req``'s generation if it is the one running on ``model`` (and keep it from starting)."""
    req.cancelled = True
    if req.started:
        model.stop_requested.set()


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def fit_prompt(tokens: list[int], n_ctx: int, reserve: int, policy: str, keep_head: int) -> tuple[list[int], int]:
    """Make a prompt fit the context, leaving ``reserve`` tokens to generate, per LM Studio's policy.

    ``stopAtLimit`` refuses a prompt longer than the context (one that fits may fill it: generation
    then stops at once with ``contextLengthReached``); ``truncateMiddle`` keeps the first
    ``keep_head`` tokens (system prompt and first message; at most half) and the end;
    ``rollingWindow`` keeps the end (and BOS). Returns ``(tokens, n_removed)``.
    """
    limit = n_ctx if policy == "stopAtLimit" else max(n_ctx - reserve, 1)
    if len(tokens) <= limit:
        return tokens, 0
    if policy == "stopAtLimit":
        raise PredictionError(
            f"the prompt is {len(tokens)} tokens but the context holds {n_ctx}; raise contextLength or use "
            "contextOverflowPolicy 'truncateMiddle'/'rollingWindow'")
    head = 1 if policy == "rollingWindow" else max(1, min(keep_head, limit // 2))
    head = min(head, limit - 1) if limit > 1 else 0
    tail = limit - head
    kept = tokens[:head] + tokens[len(tokens) - tail:]
    return kept, len(tokens) - len(kept)


class Decoder:
    """llama_decode wrappers that keep ``model.cached_tokens`` equal to what the KV cache holds."""

    def __init__(self, model: EngineModel, stop: threading.Event) -> None:
        self.model = model
        self.ctx = model.ctx  # checked once; valid while the generation holds the model's lock
        self.mem = llama_cpp.llama_get_memory(self.ctx)
        self.one = (llama_cpp.llama_token * 1)()
        self.one_batch = llama_cpp.llama_batch_get_one(self.one, 1)
        self.stop = stop

        @llama_cpp.ggml_abort_callback
        def _abort(_data: ctypes.c_void_p) -> bool:
            return stop.is_set()

        self._abort = _abort

    def reuse_prefix(self, tokens: list[int]) -> int:
        """Drop the cached tail that differs from ``tokens``; return how many tokens are reused."""
        cached = self.model.cached_tokens
        n = _common_prefix(cached, tokens)
        if n == len(tokens):
            n -= 1  # the last prompt token must be decoded again to get its logits
        n = max(n, 0)
        if n < len(cached):
            if not llama_cpp.llama_memory_seq_rm(self.mem, 0, n, -1):
                llama_cpp.llama_memory_clear(self.mem, True)
                n = 0
            del cached[n:]
        return n

    def prompt(self, tokens: list[int]) -> str | None:
        """Decode ``tokens`` after the cache in batches; return a stop reason if it could not finish."""
        n_batch = self.model.n_batch
        llama_cpp.llama_set_abort_callback(self.ctx, self._abort, None)
        try:
            for start in range(0, len(tokens), n_batch):
                if self.stop.is_set():
                    return "userStopped"
                chunk = tokens[start:start + n_batch]
                arr = (llama_cpp.llama_token * len(chunk))(*chunk)
                rc = llama_cpp.llama_decode(self.ctx, llama_cpp.llama_batch_get_one(arr, len(chunk)))
                if rc == 2 or (rc != 0 and self.stop.is_set()):
                    self._resync()
                    return "userStopped"
                if rc != 0:
                    self._resync()
                    raise PredictionError(f"llama_decode failed on the prompt (code {rc})")
                self.model.cached_tokens.extend(chunk)
        finally:
            llama_cpp.llama_set_abort_callback(self.ctx, llama_cpp.ggml_abort_callback(), None)
        return None

    def token(self, token: int, threads: DecodeThreads | None = None) -> int:
        """Decode one generated token (timed by ``threads``, which picks its thread count); returns
        llama_decode's code."""
        self.one[0] = token
        if threads is not None:
            threads.step_threads()
            rc = llama_cpp.llama_decode(self.ctx, self.one_batch)
            threads.record()
        else:
            rc = llama_cpp.llama_decode(self.ctx, self.one_batch)
        if rc == 0:
            self.model.cached_tokens.append(token)
        return rc

    def shift(self, keep: int) -> int:
        """Free half of the context after the first ``keep`` tokens (context shift); return #dropped."""
        cached = self.model.cached_tokens
        n_past = len(cached)
        n_discard = (n_past - keep) // 2
        if n_discard <= 0 or not llama_cpp.llama_memory_can_shift(self.mem):
            return 0
        llama_cpp.llama_memory_seq_rm(self.mem, 0, keep, keep + n_discard)
        llama_cpp.llama_memory_seq_add(self.mem, 0, keep + n_discard, n_past, -n_discard)
        del cached[keep:keep + n_discard]
        return n_discard

    def forget_after(self, n: int) -> None:
        """Drop the cache from token ``n`` on (it stays valid for reuse up to there)."""
        cached = self.model.cached_tokens
        if n < len(cached):
            if not llama_cpp.llama_memory_seq_rm(self.mem, 0, n, -1):
                llama_cpp.llama_memory_clear(self.mem, True)
                n = 0
            del cached[n:]

    def _resync(self) -> None:
        """After an aborted/failed batch, drop whatever llama.cpp may have half-written."""
        n = len(self.model.cached_tokens)
        if not llama_cpp.llama_memory_seq_rm(self.mem, 0, n, -1):
            llama_cpp.llama_memory_clear(self.mem, True)
            self.model.cached_tokens.clear()


def _top_logprobs(model: EngineModel, n: int, chosen: int, logits_ptr) -> TokenLogProb:
    logits = np.ctypeslib.as_array(logits_ptr, shape=(model.n_vocab,)).astype(np.float64)
    m = logits.max()
    logz = m + math.log(np.exp(logits - m).sum())
    top = np.argpartition(-logits, min(n, model.n_vocab - 1))[:n]
    top = top[np.argsort(-logits[top])]

    def text(t: int) -> str:
        return model.piece_unchecked(int(t)).decode("utf-8", errors="replace")

    return TokenLogProb(token=chosen, text=text(chosen), logprob=float(logits[chosen] - logz),
                        top=[(int(t), text(t), float(logits[t] - logz)) for t in top])


def thread_plan(model: EngineModel, n_threads: int | None, notes: list[str] | None = None,
                n_prompt: int = 0) -> DecodeThreads:
    """Set ``model``'s thread counts for one prediction and return what picks each decode step's count.

    ``n_threads`` (``cpuThreads``) fixes the decode and batch counts, capped by the CPUs this process
    may use (a note says so); otherwise the ``n_prompt`` new prompt tokens run on the load plan's pool,
    or on fewer threads when other processes hold CPUs right now (:func:`~.threads.batch_threads`),
    and decode steps adapt (the model's :class:`DecodeThreads`, kept across predictions).
    """
    ctx = model.ctx
    plan = model.plan.context_params
    if n_threads:
        cpus = available_cpus()
        if n_threads > cpus and notes is not None:
            notes.append(f"cpuThreads {n_threads} → {cpus}: this process may use {cpus} CPU(s); more threads "
                         "than CPUs wait for each other at every step of a token (far slower)")
        n = min(n_threads, cpus)
        llama_cpp.llama_set_n_threads(ctx, n, n)
        fixed = DecodeThreads(n, lambda k: llama_cpp.llama_set_n_threads(ctx, k, n), adaptive=False)
        fixed.batch = n
        return fixed
    batch = batch_threads(plan["n_threads_batch"], n_prompt)
    tuner = getattr(model, "decode_threads", None)
    if tuner is None or tuner.n_max != plan["n_threads"]:
        tuner = model.decode_threads = DecodeThreads(
            plan["n_threads"], lambda k: None, adaptive=model.plan.effective.get("decode_threads", {}).get("adaptive", True))
    llama_cpp.llama_set_n_threads(ctx, tuner.current, batch)
    tuner.batch = batch
    return tuner.bind(lambda k: llama_cpp.llama_set_n_threads(ctx, k, batch))


def generate(model: EngineModel, req: GenerationRequest) -> Iterator[TokenEvent]:
    """Run one generation on ``model``; yields token events and fills ``req.stats``.

    Holds ``model.lock`` for its whole run: a second generation on the same model raises
    :class:`ModelBusyError` instead of interleaving with this one. It is a user of the model's handles
    (``acquire_prediction``/``release``) from its first C call to its last: an unload meanwhile stops it
    and the model is freed when it ends (see ``engine/model.py``).
    """
    stats = req.stats
    stats.t_start = time.perf_counter()
    stats.seed = req.sampling.seed
    model.acquire_prediction()  # ModelBusyError / ModelNotLoadedError; a user of the handles until release()
    try:
        req.started = True
        if req.cancelled:  # cancelled before it started (see cancel())
            model.stop_requested.set()
        yield from _run(model, req, stats)
    finally:
        req.started = False
        if stats.t_end is None:  # the consumer abandoned the iterator
            stats.t_end = time.perf_counter()
            stats.stop_reason = stats.stop_reason or "userStopped"
        model.release()


def _run(model: EngineModel, req: GenerationRequest, stats: GenerationStats) -> Iterator[TokenEvent]:
    # We are a user of the model (acquire_prediction): it cannot be freed before release(), so the raw
    # pointers and every sampler made from them stay valid for the run.
    stop = model.stop_requested
    n_ctx = model.n_ctx
    ctx, vocab = model.ctx, model.vocab  # read once: an unload meanwhile stops the run, it does not raise
    reserve = min(req.max_tokens or n_ctx // 4, n_ctx // 2)
    prompt, removed = fit_prompt(req.prompt_tokens, n_ctx, reserve, req.overflow_policy, req.keep_head)
    stats.truncated_prompt_tokens = removed + req.pre_truncated
    stats.prompt_tokens = len(prompt)
    decoder = Decoder(model, stop)
    chain = SamplerChain(vocab, model.n_vocab, req.sampling, history=prompt, prefilter=req.prefilter)
    matcher = StopStringMatcher(list(req.stop_strings) + list(req.tool_call_stop_strings))
    utf8 = Utf8Assembler()
    keep = 1 if req.overflow_policy == "rollingWindow" else max(1, min(req.keep_head, n_ctx // 4))
    guard = SigintGuard(stop)
    threads: DecodeThreads | None = None
    try:
        with guard:
            reused = decoder.reuse_prefix(prompt)
            stats.cached_prompt_tokens = reused
            threads = thread_plan(model, req.n_threads, stats.notes, len(prompt) - reused)
            reason = decoder.prompt(prompt[reused:])
        stats.t_prompt_done = time.perf_counter()
        if reason:
            stats.stop_reason = reason
            return
        if req.speculative is not None:  # speculative decoding (engine/speculative.py) runs the loop
            yield from req.speculative.loop(model, req, stats, decoder, chain, matcher, utf8, guard, threads, keep)
        while req.speculative is None:
            # The SIGINT guard is held while we work, never across a yield: consumer code between
            # tokens gets ordinary Ctrl-C behaviour.
            with guard:
                token, event = _sample(model, ctx, vocab, req, stats, chain, matcher, utf8)
            if event is not None:
                yield event
            if stats.stop_reason is not None:
                break
            with guard:
                _advance(model, req, stats, decoder, token, threads, keep)
            if stats.stop_reason is not None:
                break
        if stats.stop_reason not in ("stopStringFound", "toolCalls"):
            tail = matcher.feed(utf8.flush())[0] + matcher.flush()
            if tail:
                yield TokenEvent(tail, -1)
    except KeyboardInterrupt:  # a Ctrl-C that landed outside our handler's window
        stats.stop_reason = "userStopped"
    except GeneratorExit:  # the consumer closed the stream (Stop, Ctrl-C in its code, abandoned)
        stats.stop_reason = stats.stop_reason or "userStopped"
        raise
    finally:
        guard.close()
        chain.close()
        _finish(stats, decoder, keep, threads)


def _sample(model: EngineModel, ctx: Any, vocab: Any, req: GenerationRequest, stats: GenerationStats,
            chain: SamplerChain, matcher: StopStringMatcher, utf8: Utf8Assembler) -> tuple[int, TokenEvent | None]:
    """Sample the next token; its event (None for an end token) and, when it ends the run, the stop reason."""
    logits_ptr = llama_cpp.llama_get_logits_ith(ctx, -1) if req.log_probs else None
    # the drawn-from distribution, before sample() accepts the token into the penalty and grammar state
    sampled = sampled_distribution(model, chain, req.sampling, logits_ptr) if req.log_probs else None
    token = chain.sample(ctx)
    event = token_event(model, vocab, req, stats, matcher, utf8, token, logits_ptr)
    if sampled is not None and event is not None and event.logprob is not None:
        event.logprob.sampled_probability = sampled_probability(sampled, token)
    return token, event


def token_event(model: EngineModel, vocab: Any, req: GenerationRequest, stats: GenerationStats,
                matcher: StopStringMatcher, utf8: Utf8Assembler, token: int, logits_ptr: Any,
                drafted: bool = False) -> TokenEvent | None:
    """Count a chosen token; its event (None for an end token) and, when it ends the run, the stop reason.
    ``drafted``: a draft proposed it and the target accepted it (speculative decoding)."""
    stats.predicted_tokens += 1
    if stats.t_first_token is None:
        stats.t_first_token = time.perf_counter()
    if llama_cpp.llama_vocab_is_eog(vocab, token) or token in req.end_tokens:
        stats.stop_reason = "eosFound"
        return None
    text, found = matcher.feed(utf8.feed(shown_piece(model, vocab, token, req.show_special)))
    logprob = _top_logprobs(model, req.log_probs, token, logits_ptr) if req.log_probs else None
    if found is not None:
        stats.stop_string = found
        stats.stop_reason = "toolCalls" if found in req.tool_call_stop_strings else "stopStringFound"
    elif req.max_tokens is not None and stats.predicted_tokens >= req.max_tokens:
        stats.stop_reason = "maxPredictedTokensReached"
    return TokenEvent(text, token, logprob, drafted)


def _advance(model: EngineModel, req: GenerationRequest, stats: GenerationStats, decoder: Decoder, token: int,
             threads: DecodeThreads | None, keep: int) -> None:
    """Decode ``token`` (shifting the context first when it is full); sets the stop reason when it cannot."""
    stop = model.stop_requested
    if stop.is_set():
        stats.stop_reason = "userStopped"
    elif len(model.cached_tokens) >= model.n_ctx:
        if req.overflow_policy == "stopAtLimit" or not decoder.shift(keep):
            stats.stop_reason = "contextLengthReached"
        else:
            stats.context_shifts += 1
    if stats.stop_reason is None:
        rc = decoder.token(token, threads)
        if rc != 0:
            if stop.is_set() or rc == 2:
                stats.stop_reason = "userStopped"
            else:
                stats.stop_reason = "failed"
                stats.error = f"llama_decode failed (code {rc})"


def _finish(stats: GenerationStats, decoder: Decoder, keep: int, threads: DecodeThreads | None) -> None:
    """End-of-run bookkeeping: drop cache entries a context shift invalidated, times, threads, the stop reason."""
    if stats.context_shifts:
        # after a shift the cached tokens past the head were computed with context that is gone:
        # reusing them for the next prompt would not match a fresh run, so they are dropped
        decoder.forget_after(keep)
    stats.t_end = time.perf_counter()
    if threads is not None:
        stats.threads = {**threads.summary(), "batch": threads.batch}
    if stats.stop_reason is None:
        stats.stop_reason = "failed"
