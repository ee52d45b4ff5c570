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
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Iterator, Sequence

import llama_cpp
import numpy as np

try:  # the C functions; signal.signal/getsignal add enum conversions (µs per call)
    from _signal import getsignal as _get_handler, signal as _set_handler
except ImportError:  # pragma: no cover - not CPython
    _get_handler, _set_handler = signal.getsignal, signal.signal

from ..backend import GenerationStats, TokenEvent, TokenLogProb
from ..errors import ModelBusyError, PredictionError
from .model import EngineModel
from .sampling import SamplerChain, SamplingSettings
from .textstream import StopStringMatcher, Utf8Assembler


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


class SigintGuard:
    """While entered on the main thread, SIGINT sets ``flag`` instead of raising KeyboardInterrupt.

    Entered around each unit of engine work; a Ctrl-C that arrives while it is not entered behaves
    normally. The guard *is* the SIGINT handler, installed once per generation rather than per unit
    (``signal.signal`` costs ~4 µs: four calls per token were ~8 % of a token on stories260K). Between
    units it passes the signal on to the handler it replaced, so consumer code between tokens gets
    ordinary Ctrl-C behaviour. Each entry checks with one C call that the handler is still this
    guard (code between tokens — ipykernel between cells, the user — may have replaced it) and
    reinstalls it if not. :meth:`close` puts the previous handler back if this guard is still the
    one installed; a closed guard left installed (or chained) only ever passes signals on.
    """

    def __init__(self, flag: threading.Event) -> None:
        self.flag = flag
        self.inside = False
        self.closed = False
        self.previous: object = None
        self._main = threading.main_thread().ident
        self.active = threading.get_ident() == self._main

    def __call__(self, signum: int, frame: object) -> None:
        if self.inside:
            self.flag.set()
            return
        previous = _live_handler(self.previous)
        if callable(previous):
            previous(signum, frame)
        elif previous != signal.SIG_IGN:  # SIG_DFL, or a handler not set from Python: Python's default
            raise KeyboardInterrupt

    def __enter__(self) -> "SigintGuard":
        if self.active and threading.get_ident() == self._main:  # resumed elsewhere: not ours to take
            current = _get_handler(signal.SIGINT)
            if current is not self and not self._reaches_me(current):
                try:
                    _set_handler(signal.SIGINT, self)
                except (ValueError, TypeError):  # not the main interpreter after all
                    self.active = False
                    return self
                self.previous = current
            self.inside = True
        return self

    def _reaches_me(self, handler: object) -> bool:
        """True if ``handler`` is a guard that passes signals on to this one (another generation
        interleaved with this one installed itself over it): no reinstall, no cycle."""
        while isinstance(handler, SigintGuard):
            if handler is self:
                return True
            handler = handler.previous
        return False

    def __exit__(self, *exc) -> None:
        self.inside = False

    def close(self) -> None:
        """Uninstall: the handler this guard replaced is back (if nothing replaced the guard since)."""
        self.inside = False
        self.closed = True
        if self.active and _get_handler(signal.SIGINT) is self:
            previous = _live_handler(self.previous)
            try:
                _set_handler(signal.SIGINT, previous if previous is not None else signal.default_int_handler)
            except (ValueError, TypeError):  # finalized on another thread: stays installed, passes signals on
                pass


def _live_handler(handler: object) -> object:
    """``handler``, skipping closed guards (whose own predecessors take their place)."""
    while isinstance(handler, SigintGuard) and handler.closed:
        handler = handler.previous
    return handler


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

    def token(self, token: int) -> int:
        """Decode one generated token; returns llama_decode's code."""
        self.one[0] = token
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


def generate(model: EngineModel, req: GenerationRequest) -> Iterator[TokenEvent]:
    """Run one generation on ``model``; yields token events and fills ``req.stats``.

    Holds ``model.lock`` for its whole run: a second generation on the same model raises
    :class:`ModelBusyError` instead of interleaving with this one.
    """
    stats = req.stats
    stats.t_start = time.perf_counter()
    stats.seed = req.sampling.seed
    model.check_open()
    if not model.lock.acquire(blocking=False):
        raise ModelBusyError(f"model {model.path.name} is busy with another prediction; wait for it or stop it")
    try:
        model.check_open()
        model.stop_requested.clear()
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
    # The model cannot be freed while we hold its lock, so the raw pointers stay valid for the run.
    stop = model.stop_requested
    n_ctx = model.n_ctx
    ctx, vocab = model.ctx, model.vocab
    threads = model.plan.context_params
    llama_cpp.llama_set_n_threads(ctx, req.n_threads or threads["n_threads"],
                                  req.n_threads or threads["n_threads_batch"])
    reserve = min(req.max_tokens or n_ctx // 4, n_ctx // 2)
    prompt, removed = fit_prompt(req.prompt_tokens, n_ctx, reserve, req.overflow_policy, req.keep_head)
    stats.truncated_prompt_tokens = removed + req.pre_truncated
    stats.prompt_tokens = len(prompt)
    decoder = Decoder(model, stop)
    chain = SamplerChain(vocab, model.n_vocab, req.sampling, history=prompt)
    matcher = StopStringMatcher(list(req.stop_strings) + list(req.tool_call_stop_strings))
    utf8 = Utf8Assembler()
    keep = 1 if req.overflow_policy == "rollingWindow" else max(1, min(req.keep_head, n_ctx // 4))
    guard = SigintGuard(stop)
    try:
        with guard:
            reused = decoder.reuse_prefix(prompt)
            stats.cached_prompt_tokens = reused
            reason = decoder.prompt(prompt[reused:])
        stats.t_prompt_done = time.perf_counter()
        if reason:
            stats.stop_reason = reason
            return
        while True:
            # The SIGINT guard is held while we work, never across a yield: consumer code between
            # tokens gets ordinary Ctrl-C behaviour.
            with guard:
                logits_ptr = llama_cpp.llama_get_logits_ith(ctx, -1) if req.log_probs else None
                token = chain.sample(ctx)
                stats.predicted_tokens += 1
                if stats.t_first_token is None:
                    stats.t_first_token = time.perf_counter()
                event, found = None, None
                if llama_cpp.llama_vocab_is_eog(vocab, token):
                    stats.stop_reason = "eosFound"
                else:
                    text, found = matcher.feed(utf8.feed(model.piece_unchecked(token)))
                    logprob = _top_logprobs(model, req.log_probs, token, logits_ptr) if req.log_probs else None
                    event = TokenEvent(text, token, logprob)
                    if found is not None:
                        stats.stop_string = found
                        stats.stop_reason = ("toolCalls" if found in req.tool_call_stop_strings
                                             else "stopStringFound")
                    elif req.max_tokens is not None and stats.predicted_tokens >= req.max_tokens:
                        stats.stop_reason = "maxPredictedTokensReached"
            if event is not None:
                yield event
            if stats.stop_reason is not None:
                break
            with guard:
                if stop.is_set():
                    stats.stop_reason = "userStopped"
                elif len(model.cached_tokens) >= n_ctx:
                    if req.overflow_policy == "stopAtLimit" or not decoder.shift(keep):
                        stats.stop_reason = "contextLengthReached"
                    else:
                        stats.context_shifts += 1
                if stats.stop_reason is None:
                    rc = decoder.token(token)
                    if rc != 0:
                        if stop.is_set() or rc == 2:
                            stats.stop_reason = "userStopped"
                        else:
                            stats.stop_reason = "failed"
                            stats.error = f"llama_decode failed (code {rc})"
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
        if stats.context_shifts:
            # after a shift the cached tokens past the head were computed with context that is gone:
            # reusing them for the next prompt would not match a fresh run, so they are dropped
            decoder.forget_after(keep)
        stats.t_end = time.perf_counter()
        if stats.stop_reason is None:
            stats.stop_reason = "failed"
