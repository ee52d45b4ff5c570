"""The benchmark sections. Each takes a :class:`Setup` and returns a JSON-able dict of results."""

from __future__ import annotations

import contextlib
import gc
import io
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from .common import (SAMPLER_LABELS, SAMPLERS, FrontEndCapture, interleave, median, ratio, rss_bytes,
                     summary_stats)
from .paths import LlamaCppPython, LmsextApi, LmsextMagic, NativeTimer, RawLoop, llama_kwargs, make_shell

DECODE_PROMPT = "Once upon a time, there was a little girl named Lily. She loved to play outside."


@dataclass
class ModelCase:
    """One model under test: where it is, how long to decode, its label, which sections use it."""

    key: str
    label: str
    path: Path
    context_length: int
    tokens: int
    reps: int
    #: decode threads for every path (lmsext: ``cpuThreads``); None = lmsext's plan for the model
    threads: int | None = None
    roles: tuple[str, ...] = ("decode", "ttft", "load", "multiturn", "memory")
    #: the model key lmsext loads it by (default: the path)
    model_key: str | None = None
    #: multi-turn: chats, reply length, turns at which the raw loop is measured
    chats: int = 5
    reply_tokens: int = 24
    ttft_reps: int = 15

    @property
    def load_key(self) -> str:
        return self.model_key or str(self.path)

    def context_params(self, planned: dict[str, Any]) -> dict[str, Any]:
        """The plan's context parameters with this case's thread override."""
        cp = dict(planned)
        if self.threads is not None:
            cp["n_threads"] = cp["n_threads_batch"] = self.threads
        return cp

    def sampling(self, sampler: str) -> dict[str, Any]:
        cfg = dict(SAMPLERS[sampler])
        if self.threads is not None:
            cfg["cpuThreads"] = self.threads
        return cfg


@dataclass
class Setup:
    """Options of one benchmark run."""

    cases: list[ModelCase]
    samplers: list[str]
    reps_small: int = 7
    #: rounds of the own-time-per-token measurement (decode section), per model and sampler
    own_rounds: int = 3
    frontend_tokens: int = 2000
    turns: int = 20
    cycles: int = 20
    log: Callable[[str], None] = print
    #: threads for the time-to-first-token and multi-turn sections (prompt batches too); None = the plan's.
    #: 1 by default: on a shared 2-core machine a 2-thread prompt batch stalls whenever another process
    #: holds a core, which buries a few-ms difference; every path gets the same count either way
    latency_threads: int | None = 1
    shell: Any = None
    capture: FrontEndCapture = field(default_factory=FrontEndCapture)

    def for_section(self, role: str) -> list[ModelCase]:
        return [c for c in self.cases if role in c.roles]

    def get_shell(self) -> Any:
        if self.shell is None:
            self.shell = make_shell()
            self.capture.install(self.shell)
        return self.shell


def _latency_context(setup: Setup, planned: dict[str, Any]) -> dict[str, Any]:
    cp = dict(planned)
    if setup.latency_threads is not None:
        cp["n_threads"] = cp["n_threads_batch"] = setup.latency_threads
    return cp


def _latency_config(setup: Setup) -> dict[str, Any]:
    return {} if setup.latency_threads is None else {"cpuThreads": setup.latency_threads}


def _client():
    import lmsext

    return lmsext.Client()


def _load(client, case: ModelCase, identifier: str, context_length: int | None = None):
    return client.llm.load(case.load_key, config={"contextLength": context_length or case.context_length},
                           identifier=identifier)


# ------------------------------------------------------------------------------ 1. decode throughput

def decode(setup: Setup) -> dict[str, Any]:
    """Decode throughput of the four paths, per model and sampler setting, interleaved."""
    from lmsext import magics as magics_module

    out: dict[str, Any] = {"prompt": DECODE_PROMPT, "samplers": {k: SAMPLER_LABELS[k] for k in setup.samplers},
                           "own_rounds": setup.own_rounds, "models": {}}
    shell = setup.get_shell()
    for case in setup.for_section("decode"):
        client = magics_module.get_magics(shell).client  # the kernel-wide client the magic uses
        ident = f"bench-{case.key}"
        llm = _load(client, case, ident)
        params = llm.load_result.llama_params
        context = case.context_params(params["context"])
        messages = [{"role": "user", "content": DECODE_PROMPT}]
        tokens, template = llm.engine.render_prompt(messages)
        raw = RawLoop(None, params["model"], context, engine=llm.engine)  # on lmsext's own context
        cc = LlamaCppPython(case.path, context, stops=template.implicit_stops)
        magic = LmsextMagic(shell, ident, DECODE_PROMPT, setup.capture)
        paths = {"raw": raw, "llama_cpp_python": cc, "lmsext_api": LmsextApi(llm, messages), "lmsext_magic": magic}
        model_out: dict[str, Any] = {
            "label": case.label, "path": case.path.name, "params": llm.get_info().parameter_count,
            "n_ctx": context["n_ctx"], "n_threads": context["n_threads"],
            "n_threads_batch": context["n_threads_batch"], "planned_threads": params["context"]["n_threads"],
            "prompt_tokens": len(tokens), "max_tokens": case.tokens, "reps": case.reps,
            "magic_view": magic.view_name, "samplers": {}}
        try:
            for sampler in setup.samplers:
                setup.log(f"  decode {case.key} / {sampler}: {case.tokens} tokens × {case.reps} rounds")
                # lmsext's decode threads adapt per step by default; here every path runs the same fixed
                # count (the raw loop and Llama() get the plan's n_threads): benchmarks.contention compares defaults
                cfg = {"cpuThreads": context["n_threads"], **case.sampling(sampler)}
                runs = interleave({name: (lambda p=p: p.decode(tokens, case.tokens, sampler, cfg))
                                   for name, p in paths.items()}, case.reps)
                res: dict[str, Any] = {}
                for name, rs in runs.items():
                    res[name] = {
                        "name": paths[name].name,
                        "tok_s": median([r.rate for r in rs]), "tok_s_all": [r.rate for r in rs],
                        "tokens": [r.tokens for r in rs], "stop": sorted({str(r.stop) for r in rs}),
                        "e2e_s": median([r.e2e for r in rs]),
                    }
                    if name == "lmsext_magic":
                        res[name]["messages"] = median([r.messages for r in rs])
                        res[name]["message_bytes"] = median([r.message_bytes for r in rs])
                base = res["raw"]["tok_s"]
                for name in res:
                    res[name]["x_raw"] = ratio(res[name]["tok_s"], base)
                    res[name]["x_llama_cpp_python"] = ratio(res[name]["tok_s"], res["llama_cpp_python"]["tok_s"])
                # paired ratios (same round) are steadier than a ratio of medians on a busy machine
                for name in ("lmsext_api", "lmsext_magic", "llama_cpp_python"):
                    pairs = [ratio(a.rate, b.rate) for a, b in zip(runs[name], runs["raw"])]
                    res[name]["x_raw_paired"] = median(pairs)
                    res[name]["x_raw_rounds"] = pairs
                for name in ("lmsext_api", "lmsext_magic"):
                    pairs = [ratio(a.rate, b.rate) for a, b in zip(runs[name], runs["llama_cpp_python"])]
                    res[name]["x_llama_cpp_python_paired"] = median(pairs)
                    res[name]["x_llama_cpp_python_rounds"] = pairs
                res["own_time"] = _own_time({name: paths[name] for name in OWN_TIME_PATHS},
                                            lambda p: p.decode(tokens, case.tokens, sampler, cfg), setup.own_rounds)
                same = runs["raw"][-1].text == runs["lmsext_api"][-1].text
                res["same_text_raw_vs_lmsext"] = same
                model_out["samplers"][sampler] = res
        finally:
            raw.close()
            cc.close()
            client.llm.unload(ident)
        out["models"][case.key] = model_out
    return out


#: The paths whose own time per token (outside llama.cpp's decode and sampling) is measured.
OWN_TIME_PATHS = ("raw", "lmsext_api", "lmsext_magic")


def _own_time(paths: dict[str, Any], run: Callable[[Any], Any], rounds: int) -> dict[str, Any]:
    """Per path: native µs per token (llama_decode + sampling), its own µs per token outside them, and
    the ratio to the raw loop that the difference in own time implies for this model's native time:
    (native + own_raw) / (native + own_path), with the raw loop's native time."""
    timer = NativeTimer()
    with timer:
        found = interleave({name: (lambda p=p: run(p)) for name, p in paths.items()}, rounds, warmup=0)
    splits = {name: [x for x in map(timer.split, runs) if x is not None] for name, runs in found.items()}
    out: dict[str, Any] = {}
    for name, xs in splits.items():
        if xs:
            out[name] = {"native_us": 1e6 * median([a for a, _ in xs]), "own_us": 1e6 * median([b for _, b in xs])}
    if "raw" in out:
        native, own_raw = out["raw"]["native_us"], out["raw"]["own_us"]
        for name, r in out.items():
            r["extra_us"] = r["own_us"] - own_raw
            r["implied_x_raw"] = (native + own_raw) / (native + r["own_us"])
    return out


# ------------------------------------------------------------------------------ 2. front-end traffic

#: messages that carry streamed text (the rest — display updates — carry none while a view streams)
TEXT_MESSAGES = ("stream", "comm_msg")


def _set_clock(view: Any, clock: Callable[[], float]) -> bool:
    done = False
    for target in (view, getattr(view, "widget", None)):
        if target is not None and hasattr(target, "clock"):
            target.clock = clock
            done = True
    return done


def _traffic(messages: list, t_start: float, t_finish: float, text_bytes: int,
             fed: list[tuple[float, int]] | None = None) -> dict[str, Any]:
    """Messages caused by the fragments: after the view opened, before its final update.

    ``fed``: (time, bytes fed so far) per fragment; a message's *excess* is its size minus the new text
    it can carry: for text messages (stdout ``stream``, widget ``comm_msg``) the text fed since the
    previous message of its kind — a few dozen to a few hundred bytes of envelope when only the delta
    is sent, up to the whole text so far when everything is resent; a display update (the plain view's
    live stats line) carries no new text: its whole size.
    """
    during = [m for m in messages if t_start < m.t < t_finish]
    excess = []
    if fed:
        import bisect
        times_fed = [t for t, _ in fed]
        prev: dict[str, int] = {}
        for m in during:
            if m.kind not in TEXT_MESSAGES:
                excess.append(m.nbytes)
                continue
            k = bisect.bisect_right(times_fed, m.t)
            upto = fed[k - 1][1] if k else 0
            excess.append(m.nbytes - (upto - prev.get(m.kind, 0)))
            prev[m.kind] = upto
    times = [m.t for m in during]
    gaps = [b - a for a, b in zip(times, times[1:])]
    span = times[-1] - times[0] if len(times) > 1 else 0.0
    streamed = sum(m.nbytes for m in during)
    final = [m for m in messages if m.t >= t_finish]
    return {
        "messages": len(during),
        # one message per interval: (n - 1) intervals over the time between the first and the last
        "messages_per_s": (len(during) - 1) / span if span > 0 else None,
        "min_gap_ms": 1000 * min(gaps) if gaps else None,
        "bytes_per_message_median": statistics.median(m.nbytes for m in during) if during else None,
        "bytes_per_message_max": max((m.nbytes for m in during), default=None),
        "bytes_streamed": streamed, "text_bytes": text_bytes,
        # ~1 when each message carries only the new text; grows with the stream when it carries all of it
        "payload_per_text_byte": streamed / text_bytes if text_bytes else None,
        "final_messages": len(final), "final_bytes": sum(m.nbytes for m in final),
        "max_excess_bytes": max(excess) if excess else None,
        "kinds": sorted({m.kind for m in messages}),
        "messages_by_kind": {kind: sum(m.kind == kind for m in during) for kind in sorted({m.kind for m in during})},
    }


class _KernelStdout(io.TextIOBase):
    """``sys.stdout`` as ipykernel's ``OutStream`` sends it: one ``stream`` message (recorded in ``capture``)
    per flush, carrying what was written since the last one — on ``flush()``, or ``FLUSH_INTERVAL`` after
    a write left text unflushed (ipykernel's own timer; checked at the next write or flush)."""

    FLUSH_INTERVAL = 0.2

    def __init__(self, capture: FrontEndCapture) -> None:
        super().__init__()
        self.capture = capture
        self.buffer_text = ""
        self.since = 0.0

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        if self.buffer_text and self.capture.clock() - self.since >= self.FLUSH_INTERVAL:
            self.flush()
        if not self.buffer_text:
            self.since = self.capture.clock()
        self.buffer_text += text
        return len(text)

    def flush(self) -> None:
        if self.buffer_text:
            text, self.buffer_text = self.buffer_text, ""
            self.capture.record("stream", {"name": "stdout", "text": text})


class _Timed:
    """Wraps a view's start/feed/finish to timestamp them (after start, before finish) and count text."""

    def __init__(self, view: Any, clock: Callable[[], float]) -> None:
        self.view, self.clock = view, clock
        self.t_start = self.t_finish = 0.0
        self.text_bytes = 0
        self.fed: list[tuple[float, int]] = []
        start, feed, finish = view.start, view.feed, view.finish

        def timed_start() -> None:
            start()
            self.t_start = clock()

        def timed_feed(text: str) -> None:
            self.text_bytes += len(text.encode("utf-8"))
            self.fed.append((clock(), self.text_bytes))
            feed(text)

        def timed_finish(result: Any) -> None:
            self.t_finish = clock()
            finish(result)

        view.start, view.feed, view.finish = timed_start, timed_feed, timed_finish


@contextlib.contextmanager
def timed_views(magics: Any, capture: FrontEndCapture) -> Iterator[list[_Timed]]:
    """While inside: every stream view the magics make is timed (appended to the yielded list) and stdout
    goes out as ipykernel's per-flush ``stream`` messages into ``capture``."""
    original = type(magics)._view
    views: list[_Timed] = []

    def _view(this=magics):
        view = original(this)
        views.append(_Timed(view, time.perf_counter))
        return view

    magics._view = _view
    stdout, sys.stdout = sys.stdout, _KernelStdout(capture)
    try:
        yield views
    finally:
        sys.stdout = stdout
        magics.__dict__.pop("_view", None)


def measured_stream(shell: Any, capture: FrontEndCapture, views: list[_Timed], cell_for: Callable[[int], str],
                    tokens: int) -> dict[str, Any]:
    """Run ``cell_for(16)`` (a warm-up), then ``cell_for(tokens)``: the front-end traffic of the second
    stream (:func:`_traffic`) with its token count, tok/s, duration and view class."""
    for n in (16, tokens):
        views.clear()
        capture.clear()
        run = shell.run_cell(cell_for(n), store_history=False)
        if run.error_in_exec is not None:
            raise RuntimeError(f"{cell_for(n).split(chr(10))[0]} failed: {run.error_in_exec}")
    timed = views[-1]
    result = shell.user_ns["_lm"]
    res = _traffic(capture.messages, timed.t_start, timed.t_finish, timed.text_bytes, timed.fed)
    res.update(tokens=result.stats.predicted_tokens_count, tok_s=result.stats.tokens_per_second,
               stream_seconds=timed.t_finish - timed.t_start, view=type(timed.view).__name__)
    return res


def frontend(setup: Setup) -> dict[str, Any]:
    """What a 2,000-token ``%%lm_respond`` stream sends to the front end, per stream view (the widget
    a Jupyter kernel gets, and the plain view with ``LMMagics.widgets = 'off'``: stdout ``stream``
    messages and a live stats line); then the same view fed at simulated token rates."""
    from lmsext import magics as magics_module

    shell = setup.get_shell()
    magics = magics_module.get_magics(shell)
    case = setup.for_section("frontend")[0]
    client = magics.client
    n = setup.frontend_tokens
    _load(client, case, "bench-frontend", context_length=n + 256)
    capture = setup.capture
    variants = {"plain": False}
    if magics.has_trait("widgets"):
        variants["widget"] = True
    out: dict[str, Any] = {"tokens": n, "model": case.label, "views": {}}
    original = type(magics)._view
    try:
        with timed_views(magics, capture) as views:
            for name, widgets in variants.items():
                setup.log(f"  front end: %%lm_respond into the {name} view, {n}-token stream")
                magics.display_mode = "rich"
                if magics.has_trait("widgets"):
                    magics.widgets = "on" if widgets else "off"
                cell = f"%%lm_respond --no-history --model bench-frontend\n{DECODE_PROMPT}"

                def run_with(tokens: int) -> str:
                    magics.default_prediction_config = {**SAMPLERS["greedy"], "maxTokens": tokens}
                    return cell
                res = measured_stream(shell, capture, views, run_with, n)
                # the same view at simulated token rates: its clock advanced 1/rate per fragment, 5 simulated
                # seconds each; the capture timestamps with the same clock
                rates = {}
                for rate in (30, 300, 3_000, 30_000):
                    fake = [0.0]
                    fake_clock = lambda: fake[0]  # noqa: E731
                    v = original(magics)
                    if not _set_clock(v, fake_clock):
                        break
                    capture.clear()
                    capture.clock = fake_clock
                    try:
                        tv = _Timed(v, fake_clock)
                        v.start()
                        for _ in range(int(rate * 5.0)):
                            fake[0] += 1.0 / rate
                            v.feed(" word")
                        tv.t_finish = fake[0] + 1e-9
                        sys.stdout.flush()  # what a view left unflushed (ipykernel's timer): counted as streamed
                    finally:
                        capture.clock = time.perf_counter
                    sim = _traffic(capture.messages, tv.t_start, tv.t_finish, tv.text_bytes, tv.fed)
                    rates[str(rate)] = {k: sim[k] for k in ("messages", "messages_per_s", "min_gap_ms",
                                                            "bytes_per_message_median", "payload_per_text_byte",
                                                            "max_excess_bytes")}
                res["simulated_rates"] = rates
                out["views"][name] = res
    finally:
        client.llm.unload("bench-frontend")
    return out


# ------------------------------------------------------------------------------ 3. time to first token

SYSTEM_NAMES = ["Anna", "Boris", "Clara", "Dmitri", "Elena", "Farid", "Greta", "Hugo", "Ines", "Jonas", "Kira",
                "Lars", "Mona", "Nils", "Olga", "Pavel", "Quinn", "Rosa", "Sven", "Tara"]


def ttft_messages(i: int) -> list[dict[str, str]]:
    """The i-th prompt: ~70 tokens that differ from the others from their first word (no prefix reuse)."""
    name = SYSTEM_NAMES[i % len(SYSTEM_NAMES)]
    system = (f"{name} is a storyteller who writes short, happy stories for small children about animals, "
              f"friends and the park. {name} uses simple words and short sentences.")
    return [{"role": "system", "content": system}, {"role": "user", "content": "Tell me a story about a red ball."}]


def ttft(setup: Setup) -> dict[str, Any]:
    """Seconds from the request to the first token's text, same prompt, cold cache for every path."""
    out: dict[str, Any] = {"models": {}}
    client = _client()
    for case in setup.for_section("ttft"):
        reps = case.ttft_reps
        llm = _load(client, case, f"bench-ttft-{case.key}")
        params = llm.load_result.llama_params
        context = _latency_context(setup, params["context"])
        threads = _latency_config(setup)
        raw = RawLoop(case.path, params["model"], context)
        cc = LlamaCppPython(case.path, context)
        template = llm.engine.chat_template
        prompt_tokens = len(llm.engine.render_prompt(ttft_messages(0))[0])
        counters = {"raw": 0, "lmsext_api": 0, "llama_cpp_python": 0}

        def nxt(name: str) -> list[dict[str, str]]:
            counters[name] += 1
            return ttft_messages(counters[name])

        def lmsext_first() -> float:
            messages = nxt("lmsext_api")
            t0 = time.perf_counter()
            stream = llm.respond_stream(messages, {**SAMPLERS["greedy"], **threads, "maxTokens": 1})
            for _ in stream:
                t = time.perf_counter() - t0
                break
            else:
                t = time.perf_counter() - t0
            stream.close()
            return t

        paths = {"raw": lambda: raw.first_token(template.render(nxt("raw"))),
                 "lmsext_api": lmsext_first,
                 "llama_cpp_python": lambda: cc.first_token(template.render(nxt("llama_cpp_python")))}
        setup.log(f"  time to first token {case.key}: {reps} rounds")
        try:
            runs = interleave(paths, reps)
        finally:
            raw.close()
            cc.close()
            client.llm.unload_all()
        res = {name: summary_stats(v) for name, v in runs.items()}
        res["prompt_tokens"] = prompt_tokens
        res["threads"], res["threads_batch"] = context["n_threads"], context["n_threads_batch"]
        res["delta_ms"] = 1000 * (res["lmsext_api"]["median"] - res["raw"]["median"])
        res["delta_ms_paired"] = 1000 * statistics.median(a - b for a, b in zip(runs["lmsext_api"], runs["raw"]))
        out["models"][case.key] = res
    return out


# ------------------------------------------------------------------------------ 4. load

def _forget_metadata() -> None:
    """Drop lmsext's per-file metadata caches: the next load is a file's first load in the process."""
    from lmsext.engine import gguf_info

    gguf_info._parsed.cache_clear()
    try:
        from lmsext.engine import validate
    except ImportError:
        return
    getattr(validate, "_cache", {}).clear()


def load(setup: Setup) -> dict[str, Any]:
    """Load time: %lm_load / client.llm.load vs a bare Llama(...) and the raw C API; JIT hits."""
    from llama_cpp import Llama

    shell = setup.get_shell()
    from lmsext import magics as magics_module
    client = magics_module.get_magics(shell).client
    out: dict[str, Any] = {"models": {}}
    for case in setup.for_section("load"):
        key = case.load_key
        probe = client.llm.load(key, config={"contextLength": case.context_length}, identifier="bench-probe")
        params = probe.load_result.llama_params
        client.llm.unload("bench-probe")
        kwargs = llama_kwargs(params["context"])

        def bare() -> float:
            t0 = time.perf_counter()
            m = Llama(str(case.path), **kwargs, verbose=False)
            t = time.perf_counter() - t0
            m.close()
            return t

        def raw() -> float:
            t0 = time.perf_counter()
            r = RawLoop(case.path, params["model"], params["context"])
            t = time.perf_counter() - t0
            r.close()
            return t

        def api() -> float:
            t0 = time.perf_counter()
            m = client.llm.load(key, config={"contextLength": case.context_length}, identifier="bench-load")
            t = time.perf_counter() - t0
            client.llm.unload(m)
            return t

        def api_cold() -> float:
            _forget_metadata()
            return api()

        def magic() -> float:
            t0 = time.perf_counter()
            res = shell.run_cell(f"%lm_load {key} --new --identifier bench-magic --context-length "
                                 f"{case.context_length}", store_history=False)
            t = time.perf_counter() - t0
            if res.error_in_exec is not None:
                raise RuntimeError(f"%lm_load failed: {res.error_in_exec}")
            client.llm.unload("bench-magic")
            return t

        setup.log(f"  load {case.key}: {setup.reps_small} rounds")
        runs = interleave({"llama_cpp_python": bare, "raw": raw, "lmsext_api": api, "lmsext_magic": magic,
                           "lmsext_api_cold": api_cold}, setup.reps_small)
        res: dict[str, Any] = {name: summary_stats(v) for name, v in runs.items()}
        for name in ("lmsext_api", "lmsext_magic", "lmsext_api_cold"):
            res[name]["delta_ms"] = 1000 * (res[name]["median"] - res["llama_cpp_python"]["median"])
            res[name]["delta_ms_paired"] = 1000 * statistics.median(
                a - b for a, b in zip(runs[name], runs["llama_cpp_python"]))
        # JIT hits on the loaded instance
        llm = client.llm.model(key, config={"contextLength": case.context_length})
        hits = []
        for _ in range(200):
            t0 = time.perf_counter()
            client.llm.model(key)
            hits.append(time.perf_counter() - t0)
        with_cfg = []
        for _ in range(50):
            t0 = time.perf_counter()
            client.llm.model(key, config={"contextLength": case.context_length})
            with_cfg.append(time.perf_counter() - t0)
        magic_hits = []
        for _ in range(20):
            t0 = time.perf_counter()
            shell.run_cell(f"%lm_load {key}", store_history=False)
            magic_hits.append(time.perf_counter() - t0)
        res["jit_hit_api"] = summary_stats(hits)
        res["jit_hit_api_with_config"] = summary_stats(with_cfg)
        res["jit_hit_magic"] = summary_stats(magic_hits)
        client.llm.unload(llm)
        out["models"][case.key] = res
    return out


# ------------------------------------------------------------------------------ 5. multi-turn chat

CHAT_MESSAGE = "Tell me one more short thing about the little dog and his red ball in the park."


def multiturn(setup: Setup) -> dict[str, Any]:
    """Time to first token at each turn of a growing chat (KV prefix reuse), against the raw loop doing
    the same work (same cached prefix, same new tokens) and a raw full-prompt prefill (no reuse)."""
    out: dict[str, Any] = {"message": CHAT_MESSAGE, "models": {}}
    for case in setup.for_section("multiturn"):
        out["models"][case.key] = _multiturn(setup, case)
    return out


def _multiturn(setup: Setup, case: ModelCase) -> dict[str, Any]:
    import lmsext

    client = _client()
    ctx = 2048
    llm = _load(client, case, "bench-chat", context_length=ctx)
    params = llm.load_result.llama_params
    context = _latency_context(setup, params["context"])
    threads = _latency_config(setup)
    raw = RawLoop(case.path, params["model"], context)
    template = llm.engine.chat_template
    reps, turns, reply = case.chats, setup.turns, case.reply_tokens
    show = sorted({t for t in (1, 5, 10, 20, turns) if t <= turns})
    per_turn: dict[int, list[float]] = {t: [] for t in range(1, turns + 1)}
    raw_full: dict[int, list[float]] = {t: [] for t in show}
    raw_same: dict[int, list[float]] = {t: [] for t in show}
    cached: dict[int, int] = {}
    prompt_len: dict[int, int] = {}
    setup.log(f"  multi-turn {case.key}: {turns} turns × {reps} chats")
    try:
        for rep in range(reps):
            llm.complete(f"{SYSTEM_NAMES[rep]} walked home.", {"maxTokens": 1, **threads})  # next chat starts cold
            chat = lmsext.Chat()
            for turn in range(1, turns + 1):
                chat.add_user_message(CHAT_MESSAGE)
                gc.collect()
                t0 = time.perf_counter()
                stream = llm.respond_stream(chat, {**SAMPLERS["greedy"], **threads, "maxTokens": reply})
                first = None
                for _ in stream:
                    if first is None:
                        first = time.perf_counter() - t0
                result = stream.result()
                per_turn[turn].append(first if first is not None else time.perf_counter() - t0)
                cached[turn] = result.stats.cached_prompt_tokens_count
                prompt_len[turn] = result.stats.prompt_tokens_count
                if turn in show:
                    tokens = llm.engine.render_prompt(chat.messages)[0]
                    raw_same[turn].append(raw.first_token_reusing(tokens, cached[turn]))
                    if rep < 2:  # a full prefill of the whole history is slow on a big model: twice is enough
                        raw_full[turn].append(raw.first_token(template.render(chat.messages)))
                chat.add_assistant_response(result.content)
    finally:
        raw.close()
        client.llm.unload_all()
    # lmsext and the raw loop measured back to back at the same turn of the same chat: paired
    # differences and per-chat turn-N/turn-1 ratios hold up better on a busy machine than medians do
    paired = {t: [a - b for a, b in zip(per_turn[t][:len(raw_same[t])], raw_same[t])] for t in show}
    res: dict[str, Any] = {
        "turns": {str(t): {"ttft": summary_stats(per_turn[t]), "prompt_tokens": prompt_len[t],
                           "cached_tokens": cached[t], "new_tokens": prompt_len[t] - cached[t],
                           "raw_full_prefill": summary_stats(raw_full[t]), "raw_same_reuse": summary_stats(raw_same[t])}
                  for t in show},
        "label": case.label, "max_tokens_per_reply": reply, "n_ctx": ctx, "chats": reps, "last_turn": turns,
        "threads": context["n_threads"], "threads_batch": context["n_threads_batch"]}
    res["last_over_first"] = median([ratio(a, b) for a, b in zip(per_turn[turns], per_turn[1])])
    # llama.cpp's own growth: the raw loop doing the same work (same cached prefix, same new tokens)
    res["raw_same_reuse_last_over_first"] = median([ratio(a, b) for a, b in zip(raw_same[turns], raw_same[1])])
    res["overhead_ms"] = {str(t): 1000 * median(paired[t]) for t in show if paired[t]}
    return res


# ------------------------------------------------------------------------------ 6. memory

def memory(setup: Setup) -> dict[str, Any]:
    """RSS over load → short prediction → unload cycles."""
    out: dict[str, Any] = {"models": {}}
    client = _client()
    for case in setup.for_section("memory"):
        key = case.load_key
        setup.log(f"  memory {case.key}: {setup.cycles} load/predict/unload cycles")
        rss = []
        for i in range(setup.cycles + 1):
            m = client.llm.load(key, config={"contextLength": case.context_length}, identifier="bench-mem")
            m.respond(DECODE_PROMPT, {"maxTokens": 16, "seed": i})
            client.llm.unload(m)
            del m
            gc.collect()
            rss.append(rss_bytes())
        base = rss[0]  # after one warm-up cycle: imports, allocator pools, llama.cpp's one-time state
        out["models"][case.key] = {
            "cycles": setup.cycles, "rss_after_warmup_mb": base / 2**20,
            "rss_after_last_mb": rss[-1] / 2**20, "growth_mb": (rss[-1] - base) / 2**20,
            "max_growth_mb": (max(rss) - base) / 2**20, "rss_mb": [round(r / 2**20, 1) for r in rss]}
    return out


SECTIONS: dict[str, Callable[[Setup], dict[str, Any]]] = {
    "decode": decode, "frontend": frontend, "ttft": ttft, "load": load, "multiturn": multiturn, "memory": memory}
