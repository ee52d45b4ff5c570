"""``python -m benchmarks.parallel``: parallel predictions — lmsext's scheduler vs sequential vs llama.cpp's server.

For each model (stories260K, the 60 M F16 random model, the 1B-wide Q8_0 slice: ``benchmarks.common``) and each
count of concurrent streams (1, 2, 4, 8), the same work — N distinct greedy completions of T tokens — is done
side by side in one run, rounds interleaved:

* **lmsext** — the model loaded with ``maxParallelPredictions`` = the largest N (continuous batching, unified KV
  cache of N × the per-sequence context), N threads each calling ``LLM.complete``;
* **sequential** — the same N completions one after another on a ``maxParallelPredictions`` 1 instance;
* **llama.cpp server** — ``xllamacpp.Server`` in this process (llama.cpp's own server with its slots: the same
  model file, ``n_parallel`` = the largest N, the same n_ctx, unified KV, the same thread counts), N threads each
  calling ``handle_completions`` with a streaming callback. Skipped (with a line saying so) when ``xllamacpp``
  is not installed (``pip install -e .[bench]``).

Reported per cell: aggregate tok/s (all generated tokens / wall time), per-stream tok/s (median of each stream's
tokens / its own time from first to last token) and median time to first token (from submission, queue included).
Then the single-stream check: lmsext's scheduler with one stream vs the raw C-API loop (``benchmarks.paths.RawLoop``)
on the same model, interleaved. Targets (verdicts in ``results["targets"]``): on the 1B-wide slice, aggregate at 4
streams ≥ 0.95× llama.cpp's server and ≥ 1.3× one stream; single stream ≥ 0.97× the raw loop. ``--quick``: small
counts, no verdicts (``met`` None), no docs. Writes ``benchmarks/results/parallel.json`` and, unless quick, the table into
``docs/performance.md`` between its ``parallel`` markers.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from .common import HERE, RESULTS_DIR, compute_bound_model, machine, stories_path, wide_model, write_between_markers

DOC = HERE.parent / "docs" / "performance.md"
DOC_START, DOC_END = "<!-- parallel:start -->", "<!-- parallel:end -->"
STARTS = ["Once upon a time", "The little dog", "Lily and Tom went", "One day a bird", "Sam had a red ball",
          "The sun was hot", "A big cat sat", "Mia found a box", "The old tree", "Ben and his mom"]
TARGET_VS_SERVER, TARGET_VS_ONE, TARGET_VS_RAW = 0.95, 1.3, 0.97


@dataclass
class Case:
    """One model: its label, file, tokens per stream, per-sequence context."""

    key: str
    label: str
    path: Path
    tokens: int
    ctx_per_seq: int = 512


@dataclass
class Run:
    """One cell: N streams of one path."""

    tokens: int
    wall: float
    per_stream: list[float]
    ttft: list[float]

    @property
    def aggregate(self) -> float:
        return self.tokens / self.wall if self.wall > 0 else 0.0


def prompts(n: int, round_no: int) -> list[str]:
    """N distinct prompts, different in every round (no server-side prompt cache hit across rounds)."""
    return [f"{STARTS[i % len(STARTS)]} {round_no}-{i}" for i in range(n)]


def _threads(fn: Callable[[int], tuple[int, float, float]], n: int) -> Run:
    out: list[Any] = [None] * n
    t0 = time.perf_counter()

    def work(i: int) -> None:
        out[i] = fn(i)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    return Run(sum(o[0] for o in out), wall, [o[1] for o in out], [o[2] for o in out])


def lmsext_run(llm: Any, texts: list[str], tokens: int) -> Run:
    """N threads, each one ``complete`` on the parallel instance."""
    def one(i: int) -> tuple[int, float, float]:
        r = llm.complete(texts[i], config={"temperature": 0, "maxTokens": tokens})
        st = r.stats
        return st.predicted_tokens_count, st.tokens_per_second or 0.0, st.time_to_first_token_sec or 0.0
    return _threads(one, len(texts))


def sequential_run(llm: Any, texts: list[str], tokens: int) -> Run:
    """The same completions one after another (time to first token counts the wait for the earlier ones)."""
    t0 = time.perf_counter()
    total, speeds, ttft = 0, [], []
    for text in texts:
        r = llm.complete(text, config={"temperature": 0, "maxTokens": tokens})
        total += r.stats.predicted_tokens_count
        speeds.append(r.stats.tokens_per_second or 0.0)
        ttft.append(time.perf_counter() - t0 - (r.stats.generation_time_sec or 0.0))
    return Run(total, time.perf_counter() - t0, speeds, ttft)


def server_run(server: Any, texts: list[str], tokens: int) -> Run:
    """N threads, each one streamed ``handle_completions`` on llama.cpp's server."""
    def one(i: int) -> tuple[int, float, float]:
        times: list[float] = []
        t0 = time.perf_counter()

        def chunk(_c: Any) -> bool:
            times.append(time.perf_counter())
            return False
        server.handle_completions({"prompt": texts[i], "n_predict": tokens, "temperature": 0, "stream": True,
                                   "ignore_eos": False, "cache_prompt": True}, chunk)
        n = max(len(times) - 1, 0)  # the last chunk is the final (empty) one
        speed = (n - 1) / (times[n - 1] - times[0]) if n > 1 else 0.0
        return n, speed, (times[0] - t0) if times else 0.0
    return _threads(one, len(texts))


@contextlib.contextmanager
def quiet_stderr() -> Iterator[None]:
    """Send fd 2 to /dev/null (llama.cpp's server logs every slot event there)."""
    saved = os.dup(2)
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


def start_server(path: Path, n_parallel: int, n_ctx: int, plan: dict[str, Any]) -> Any:
    """``xllamacpp.Server`` with lmsext's plan's thread counts, or None when xllamacpp is missing."""
    try:
        import xllamacpp
    except ImportError:
        return None
    p = xllamacpp.CommonParams()
    p.model.path = str(path)
    p.n_parallel = n_parallel
    p.n_ctx = n_ctx
    p.n_batch = plan["n_batch"]
    p.kv_unified = True
    p.cpuparams.n_threads = plan["n_threads"]
    p.cpuparams_batch.n_threads = plan["n_threads_batch"]
    p.warmup = True
    with quiet_stderr():
        return xllamacpp.Server(p)


def measure_case(client: Any, case: Case, counts: list[int], rounds: int, log: Callable[[str], None]) -> dict:
    """Every path at every stream count for one model, rounds interleaved (order rotated)."""
    n_max = max(counts)
    n_ctx = case.ctx_per_seq * n_max
    par = client.llm.load(str(case.path), config={"contextLength": n_ctx, "maxParallelPredictions": n_max},
                          identifier=f"{case.key}-par")
    seq = client.llm.load(str(case.path), config={"contextLength": case.ctx_per_seq}, identifier=f"{case.key}-seq")
    plan = par.engine.plan.context_params
    server = start_server(case.path, n_max, n_ctx, plan)
    if server is None:
        log("  llama.cpp server: xllamacpp is not installed (pip install -e .[bench]): its column is skipped")
    paths: dict[str, Callable[[list[str]], Run]] = {
        "lmsext": lambda t: lmsext_run(par, t, case.tokens),
        "sequential": lambda t: sequential_run(seq, t, case.tokens)}
    if server is not None:
        paths["llama.cpp server"] = lambda t: server_run(server, t, case.tokens)
    out: dict[str, dict[str, list[Run]]] = {name: {} for name in paths}
    try:
        with quiet_stderr():
            for name, fn in paths.items():  # warm-up
                fn(prompts(1, -1))
        for r in range(rounds):
            for n in counts:
                names = list(paths)
                k = (r + n) % len(names)
                for name in names[k:] + names[:k]:
                    with quiet_stderr():
                        out[name].setdefault(str(n), []).append(paths[name](prompts(n, r * 100 + n)))
            log(f"  round {r + 1}/{rounds} done")
        single = raw_vs_scheduler(par, case, rounds)
    finally:
        par.unload()
        seq.unload()
        del server
    return {"label": case.label, "tokens": case.tokens, "ctx_per_seq": case.ctx_per_seq,
            "cells": {name: {n: summarize(runs) for n, runs in cells.items()} for name, cells in out.items()},
            "single_stream": single}


def summarize(runs: list[Run]) -> dict[str, float]:
    return {"aggregate": statistics.median(r.aggregate for r in runs),
            "per_stream": statistics.median(statistics.median(r.per_stream) for r in runs),
            "ttft_ms": 1000 * statistics.median(statistics.median(r.ttft) for r in runs)}


def raw_vs_scheduler(par: Any, case: Case, rounds: int) -> dict[str, float]:
    """One stream through lmsext's scheduler vs the raw C-API loop on the same context, interleaved."""
    from .paths import RawLoop
    handle = par.engine
    plan = handle.plan.context_params
    raw = RawLoop(None, {}, {"n_threads": plan["n_threads"], "n_threads_batch": plan["n_threads_batch"]},
                  engine=handle)
    tokens = max(case.tokens, 64)
    text = STARTS[0]
    speeds: dict[str, list[float]] = {"raw": [], "lmsext": []}
    try:
        for r in range(max(rounds, 3) * 2):
            order = ["raw", "lmsext"] if r % 2 == 0 else ["lmsext", "raw"]
            for name in order:
                if name == "raw":
                    with handle.use():
                        run = raw.decode(raw.tokenize(text), tokens, "greedy")
                    speeds["raw"].append(run.rate or 0.0)
                else:
                    speeds["lmsext"].append(_stream_rate(par, text, tokens))
    finally:
        raw.close()
    raw_s, lms_s = statistics.median(speeds["raw"]), statistics.median(speeds["lmsext"])
    return {"raw_tok_s": raw_s, "lmsext_tok_s": lms_s, "ratio": lms_s / raw_s if raw_s else None}


def _stream_rate(llm: Any, text: str, tokens: int) -> float:
    """Tokens per second between the first and the last fragment, as the consumer sees them (as RawLoop.rate)."""
    times = [time.perf_counter() for _ in llm.complete_stream(text, config={"temperature": 0, "maxTokens": tokens,
                                                                              "repeatPenalty": False})]
    return (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 and times[-1] > times[0] else 0.0


def verdicts(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets, each with ``met`` True / False / None (not measured)."""
    out = []
    wide = results["models"].get("wide")
    if wide is not None:
        cells = wide["cells"]
        lms4 = cells["lmsext"].get("4", {}).get("aggregate")
        lms1 = cells["lmsext"].get("1", {}).get("aggregate")
        srv4 = cells.get("llama.cpp server", {}).get("4", {}).get("aggregate")
        out.append(_target("1B-wide: lmsext aggregate at 4 streams / llama.cpp server", lms4, srv4, TARGET_VS_SERVER))
        out.append(_target("1B-wide: lmsext aggregate at 4 streams / 1 stream", lms4, lms1, TARGET_VS_ONE))
    for key, model in results["models"].items():
        single = model["single_stream"]
        out.append(_target(f"{key}: single stream, scheduler / raw loop", single["lmsext_tok_s"], single["raw_tok_s"],
                           TARGET_VS_RAW))
    return out


def _target(name: str, a: float | None, b: float | None, target: float) -> dict[str, Any]:
    ratio = a / b if a and b else None
    return {"name": name, "ratio": ratio, "target": target, "met": None if ratio is None else ratio >= target}


def table(results: dict[str, Any]) -> str:
    """Markdown: one row per model and stream count, the three paths side by side, then the verdicts."""
    lines = [f"Measured {results['machine']['date']} on {results['machine']['cpu']} ({results['machine']['cores']} "
             f"cores), load average {results['machine']['loadavg_start']} at the start; greedy, distinct prompts.", "",
             "| model | streams | lmsext agg tok/s | sequential agg | llama.cpp server agg | lmsext / server | "
             "per-stream tok/s (lmsext / server) | TTFT ms (lmsext / sequential / server) |",
             "|---|---|---|---|---|---|---|---|"]
    for model in results["models"].values():
        cells = model["cells"]
        for n in cells["lmsext"]:
            lms, seq = cells["lmsext"][n], cells["sequential"][n]
            srv = cells.get("llama.cpp server", {}).get(n)
            ratio = f"{lms['aggregate'] / srv['aggregate']:.2f}×" if srv and srv["aggregate"] else "—"
            lines.append(
                f"| {model['label']} | {n} | {lms['aggregate']:.1f} | {seq['aggregate']:.1f} | "
                f"{srv['aggregate']:.1f} | {ratio} | {lms['per_stream']:.1f} / {srv['per_stream']:.1f} | "
                f"{lms['ttft_ms']:.0f} / {seq['ttft_ms']:.0f} / {srv['ttft_ms']:.0f} |" if srv else
                f"| {model['label']} | {n} | {lms['aggregate']:.1f} | {seq['aggregate']:.1f} | — | — | "
                f"{lms['per_stream']:.1f} / — | {lms['ttft_ms']:.0f} / {seq['ttft_ms']:.0f} / — |")
    lines += ["", "| target | ratio | needed | met |", "|---|---|---|---|"]
    for t in results["targets"]:
        ratio = f"{t['ratio']:.2f}" if t["ratio"] is not None else "—"
        met = {True: "yes", False: "**no**", None: "not measured"}[t["met"]]
        lines.append(f"| {t['name']} | {ratio} | ≥ {t['target']} | {met} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.parallel", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small counts, stories260K and the wide slice only")
    parser.add_argument("--streams", default="1,2,4,8", help="concurrent stream counts (comma-separated)")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 3, quick 1)")
    parser.add_argument("--models", default=None, help="comma-separated of stories,f16,wide (default all)")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "parallel.json", help="where the JSON goes")
    args = parser.parse_args(argv)
    import lmsext
    counts = [int(x) for x in args.streams.split(",")]
    rounds = args.rounds or (1 if args.quick else 3)
    wanted = (args.models or ("stories,wide" if args.quick else "stories,f16,wide")).split(",")
    cases = {"stories": lambda: Case("stories", "stories260K", stories_path(), 24 if args.quick else 200),
             "f16": lambda: Case("f16", "60 M F16", compute_bound_model(60_000_000, "f16"), 16 if args.quick else 64),
             "wide": lambda: Case("wide", "1B-wide Q8_0 slice", wide_model("q8_0"), 8 if args.quick else 32)}
    results: dict[str, Any] = {"machine": machine(), "streams": counts, "rounds": rounds, "models": {}}
    client = lmsext.Client()
    for key in wanted:
        case = cases[key]()
        print(f"{case.label}: {counts} streams × {case.tokens} tokens, {rounds} round(s)", flush=True)
        results["models"][key] = measure_case(client, case, counts, rounds, print)
    results["machine"]["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    results["targets"] = verdicts(results)
    if args.quick:  # a smoke run: too short to judge
        for target in results["targets"]:
            target["met"] = None
    text = table(results)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1))
    if not args.quick:
        write_between_markers(DOC, DOC_START, DOC_END, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
