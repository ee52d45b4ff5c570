"""``python -m benchmarks.gpu``: decode and prompt speed at GPU offload ratios 0, 0.5 and 1 (``scripts/gpu-check.sh``).

On a generated ~1B-parameter model (Llama-3.2-1B's widths — :data:`benchmarks.common.WIDE_SHAPE` — over
16 layers, random Q8_0 weights; ``--layers 2`` is the "1B-wide slice" of ``benchmarks.common.wide_model``),
for each ratio: the load time, what llama.cpp placed (layers on GPU, VRAM), time to first token and prompt
tokens/s on a ``--prompt``-token prompt, decode tokens/s of lmsext (``complete_stream``), the raw C-API loop
on lmsext's own context and llama-cpp-python's ``create_completion`` (greedy, ``--tokens`` tokens, the
median of ``--reps`` interleaved rounds), and how long a stop takes to end a long prompt batch (the abort
callback: polled per graph node on the CPU backend, between graph splits on a GPU). Writes a JSON
(``--out``) and prints a table; every figure is from one run, side by side.
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
from pathlib import Path
from typing import Any

from .common import SAMPLERS, WIDE_SHAPE, cache_dir, machine

RATIOS = (0.0, 0.5, 1.0)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.gpu", description=__doc__.splitlines()[0])
    p.add_argument("--layers", type=int, default=16, help="layers of the 1B-wide model (16 ≈ 1B parameters)")
    p.add_argument("--dtype", default="q8_0", choices=("q8_0", "f16"))
    p.add_argument("--prompt", type=int, default=512, help="prompt tokens for time to first token")
    p.add_argument("--tokens", type=int, default=128, help="tokens per decode run")
    p.add_argument("--reps", type=int, default=3, help="interleaved rounds per path")
    p.add_argument("--ratios", default=",".join(map(str, RATIOS)), help="comma-separated GPU offload ratios")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/gpu.json"))
    return p.parse_args(argv)


def model_path(layers: int, dtype: str) -> Path:
    """The generated model (cached in ``benchmarks/.cache``)."""
    from lmsext.synth import random_model
    folder = cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    return random_model(folder, dtype=dtype, shape={**WIDE_SHAPE, "n_layer": layers})


def prompt_text(llm: Any, n_tokens: int) -> str:
    """A prompt of about ``n_tokens`` tokens for this model's tokenizer."""
    words = "once upon a time there was a little robot who liked to read stories about the sea ".split()
    text = ""
    i = 0
    while len(llm.tokenize(text)) < n_tokens:
        text += " ".join(words[(i + k) % len(words)] for k in range(16)) + " "
        i += 1
    return text


def _lmsext_decode(llm: Any, prompt: str, n: int) -> float:
    stream = llm.complete_stream(prompt, config={**SAMPLERS["greedy"], "maxTokens": n})
    for _ in stream:
        pass
    return stream.result().stats.tokens_per_second or 0.0


def _raw_decode(llm: Any, prompt: str, n: int) -> float:
    from .paths import RawLoop
    handle = llm._loaded.handle  # the engine's own context: same weights, KV cache and placement
    loop = RawLoop(None, handle.plan.model_params, handle.plan.context_params, engine=handle)
    try:
        run = loop.decode(loop.tokenize(prompt), n, "greedy")
        return run.rate or 0.0
    finally:
        loop.close()


def _llama_cpp_python(path: Path, context_params: dict[str, Any], n_gpu_layers: int, flash: bool) -> Any:
    """``Llama`` with lmsext's context parameters, its layers on the GPU and flash attention as llama.cpp
    resolved it for lmsext (AUTO on a GPU)."""
    from llama_cpp import Llama
    from .paths import llama_kwargs
    return Llama(str(path), **{**llama_kwargs(context_params), "n_gpu_layers": n_gpu_layers, "flash_attn": flash},
                 verbose=False)


def _create_completion_decode(llama: Any, prompt: str, n: int) -> float:
    t_first = t_last = 0.0
    count = 0
    for _ in llama.create_completion(prompt, max_tokens=n, temperature=0.0, repeat_penalty=1.0, stream=True):
        t_last = time.perf_counter()
        if count == 0:
            t_first = t_last
        count += 1
    return (count - 1) / (t_last - t_first) if count > 1 and t_last > t_first else 0.0


def time_to_first_token(llm: Any, prompt: str) -> tuple[float, int]:
    """(seconds to the first token of ``prompt`` on an empty cache, prompt tokens)."""
    llm.complete("x", config={"maxTokens": 1})  # the cache then shares only BOS with the prompt
    t0 = time.perf_counter()
    result = llm.complete(prompt, config={**SAMPLERS["greedy"], "maxTokens": 1})
    return time.perf_counter() - t0, result.stats.prompt_tokens_count


def abort_latency(llm: Any, prompt: str, full: float) -> float:
    """Seconds from a stop (``PredictionStream.cancel``) a third into one long prompt batch to the result."""
    llm.complete("x", config={"maxTokens": 1})  # empty the prompt cache: the whole prompt is decoded
    stream = llm.complete_stream(prompt, config={"maxTokens": 1})
    stamp: list[float] = []

    def stop() -> None:
        stamp.append(time.perf_counter())
        stream.cancel()
    timer = threading.Timer(full / 3, stop)
    timer.start()
    for _ in stream:
        pass
    end = time.perf_counter()
    timer.cancel()
    return end - stamp[0] if stamp else 0.0


def run_ratio(client: Any, path: Path, ratio: float, args: argparse.Namespace) -> dict[str, Any]:
    """Every figure for one offload ratio (see the module docstring)."""
    t0 = time.perf_counter()
    llm = client.llm.load(str(path), config={"gpu": ratio, "contextLength": 2048}, identifier=f"gpu-{ratio}")
    load_s = time.perf_counter() - t0
    gpu = llm.load_result.config["gpu"]
    out: dict[str, Any] = {"ratio": ratio, "load_s": load_s, "layers_on_gpu": gpu["layers"],
                           "total_layers": gpu["total_layers"], "devices": gpu["devices"], "ram": gpu["ram"],
                           "flash_attention": llm.load_result.config["flash_attention"]}
    prompt = prompt_text(llm, args.prompt)
    ttfts = [time_to_first_token(llm, prompt) for _ in range(args.reps)]
    ttft = statistics.median(t for t, _ in ttfts)
    out.update(ttft_s=ttft, prompt_tokens=ttfts[0][1], prompt_tok_s=ttfts[0][1] / ttft)
    handle = llm._loaded.handle
    llama = _llama_cpp_python(path, handle.plan.context_params, handle.plan.model_params["n_gpu_layers"],
                              bool(out["flash_attention"]))
    rates: dict[str, list[float]] = {"lmsext": [], "raw": [], "create_completion": []}
    try:
        for _ in range(args.reps):  # interleaved: the three paths see the same machine state
            rates["lmsext"].append(_lmsext_decode(llm, "Once upon a time", args.tokens))
            rates["raw"].append(_raw_decode(llm, "Once upon a time", args.tokens))
            rates["create_completion"].append(_create_completion_decode(llama, "Once upon a time", args.tokens))
    finally:
        llama.close()
    out["decode_tok_s"] = {k: statistics.median(v) for k, v in rates.items()}
    out["abort_s"] = statistics.median(abort_latency(llm, prompt, ttft) for _ in range(args.reps))
    llm.unload()
    return out


def table(results: list[dict[str, Any]]) -> str:
    """The results as a Markdown table."""
    rows = ["| gpu ratio | layers on GPU | load s | first token s | prompt tok/s | decode tok/s lmsext / raw / "
            "create_completion | stop in a prompt batch ms |", "|---|---|---|---|---|---|---|"]
    for r in results:
        d = r["decode_tok_s"]
        rows.append(f"| {r['ratio']:g} | {r['layers_on_gpu']}/{r['total_layers']} | {r['load_s']:.2f} | "
                    f"{r['ttft_s']:.3f} | {r['prompt_tok_s']:.0f} | {d['lmsext']:.1f} / {d['raw']:.1f} / "
                    f"{d['create_completion']:.1f} | {r['abort_s'] * 1000:.0f} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import lmsext
    t0 = time.perf_counter()
    path = model_path(args.layers, args.dtype)
    timings = {"model_s": time.perf_counter() - t0}
    client = lmsext.Client()
    results = []
    try:
        for ratio in (float(r) for r in args.ratios.split(",")):
            t = time.perf_counter()
            results.append(run_ratio(client, path, ratio, args))
            timings[f"ratio_{ratio:g}_s"] = time.perf_counter() - t
    finally:
        client.llm.unload_all()
    report = {"machine": machine(), "model": {"path": path.name, "layers": args.layers, "dtype": args.dtype,
                                              "bytes": path.stat().st_size},
              "results": results, "timings": timings}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1, default=str))
    print(table(results))
    print("where the time went: " + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items()))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
