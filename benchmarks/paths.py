"""The decode paths compared side by side, each run on its own context of the same model.

* :class:`RawLoop` — the floor: llama.cpp's C API called straight from Python (``llama_decode``, the
  native sampler chain, ``llama_token_to_piece``), no stop strings, no bookkeeping. Its model and
  context parameters are lmsext's plan for that model, so thread counts, batch sizes, KV types and
  flash attention are identical.
* :class:`LlamaCppPython` — ``Llama(...).create_completion(stream=True)``, same parameters.
* :class:`LmsextApi` — ``LLM.respond_stream`` (the public API) consumed by a plain loop.
* :class:`LmsextMagic` — ``%%lm_respond`` in a real ``InteractiveShell``: the streaming display path
  (its display traffic is captured, see :class:`~benchmarks.common.FrontEndCapture`).

Every ``decode`` returns a :class:`DecodeRun`; the decode rate is ``(tokens - 1) / (t_last - t_first)``
measured at the consumer (the first token's wait — prompt processing — is the time to first token,
measured separately), and ``t_done`` closes the end-to-end time.
"""

from __future__ import annotations

import ctypes
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import llama_cpp

from .common import SAMPLERS, FrontEndCapture, llama_cpp_sampling


@dataclass
class DecodeRun:
    tokens: int
    t_call: float
    t_first: float
    t_last: float
    t_done: float
    text: str = ""
    stop: str | None = None
    messages: int = 0
    message_bytes: int = 0

    @property
    def rate(self) -> float | None:
        """Tokens per second between the first and the last token, as the consumer saw them."""
        dt = self.t_last - self.t_first
        return (self.tokens - 1) / dt if self.tokens > 1 and dt > 0 else None

    @property
    def ttft(self) -> float:
        return self.t_first - self.t_call

    @property
    def e2e(self) -> float:
        return self.t_done - self.t_call


# ------------------------------------------------------------------------------ own time per token

class NativeTimer:
    """Times every ``llama_decode`` and ``llama_sampler_sample`` call while active — the native work
    of a token, identical on the raw loop and lmsext (same context, same chain). What a path spends
    between its first and last token *outside* those calls is its own time per token: Python, ctypes,
    detokenizing, stop strings, stats, the stream. Unlike a throughput ratio, that difference does
    not drown in the decode time's noise on a compute-bound model.

    Both lmsext's engine and :class:`RawLoop` call ``llama_cpp.<function>`` through the module, so
    swapping the module attributes reaches both (the wrapper costs each path the same ~0.3 µs)."""

    NAMES = ("llama_decode", "llama_sampler_sample")

    def __init__(self) -> None:
        self.calls: list[tuple[float, float]] = []
        self._saved: dict[str, Any] = {}

    def __enter__(self) -> "NativeTimer":
        calls, clock = self.calls, time.perf_counter

        def timed(fn: Any) -> Any:
            def call(*args: Any) -> Any:
                t0 = clock()
                result = fn(*args)
                calls.append((t0, clock()))
                return result
            return call

        for name in self.NAMES:
            self._saved[name] = getattr(llama_cpp, name)
            setattr(llama_cpp, name, timed(self._saved[name]))
        return self

    def __exit__(self, *exc: Any) -> None:
        for name, fn in self._saved.items():
            setattr(llama_cpp, name, fn)
        self._saved.clear()

    def split(self, run: DecodeRun) -> tuple[float, float] | None:
        """(native seconds per token, own seconds per token) between ``run``'s first and last token."""
        if run.tokens < 2 or run.t_last <= run.t_first:
            return None
        native = sum(e - s for s, e in self.calls if s >= run.t_first and e <= run.t_last)
        n = run.tokens - 1
        return native / n, (run.t_last - run.t_first - native) / n


# ------------------------------------------------------------------------------ raw C API loop

class RawLoop:
    """A bare ``llama_decode`` + sampler-chain loop with lmsext's load plan applied verbatim."""

    name = "raw C-API loop"

    def __init__(self, path: Path | None, model_params: dict[str, Any], context_params: dict[str, Any],
                 *, engine: Any = None) -> None:
        """Load ``path`` with the given parameters — or, with ``engine`` (an lmsext EngineModel), run on
        that engine's own llama_context: the same weights, KV buffer and memory layout as lmsext, so a
        comparison between the two carries no instance effects (two contexts of one model can differ
        by a few % in speed through where their buffers land). The shared context's cache
        bookkeeping (``engine.cached_tokens``) is kept exact, so lmsext's prefix reuse stays correct."""
        from lmsext.engine import _lib

        _lib.init()  # llama_backend_init + quiet logs, as every llama.cpp user does once
        self.threads = (context_params["n_threads"], context_params["n_threads_batch"])
        self.owned = engine is None
        if engine is not None:
            self.model, self.ctx, self.vocab = None, engine.ctx, engine.vocab
            self.n_batch = engine.n_batch
            self.cached = engine.cached_tokens  # the same list: both sides see what the cache holds
            self._init_buffers()
            return
        mp = llama_cpp.llama_model_default_params()
        for key, value in model_params.items():
            if key != "tensor_split":
                setattr(mp, key, value)
        self.model = llama_cpp.llama_model_load_from_file(str(path).encode(), mp)
        if not self.model:
            raise RuntimeError(f"raw loop: could not load {path}")
        cp = llama_cpp.llama_context_default_params()
        for key, value in context_params.items():
            setattr(cp, key, value)
        cp.no_perf = True
        self.ctx = llama_cpp.llama_init_from_model(self.model, cp)
        if not self.ctx:
            raise RuntimeError("raw loop: could not create a context")
        self.n_batch = int(cp.n_batch)
        self.vocab = llama_cpp.llama_model_get_vocab(self.model)
        self.cached: list[int] = []  # what the KV cache holds (for prefix reuse in decode)
        self._init_buffers()

    def _init_buffers(self) -> None:
        self.mem = llama_cpp.llama_get_memory(self.ctx)
        self.buf = ctypes.create_string_buffer(256)
        self.one = (llama_cpp.llama_token * 1)()
        self.one_batch = llama_cpp.llama_batch_get_one(self.one, 1)

    def close(self) -> None:
        if not self.owned:
            self.ctx = None
            return
        if self.ctx:
            llama_cpp.llama_free(self.ctx)
            self.ctx = None
        if self.model:
            llama_cpp.llama_model_free(self.model)
            self.model = None

    def tokenize(self, text: str, add_special: bool = True) -> list[int]:
        data = text.encode("utf-8")
        buf = (llama_cpp.llama_token * (len(data) + 8))()
        n = llama_cpp.llama_tokenize(self.vocab, data, len(data), buf, len(buf), add_special, True)
        return list(buf[:n])

    def chain(self, sampler: str, history: Sequence[int]) -> Any:
        """The native chain lmsext builds for these settings (same samplers, same order)."""
        s = SAMPLERS[sampler]
        chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
        add = lambda x: llama_cpp.llama_sampler_chain_add(chain, x)  # noqa: E731
        rp = s.get("repeatPenalty") or 1.0
        if rp != 1.0:
            pen = llama_cpp.llama_sampler_init_penalties(llama_cpp.llama_vocab_n_tokens(self.vocab), 64, rp, 0.0, 0.0)
            for t in list(history)[-64:]:
                llama_cpp.llama_sampler_accept(pen, t)
            add(pen)
        if s["temperature"] <= 0:
            add(llama_cpp.llama_sampler_init_greedy())
        else:
            add(llama_cpp.llama_sampler_init_top_k(s["topKSampling"]))
            add(llama_cpp.llama_sampler_init_top_p(s["topPSampling"], 1))
            add(llama_cpp.llama_sampler_init_min_p(s["minPSampling"], 1))
            add(llama_cpp.llama_sampler_init_temp(s["temperature"]))
            add(llama_cpp.llama_sampler_init_dist(s["seed"]))
        return chain

    def prompt(self, tokens: Sequence[int], reuse: bool = False) -> None:
        """Decode ``tokens`` in batches: after clearing the cache, or (``reuse``) after the longest
        prefix the cache already holds — all but the last token, whose logits are needed — as lmsext
        and llama-cpp-python do for a repeated prompt."""
        tokens = list(tokens)
        llama_cpp.llama_set_n_threads(self.ctx, *self.threads)
        keep = 0
        if reuse:
            while keep < min(len(self.cached), len(tokens) - 1) and self.cached[keep] == tokens[keep]:
                keep += 1
        if keep:
            llama_cpp.llama_memory_seq_rm(self.mem, 0, keep, -1)
        else:
            llama_cpp.llama_memory_clear(self.mem, True)
        del self.cached[keep:]  # in place: with a shared engine, its bookkeeping follows
        rest = tokens[keep:]
        for start in range(0, len(rest), self.n_batch):
            chunk = rest[start:start + self.n_batch]
            arr = (llama_cpp.llama_token * len(chunk))(*chunk)
            if llama_cpp.llama_decode(self.ctx, llama_cpp.llama_batch_get_one(arr, len(chunk))) != 0:
                raise RuntimeError("raw loop: llama_decode failed on the prompt")
            self.cached.extend(chunk)

    def decode(self, prompt_tokens: Sequence[int], n: int, sampler: str, config: Any = None) -> DecodeRun:
        ctx, vocab, buf, one, batch = self.ctx, self.vocab, self.buf, self.one, self.one_batch
        t_call = time.perf_counter()
        chain = self.chain(sampler, prompt_tokens)
        self.prompt(prompt_tokens, reuse=True)
        pieces: list[bytes] = []
        t_first = t_last = 0.0
        stop = "max"
        try:
            for i in range(n):
                token = llama_cpp.llama_sampler_sample(chain, ctx, -1)
                if llama_cpp.llama_vocab_is_eog(vocab, token):
                    stop = "eos"
                    break
                k = llama_cpp.llama_token_to_piece(vocab, token, buf, 256, 0, False)
                pieces.append(buf.raw[:k])
                t_last = time.perf_counter()
                if i == 0:
                    t_first = t_last
                if i == n - 1:
                    break
                one[0] = token
                if llama_cpp.llama_decode(ctx, batch) != 0:
                    stop = "failed"
                    break
                self.cached.append(token)
        finally:
            llama_cpp.llama_sampler_free(chain)
        text = b"".join(pieces).decode("utf-8", errors="replace")
        return DecodeRun(len(pieces), t_call, t_first, t_last, time.perf_counter(), text, stop)

    def first_token(self, text: str) -> float:
        """Seconds from the prompt text to the first token's text (tokenize, decode, sample, piece)."""
        t0 = time.perf_counter()
        tokens = self.tokenize(text)
        chain = self.chain("greedy", tokens)
        self.prompt(tokens)
        token = llama_cpp.llama_sampler_sample(chain, self.ctx, -1)
        llama_cpp.llama_token_to_piece(self.vocab, token, self.buf, 256, 0, False)
        t = time.perf_counter() - t0
        llama_cpp.llama_sampler_free(chain)
        return t


    def first_token_reusing(self, tokens: Sequence[int], reuse: int) -> float:
        """Like :meth:`first_token` on a cache that already holds ``tokens[:reuse]`` (put there
        untimed): the same work lmsext does on a turn whose first ``reuse`` tokens it found cached."""
        self.prompt(tokens[:reuse], reuse=True)  # untimed; only what differs from the cache is decoded
        chain = self.chain("greedy", tokens)
        rest = list(tokens[reuse:])
        t0 = time.perf_counter()
        for start in range(0, len(rest), self.n_batch):
            chunk = rest[start:start + self.n_batch]
            arr = (llama_cpp.llama_token * len(chunk))(*chunk)
            llama_cpp.llama_decode(self.ctx, llama_cpp.llama_batch_get_one(arr, len(chunk)))
            self.cached.extend(chunk)
        token = llama_cpp.llama_sampler_sample(chain, self.ctx, -1)
        llama_cpp.llama_token_to_piece(self.vocab, token, self.buf, 256, 0, False)
        t = time.perf_counter() - t0
        llama_cpp.llama_sampler_free(chain)
        return t


# ------------------------------------------------------------------------------ llama-cpp-python

class LlamaCppPython:
    """``llama_cpp.Llama`` with the same context parameters; ``create_completion(stream=True)``."""

    name = "llama-cpp-python create_completion"

    def __init__(self, path: Path, context_params: dict[str, Any], stops: Sequence[str] = ()) -> None:
        from llama_cpp import Llama

        self.llm = Llama(str(path), **llama_kwargs(context_params), verbose=False)
        self.stops = list(stops)

    def close(self) -> None:
        self.llm.close()

    def decode(self, prompt_tokens: Sequence[int], n: int, sampler: str, config: Any = None) -> DecodeRun:
        t_call = time.perf_counter()
        t_first = t_last = 0.0
        parts: list[str] = []
        count = 0
        stop = None
        for chunk in self.llm.create_completion(list(prompt_tokens), max_tokens=n, stream=True,
                                                stop=self.stops or None, **llama_cpp_sampling(sampler)):
            t_last = time.perf_counter()
            choice = chunk["choices"][0]
            if choice.get("finish_reason"):
                stop = choice["finish_reason"]
            if choice["text"] or not choice.get("finish_reason"):
                count += 1
                if count == 1:
                    t_first = t_last
                parts.append(choice["text"])
        return DecodeRun(count, t_call, t_first, t_last, time.perf_counter(), "".join(parts), stop)

    def first_token(self, text: str) -> float:
        t0 = time.perf_counter()
        for _ in self.llm.create_completion(text, max_tokens=1, stream=True, **llama_cpp_sampling("greedy")):
            return time.perf_counter() - t0
        return time.perf_counter() - t0


def llama_kwargs(context_params: dict[str, Any]) -> dict[str, Any]:
    """``Llama(...)`` keyword arguments equal to a plan's context parameters."""
    cp = context_params
    kw: dict[str, Any] = {"n_ctx": cp["n_ctx"], "n_batch": cp["n_batch"], "n_ubatch": cp["n_ubatch"],
                          "n_threads": cp["n_threads"], "n_threads_batch": cp["n_threads_batch"],
                          "flash_attn": cp.get("flash_attn_type", 0) == llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED,
                          "offload_kqv": cp.get("offload_kqv", True), "n_gpu_layers": 0}
    if cp.get("type_k") is not None:
        kw["type_k"] = cp["type_k"]
    if cp.get("type_v") is not None:
        kw["type_v"] = cp["type_v"]
    return kw


# ------------------------------------------------------------------------------ lmsext

class LmsextApi:
    """``LLM.respond_stream`` consumed by a plain loop (what a script or another UI sees)."""

    name = "lmsext respond_stream"

    def __init__(self, llm: Any, messages: list[dict[str, str]]) -> None:
        self.llm = llm
        self.messages = messages

    def decode(self, prompt_tokens: Sequence[int], n: int, sampler: str, config: Any = None) -> DecodeRun:
        t_call = time.perf_counter()
        t_first = t_last = 0.0
        parts: list[str] = []
        stream = self.llm.respond_stream(self.messages, {**(config or SAMPLERS[sampler]), "maxTokens": n})
        for fragment in stream:
            t_last = time.perf_counter()
            if not parts:
                t_first = t_last
            parts.append(fragment.content)
        result = stream.result()
        return DecodeRun(result.stats.predicted_tokens_count, t_call, t_first, t_last, time.perf_counter(),
                         result.content, result.stats.stop_reason)


class LmsextMagic:
    """``%%lm_respond --no-history`` in a real InteractiveShell, rich display mode (as in Jupyter).

    The view's ``feed`` is wrapped to timestamp each fragment after the view handled it, so the decode
    rate includes the display work of every fragment but the first. Display and comm messages go to
    a :class:`FrontEndCapture`.
    """

    name = "lmsext %%lm_respond (stream view)"

    def __init__(self, shell: Any, identifier: str, prompt: str, capture: FrontEndCapture,
                 widgets: bool | None = True) -> None:
        from lmsext import magics as magics_module

        self.shell = shell
        self.magics = magics_module.get_magics(shell)
        # what a Jupyter kernel gets: rich display mode, and the stream widget where the magics have one
        # (``LMMagics.widgets`` 'auto' means on in a kernel; this shell is not one, so say 'on')
        self.magics.display_mode = "rich"
        if widgets is not None and self.magics.has_trait("widgets"):
            self.magics.widgets = "on" if widgets else "off"
        self.view_name = type(self.magics._view()).__name__
        self.identifier = identifier
        self.prompt = prompt
        self.capture = capture
        self._times: list[float] = []
        self._wrap_view()

    def _wrap_view(self) -> None:
        magics = self.magics
        original = type(magics)._view
        times = self._times

        def _view(this=magics):
            view = original(this)
            feed = getattr(view, "feed", None)
            if feed is not None:
                def timed(text: str, _feed=feed) -> None:
                    _feed(text)
                    if text:
                        times.append(time.perf_counter())
                view.feed = timed
            return view

        magics._view = _view

    def decode(self, prompt_tokens: Sequence[int], n: int, sampler: str, config: Any = None) -> DecodeRun:
        self.magics.default_prediction_config = {**(config or SAMPLERS[sampler]), "maxTokens": n}
        self._times.clear()
        self.capture.clear()
        t_call = time.perf_counter()
        out = self.shell.run_cell(f"%%lm_respond --no-history --model {self.identifier}\n{self.prompt}",
                                  store_history=False)
        t_done = time.perf_counter()
        if out.error_in_exec is not None or out.error_before_exec is not None:
            raise RuntimeError(f"%%lm_respond failed: {out.error_in_exec or out.error_before_exec}")
        result = self.shell.user_ns["_lm"]
        times = self._times or [t_call]
        msgs = self.capture.messages
        return DecodeRun(result.stats.predicted_tokens_count, t_call, times[0], times[-1], t_done,
                         result.content, result.stats.stop_reason, len(msgs), sum(m.nbytes for m in msgs))


def make_shell() -> Any:
    """A real InteractiveShell with ``%load_ext lmsext`` (not a kernel: no ZMQ, display captured)."""
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "lmsext")
    return shell
