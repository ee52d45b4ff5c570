"""``python -m benchmarks.contention``: decode and prefill under CPU contention, side by side in one run.

For each model (stories260K, the generated 60 M F16 model, the generated ~250 M model with a
151,936-token vocabulary) and each load condition (quiet, 1 and 2 competing busy processes that
this benchmark starts and stops itself, each bounded in time and killed in a ``finally``), it runs
interleaved rounds (order rotated and reversed every other round) of every thread setting — ``cpuThreads`` 1…N, lmsext's default (no
``cpuThreads``: the load plan and the adaptive decode threads) and llama-cpp-python's default
(``Llama()`` with its own thread defaults) — and reports decode tok/s, the time to first token of a
1,000-token prompt, and per-round ratios. It also times the sampler chain per token on the
large-vocabulary model (LM Studio's default samplers, the repeat penalty over the whole vocabulary
vs over the top candidates) and the next-token-distribution view.

Verdicts are machine-readable (``results["targets"]``: ``met`` True / False / None = not judged):
a target is met when the first quartile of the per-round ratios reaches it, missed when the third
quartile does not. ``--quick``: stories260K only, quiet and 1 busy process, one round (a smoke run:
no verdicts). Writes ``benchmarks/results/contention.json`` and, unless quick, the table into
``docs/performance.md`` (between its ``contention`` markers).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .common import (HERE, LARGE_VOCAB, RESULTS_DIR, SAMPLERS, compute_bound_model, large_vocab_model,
                     llama_cpp_sampling, machine, stories_path, write_between_markers)

DOC = HERE.parent / "docs" / "performance.md"
DOC_START, DOC_END = "<!-- contention:start -->", "<!-- contention:end -->"
#: A competing process: a Python busy loop that ends by itself after argv[1] seconds.
BUSY_CODE = "import sys, time\nend = time.monotonic() + float(sys.argv[1])\nwhile time.monotonic() < end:\n    pass\n"
PROMPT = "Once upon a time there was a little girl named Lily. She liked to play in the park with her friends"
LLAMA_CPP_PYTHON = "llama-cpp-python default"
DEFAULT = "lmsext default"
#: Targets: (name, condition, what, threshold)
TARGETS = (("default decode ≥ 0.9× the best cpuThreads (1 busy process)", "busy1", "x_best", 0.9),
           ("default decode ≥ 1.0× llama-cpp-python's default (1 busy process)", "busy1", "x_llama", 1.0),
           ("default decode ≥ 0.95× the best cpuThreads (quiet)", "quiet", "x_best", 0.95))
SAMPLER_SHARE_TARGET = 0.10
#: Pause before each run, so the previous run's threads are gone from the CPUs.
SETTLE_S = 0.3


@dataclass
class Case:
    """One model of the benchmark."""

    key: str
    path: Path
    tokens: int  # decode tokens per run
    prefill: int  # prompt tokens of the prefill measurement (0 = none)
    n_ctx: int = 2048
    params: str = ""
    prefill_rounds: int = 2


@dataclass
class Competitors:
    """``n`` busy processes, each ending by itself after ``seconds`` (and killed on exit)."""

    n: int
    seconds: float
    procs: list[subprocess.Popen] = field(default_factory=list)

    def __enter__(self) -> "Competitors":
        for _ in range(self.n):
            self.procs.append(subprocess.Popen([sys.executable, "-c", BUSY_CODE, str(self.seconds)],
                                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        time.sleep(0.3 if self.n else 0)  # let them reach their loop
        return self

    def __exit__(self, *exc: Any) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
        for p in self.procs:
            p.wait(5)
        self.procs.clear()


def _loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def _quartiles(values: list[float]) -> tuple[float, float]:
    if len(values) < 2:
        return values[0], values[0]
    q = statistics.quantiles(values, n=4, method="inclusive")
    return q[0], q[2]


def _median(values: list[float]) -> float | None:
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


# ------------------------------------------------------------------------------ one run of each kind

def _lmsext_decode(llm: Any, tokens: int, threads: int | None, cap_s: float) -> dict[str, Any]:
    cfg = {**SAMPLERS["lmstudio"], "maxTokens": tokens}
    if threads is not None:
        cfg["cpuThreads"] = threads
    t_call = time.perf_counter()
    stamps: list[float] = []
    stream = llm.complete_stream(PROMPT, cfg)
    for frag in stream:
        if frag.tokens_count:
            stamps.append(time.perf_counter())
            if stamps[-1] - stamps[0] > cap_s:
                llm.stop()
    result = stream.result()
    return _rates(t_call, stamps) | {"threads": result.stats.threads}


def _llama_decode(lcp: Any, tokens: int, cap_s: float) -> dict[str, Any]:
    t_call = time.perf_counter()
    stamps: list[float] = []
    for _ in lcp.create_completion(PROMPT, max_tokens=tokens, stream=True, **llama_cpp_sampling("lmstudio")):
        stamps.append(time.perf_counter())
        if stamps[-1] - stamps[0] > cap_s:
            break
    return _rates(t_call, stamps)


def _rates(t_call: float, stamps: list[float]) -> dict[str, Any]:
    n = len(stamps)
    rate = (n - 1) / (stamps[-1] - stamps[0]) if n > 1 and stamps[-1] > stamps[0] else None
    return {"tok_s": rate, "tokens": n, "ttft": stamps[0] - t_call if stamps else None}


def _prefill_text(llm: Any, n_tokens: int, tag: int) -> str:
    words = ("the little dog ran to the park and saw a big red ball . " * 400).split()
    text = f"{tag} " + " ".join(words)
    toks = llm.engine.tokenize(text)
    return llm.engine.detokenize(toks[1:n_tokens] if llm.engine.add_bos else toks[:n_tokens])


def _lmsext_prefill(llm: Any, text: str, threads: int | None) -> float:
    cfg: dict[str, Any] = {"maxTokens": 1, "temperature": 0}
    if threads is not None:
        cfg["cpuThreads"] = threads
    return llm.complete(text, cfg).stats.time_to_first_token_sec


def _llama_prefill(lcp: Any, text: str) -> float:
    t0 = time.perf_counter()
    for _ in lcp.create_completion(text, max_tokens=1, stream=True, temperature=0.0):
        break
    return time.perf_counter() - t0


# ------------------------------------------------------------------------------ one model

def run_case(case: Case, conditions: list[int], rounds: int, cpus: int, cap_s: float,
             log: Any, prefill_rounds: int = 2) -> dict[str, Any]:
    """Every thread setting × condition for one model, interleaved rounds."""
    import lmsext
    from llama_cpp import Llama

    client = lmsext.Client()
    llm = client.llm.load(str(case.path), config={"contextLength": case.n_ctx}, identifier=f"bench-{case.key}")
    lcp = Llama(str(case.path), n_ctx=llm.engine.n_ctx, n_batch=llm.engine.n_batch, n_gpu_layers=0, verbose=False)
    settings: list[tuple[str, Any]] = [(f"cpuThreads {n}", n) for n in range(1, cpus + 1)]
    settings += [(DEFAULT, None), (LLAMA_CPP_PYTHON, "lcp")]
    out: dict[str, Any] = {"params": case.params, "n_vocab": llm.engine.n_vocab, "decode_tokens": case.tokens,
                           "prefill_tokens": case.prefill, "plan": dict(llm.load_result.config),
                           "llama_cpp_python_threads": [lcp.context_params.n_threads, lcp.context_params.n_threads_batch],
                           "conditions": {}}
    tag = 0
    try:
        for busy in conditions:
            cond = "quiet" if busy == 0 else f"busy{busy}"
            log(f"  {case.key}: {cond}")
            runs: dict[str, list[dict[str, Any]]] = {name: [] for name, _ in settings}
            prefill: dict[str, list[float]] = {name: [] for name, _ in settings}
            load0 = _loadavg()
            t0 = time.perf_counter()
            with Competitors(busy, seconds=600):
                for name, n in settings:  # warm-up (also lets the adaptive threads see this condition)
                    if n == "lcp":
                        _llama_decode(lcp, 8, cap_s)
                    else:
                        _lmsext_decode(llm, 8, n, cap_s)
                for r in range(rounds):
                    # rotate, and reverse every other round: a run slows the one after it (a 2-thread run
                    # under contention leaves its process behind in the scheduler's accounting), so no
                    # setting may always follow the same one
                    k = r // 2 % len(settings)
                    order = settings[k:] + settings[:k]
                    for name, n in (order[::-1] if r % 2 else order):
                        time.sleep(SETTLE_S)
                        if n == "lcp":
                            runs[name].append(_llama_decode(lcp, case.tokens, cap_s))
                        else:
                            runs[name].append(_lmsext_decode(llm, case.tokens, n, cap_s))
                        if case.prefill and r < prefill_rounds:
                            tag += 1
                            text = _prefill_text(llm, case.prefill, tag)
                            prefill[name].append(_llama_prefill(lcp, text) if n == "lcp"
                                                 else _lmsext_prefill(llm, text, n))
            res = _condition_result(settings, runs, prefill)
            res.update(loadavg_start=load0, loadavg_end=_loadavg(), seconds=round(time.perf_counter() - t0, 1))
            out["conditions"][cond] = res
    finally:
        lcp.close()
        llm.unload()
    return out


def _condition_result(settings: list[tuple[str, Any]], runs: dict[str, list[dict[str, Any]]],
                      prefill: dict[str, list[float]]) -> dict[str, Any]:
    rows: dict[str, Any] = {}
    for name, _ in settings:
        rates = [r["tok_s"] for r in runs[name]]
        rows[name] = {"tok_s": _median(rates), "rounds": rates, "tokens": [r["tokens"] for r in runs[name]],
                      "ttft_s": _median([r["ttft"] for r in runs[name]]),
                      "prefill_s": _median(prefill[name]), "prefill_rounds": prefill[name]}
        if name == DEFAULT:
            rows[name]["threads"] = [r.get("threads") for r in runs[name]]
    fixed = [name for name, n in settings if isinstance(n, int)]
    best = max(fixed, key=lambda nm: rows[nm]["tok_s"] or 0)
    best_prefill = min(fixed, key=lambda nm: rows[nm]["prefill_s"] or float("inf"))
    per_round_best = [d / b if d and b else None for d, b in zip(rows[DEFAULT]["rounds"], rows[best]["rounds"])]
    per_round_llama = [d / b if d and b else None
                       for d, b in zip(rows[DEFAULT]["rounds"], rows[LLAMA_CPP_PYTHON]["rounds"])]
    for name in rows:
        rows[name]["x_best"] = (rows[name]["tok_s"] or 0) / rows[best]["tok_s"] if rows[best]["tok_s"] else None
        rows[name]["x_llama"] = ((rows[name]["tok_s"] or 0) / rows[LLAMA_CPP_PYTHON]["tok_s"]
                                 if rows[LLAMA_CPP_PYTHON]["tok_s"] else None)
        ps = rows[name]["prefill_s"]
        rows[name]["prefill_x_best"] = rows[best_prefill]["prefill_s"] / ps if ps and rows[best_prefill]["prefill_s"] else None
    return {"settings": rows, "best": best, "best_prefill": best_prefill,
            "rounds_x_best": per_round_best, "rounds_x_llama": per_round_llama}


# ------------------------------------------------------------------------------ sampler cost

def sampler_cost(path: Path, reps: int, token_ms: float | None, log: Any) -> dict[str, Any]:
    """Time the sampler chain per token (LM Studio defaults; penalties over the whole vocabulary vs the
    top candidates) and the next-token-distribution view on one model."""
    import llama_cpp

    import lmsext
    from lmsext.engine.sampling import SamplerChain, SamplingSettings

    client = lmsext.Client()
    llm = client.llm.load(str(path), config={"contextLength": 1024}, identifier="bench-sampler")
    try:
        engine = llm.engine
        cfg = dict(SAMPLERS["lmstudio"])
        view_times = []
        for _ in range(max(reps // 4, 2)):
            t0 = time.perf_counter()
            llm.next_token_distribution(PROMPT, cfg)
            view_times.append(time.perf_counter() - t0)
        tokens = engine.tokenize(PROMPT)
        settings = SamplingSettings.resolve(lmsext.PredictionConfig.parse(cfg), None, None)
        # the view left this prompt's logits in the context: sample from them, penalty window = the prompt
        chains = {"full vocabulary": SamplerChain(engine.vocab, engine.n_vocab, settings, tokens, prefilter=False),
                  "top candidates": SamplerChain(engine.vocab, engine.n_vocab, settings, tokens, prefilter=True)}
        times: dict[str, list[float]] = {k: [] for k in chains}
        picked: dict[str, list[int]] = {k: [] for k in chains}
        ctx = engine.ctx
        try:
            for i in range(reps):
                for name in (list(chains) if i % 2 == 0 else list(chains)[::-1]):
                    t0 = time.perf_counter()
                    tok = llama_cpp.llama_sampler_sample(chains[name].ptr, ctx, -1)
                    times[name].append(time.perf_counter() - t0)
                    picked[name].append(tok)
        finally:
            for c in chains.values():
                c.close()
        out: dict[str, Any] = {"n_vocab": engine.n_vocab, "token_ms": token_ms,
                               "view_ms": _median(view_times) * 1000,
                               "same_tokens": picked["full vocabulary"] == picked["top candidates"], "chain": {}}
        for name, ts in times.items():
            ms = _median(ts) * 1000
            out["chain"][name] = {"ms": ms, "share": ms / token_ms if token_ms else None,
                                  "rounds_ms": [t * 1000 for t in ts]}
        log("  sampler chain: " + ", ".join(f"{k} {v['ms']:.3f} ms" for k, v in out["chain"].items()))
        return out
    finally:
        llm.unload()


# ------------------------------------------------------------------------------ verdicts and report

def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Every target with its value, quartiles and ``met`` (True, False, or None = not judged)."""
    out = []
    for key, model in results["models"].items():
        for name, cond, what, thr in TARGETS:
            c = model["conditions"].get(cond)
            if not c:
                continue
            rounds = [v for v in c["rounds_x_best" if what == "x_best" else "rounds_x_llama"] if v is not None]
            value = c["settings"][DEFAULT][what]
            met = None
            q1 = q3 = None
            if rounds:
                q1, q3 = _quartiles(rounds)
                met = True if q1 >= thr else (False if q3 < thr else None)
            out.append({"target": name, "model": key, "condition": cond, "threshold": thr, "value": value,
                        "q1": q1, "q3": q3, "met": met, "verdict": _verdict(met)})
    s = results.get("sampler")
    if s:
        share = s["chain"]["top candidates"]["share"]
        out.append({"target": f"sampler chain ≤ {SAMPLER_SHARE_TARGET:.0%} of a token's time (large vocabulary)",
                    "model": s["model"], "condition": "quiet", "threshold": SAMPLER_SHARE_TARGET, "value": share,
                    "met": None if share is None else share <= SAMPLER_SHARE_TARGET,
                    "verdict": _verdict(None if share is None else share <= SAMPLER_SHARE_TARGET)})
    return out


def _verdict(met: bool | None) -> str:
    return {True: "met", False: "missed", None: "not judged"}[met]


def _f(v: Any, fmt: str = "{:,.1f}") -> str:
    return "—" if v is None else fmt.format(v)


def markdown(results: dict[str, Any]) -> str:
    """The measured table, the sampler cost and the verdicts."""
    m = results["machine"]
    lines = [f"Measured {m['date']} on {m['cpu']} ({m['cores']} CPUs, {results['physical_cores']} physical cores; "
             f"load average {m.get('loadavg_start')} at the start, {results.get('loadavg_end')} at the end), "
             f"llama-cpp-python {m['llama_cpp_python']}; `{results['command']}` in {results['seconds']:.0f} s. "
             "tok/s = medians of interleaved rounds (order rotated, reversed every other round); × = ratio of medians; "
             "prefill = time to first token of a 1,000-token prompt.", "",
             "| model | condition | setting | decode tok/s | × best cpuThreads | × llama-cpp-python | first token ms "
             "(short prompt) | prefill s | prefill × best |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for key, model in results["models"].items():
        first = True
        for cond, c in model["conditions"].items():
            label = f"{cond} (load {c['loadavg_start'][0] if c['loadavg_start'] else '?'})"
            for name, row in c["settings"].items():
                mark = " ★" if name == c["best"] else ""
                lines.append(f"| {key + ' ' + model['params'] if first else ''} | {label} | {name}{mark} | "
                             f"{_f(row['tok_s'])} | {_f(row['x_best'], '{:.2f}')} | {_f(row['x_llama'], '{:.2f}')} | "
                             f"{_f(row.get('ttft_s') and row['ttft_s'] * 1000)} | "
                             f"{_f(row['prefill_s'], '{:.2f}')} | {_f(row['prefill_x_best'], '{:.2f}')} |")
                first = False
                label = ""
    lines += ["", "★ = the fastest fixed `cpuThreads` setting in that condition. llama-cpp-python's default: "
              f"`Llama()` without thread arguments (n_threads, n_threads_batch = "
              f"{next(iter(results['models'].values()))['llama_cpp_python_threads']} here)."]
    s = results.get("sampler")
    if s:
        lines += ["", f"**Sampler chain per token** on {s['model']} ({s['n_vocab']:,}-token vocabulary, LM Studio "
                  f"defaults: repeat penalty 1.1 over the last 64 tokens, top-k 40, top-p 0.95, min-p 0.05, T 0.8; "
                  f"token time {_f(s['token_ms'], '{:.1f}')} ms):", "",
                  "| repeat penalty over | ms per token | share of a token |", "|---|---:|---:|"]
        for name, row in s["chain"].items():
            lines.append(f"| {name} | {_f(row['ms'], '{:.3f}')} | {_f(row['share'], '{:.1%}')} |")
        lines += ["", f"Same tokens drawn both ways: {s['same_tokens']}. Next-token-distribution view: "
                  f"{_f(s['view_ms'], '{:.1f}')} ms per call (decodes the last prompt token, then runs each stage "
                  "over the whole vocabulary)."]
    lines += ["", "**Targets**", "", "| target | model | value | quartiles of rounds | verdict |", "|---|---|---:|---|---|"]
    for t in results["targets"]:
        q = f"{t['q1']:.2f}–{t['q3']:.2f}" if t.get("q1") is not None else ""
        val = _f(t["value"], "{:.1%}" if "sampler" in t["target"] else "{:.2f}")
        lines.append(f"| {t['target']} | {t['model']} | {val} | {q} | {t['verdict']} |")
    return "\n".join(lines)


def update_doc(text: str, doc: Path = DOC) -> None:
    """Put ``text`` between the contention markers of docs/performance.md."""
    if not write_between_markers(doc, DOC_START, DOC_END, text):
        raise ValueError(f"{doc} has no {DOC_START} … {DOC_END} markers")


# ------------------------------------------------------------------------------ main

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.contention", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="smoke run: stories260K, quiet and 1 busy process, 1 round")
    p.add_argument("--rounds", type=int, default=None, help="rounds per condition (default 3)")
    p.add_argument("--models", default="stories260K,synth60M-f16,large-vocab-q8_0",
                   help="comma-separated subset of stories260K, synth60M-f16, large-vocab-q8_0")
    p.add_argument("--busy", default="0,1,2", help="numbers of competing busy processes (default 0,1,2)")
    p.add_argument("--out", type=Path, default=None, help="JSON results (default benchmarks/results/contention.json)")
    p.add_argument("--no-doc", action="store_true", help="do not write the table into docs/performance.md")
    p.add_argument("--render", type=Path, nargs="+", default=None,
                   help="measure nothing: merge these JSON results (models of separate runs) and print/write the table")
    return p.parse_args(argv)


def render(paths: list[Path], write_doc: bool) -> dict[str, Any]:
    """Merge the models (and the largest vocabulary's sampler result) of earlier runs, recompute the verdicts, report."""
    runs = [json.loads(p.read_text()) for p in paths]
    results = dict(runs[0])
    results["models"] = {k: v for r in runs for k, v in r["models"].items()}
    sampler = [r["sampler"] for r in runs if r.get("sampler")]
    if sampler:  # the largest vocabulary's
        results["sampler"] = max(sampler, key=lambda x: x["n_vocab"])
    results["command"] = " + ".join(r["command"] for r in runs)
    results["seconds"] = sum(r.get("seconds", 0) for r in runs)
    results["loadavg_end"] = runs[-1].get("loadavg_end")
    results["targets"] = targets(results)
    text = markdown(results)
    print(text)
    if write_doc:
        update_doc(text)
    return results


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark, print the table and verdicts, write the JSON (and the doc's table)."""
    from lmsext.engine.threads import available_cpus, physical_cores

    args = parse_args(argv)
    if args.render:
        return render(args.render, not args.no_doc)
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    t_start = time.perf_counter()
    quick = args.quick
    rounds = args.rounds or (1 if quick else 3)
    cpus = available_cpus()
    wanted = ["stories260K"] if quick else [m.strip() for m in args.models.split(",") if m.strip()]
    busy = [0, 1] if quick else [int(b) for b in args.busy.split(",")]
    cases = []
    for key in wanted:
        if key == "stories260K":
            cases.append(Case(key, stories_path(), 32 if quick else 256, 0, n_ctx=512, params="(0.3 M params)"))
        elif key == "synth60M-f16":
            cases.append(Case(key, compute_bound_model(60_000_000, "f16"), 64, 1000, params="(61.5 M params, F16)"))
        elif key == "large-vocab-q8_0":
            t0 = time.perf_counter()
            path = large_vocab_model()
            log(f"large-vocabulary model: {path} ({path.stat().st_size / 1e6:.0f} MB, {time.perf_counter() - t0:.0f} s)")
            cases.append(Case(key, path, 48, 1000, params=f"(~249 M params, {LARGE_VOCAB:,} tokens, Q8_0)",
                              prefill_rounds=1))
        else:
            raise SystemExit(f"unknown model {key!r}")
    results: dict[str, Any] = {"machine": machine(), "physical_cores": physical_cores(), "available_cpus": cpus,
                               "command": "python -m benchmarks.contention " + " ".join(argv if argv is not None
                                                                                        else sys.argv[1:]),
                               "models": {}}
    cap_s = 2.0 if quick else 3.0
    out = args.out or RESULTS_DIR / ("contention-quick.json" if quick else "contention.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    # SIGTERM (a stopped run) unwinds like an exception, so the busy processes are killed
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    for case in cases:
        log(f"[{case.key}]")
        results["models"][case.key] = run_case(case, busy, rounds, cpus, cap_s, log, case.prefill_rounds)
        out.write_text(json.dumps(results, indent=1, default=str))  # what is done so far survives a stop
    big = "large-vocab-q8_0" if "large-vocab-q8_0" in results["models"] else cases[-1].key
    quiet = results["models"][big]["conditions"].get("quiet")
    rate = quiet["settings"][DEFAULT]["tok_s"] if quiet else None
    path = next(c.path for c in cases if c.key == big)
    log("[sampler]")
    results["sampler"] = sampler_cost(path, 20 if quick else 200, 1000 / rate if rate else None, log)
    results["sampler"]["model"] = big
    results["loadavg_end"] = _loadavg()
    results["seconds"] = time.perf_counter() - t_start
    results["targets"] = targets(results)
    if quick:  # one short round: a smoke run, not a measurement
        for t in results["targets"]:
            t["met"], t["verdict"] = None, "not judged (quick)"
    out.write_text(json.dumps(results, indent=1, default=str))
    text = markdown(results)
    print(text)
    if not (quick or args.no_doc):
        update_doc(text)
        log(f"wrote {out} and {DOC}")
    return results


if __name__ == "__main__":
    main()
