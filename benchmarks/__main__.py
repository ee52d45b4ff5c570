"""``python -m benchmarks``: run the suite, print the tables, write results/latest.json and RESULTS.md.

Options: ``--quick`` (a smoke run: few tokens, one round, stories260K only), ``--sections decode,ttft``,
``--reps N``, ``--no-synth`` (skip the generated compute-bound model), ``--docs`` (also replace
the tables in docs/performance.md, the documentation's performance page), ``--out FILE``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from . import report
from .common import (HERE, RESULTS_DIR, WIDE_SHAPE, compute_bound_model, machine, stories_path, wide_model,
                     write_between_markers)

DOCS_START = "<!-- benchmarks:start -->"
DOCS_END = "<!-- benchmarks:end -->"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="smoke run: few tokens, one round, stories260K only")
    p.add_argument("--sections", default="decode,frontend,ttft,load,multiturn,memory",
                   help="comma-separated subset of: decode, frontend, ttft, load, multiturn, memory")
    p.add_argument("--reps", type=int, default=None, help="rounds per measurement (default 7; 5 on the big model)")
    p.add_argument("--no-synth", action="store_true", help="skip the generated compute-bound model")
    p.add_argument("--no-wide", action="store_true", help="skip the generated 1B-wide model (multi-turn)")
    p.add_argument("--synth-params", type=int, default=60_000_000, help="size of the generated model")
    p.add_argument("--synth-dtype", default="f16", choices=("f16", "q8_0"))
    p.add_argument("--latency-threads", default="1",
                   help="threads for the time-to-first-token and multi-turn sections: a number, or 'plan' for "
                        "lmsext's load plan (default 1: steadier on a shared machine)")
    p.add_argument("--out", type=Path, default=None,
                   help="JSON results file (default benchmarks/results/latest.json; quick.json with --quick)")
    p.add_argument("--markdown", type=Path, default=None,
                   help="Markdown report (default benchmarks/RESULTS.md; not written by --quick)")
    p.add_argument("--docs", "--readme", dest="docs", action="store_true",
                   help="also put the tables into docs/performance.md (the documentation's performance page)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.out is None:
        args.out = RESULTS_DIR / ("quick.json" if args.quick else "latest.json")
    from . import sections as S

    t_start = time.perf_counter()
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    quick = args.quick
    reps = args.reps or (1 if quick else 7)
    stories = stories_path()
    every = ("decode", "frontend", "ttft", "load", "multiturn", "memory")
    cases = [S.ModelCase("stories260K", "stories260K", stories, 1024, 64 if quick else 900, reps,
                         roles=every, model_key="stories260K", chats=1 if quick else 5, ttft_reps=1 if quick else 15)]
    if not quick:
        # create_completion detokenizes the whole completion on every token: compare at a short length too
        cases.append(S.ModelCase("stories260K@200", "stories260K", stories, 1024, 200, reps, roles=("decode",),
                                 model_key="stories260K"))
    if not (quick or args.no_synth):
        t0 = time.perf_counter()
        path = compute_bound_model(args.synth_params, args.synth_dtype)
        log(f"compute-bound model: {path} ({path.stat().st_size / 1e6:.0f} MB, {time.perf_counter() - t0:.1f} s)")
        key = f"synth{round(args.synth_params / 1e6)}M-{args.synth_dtype}"
        label = f"random {args.synth_params / 1e6:.0f}M {args.synth_dtype}"
        big_reps = args.reps or 11
        cases.append(S.ModelCase(key, label, path, 1024, 128, big_reps,
                                 roles=("decode", "ttft", "load", "multiturn", "memory"), chats=4, reply_tokens=16,
                                 ttft_reps=7))
        # one decode thread: no thread synchronisation, so other processes on a shared machine disturb less
        cases.append(S.ModelCase(f"{key}@1thread", label, path, 1024, 128, args.reps or 11, threads=1,
                                 roles=("decode",)))
    if not (quick or args.no_wide):
        # multi-turn on a model as wide as a 1B one: there the weights, not the attention over the cache,
        # dominate a turn's prefill, as on the models people chat with
        path = wide_model()
        w = WIDE_SHAPE
        label = (f"1B-wide slice (n_embd {w['n_embd']}, n_ff {w['n_ff']}, {w['n_head']}/{w['n_head_kv']} heads, "
                 f"{w['n_layer']} layers, q8_0)")
        cases.append(S.ModelCase("wide2L-q8_0", label, path, 1024, 16, 1, roles=("multiturn",), chats=5,
                                 reply_tokens=16))
    setup = S.Setup(cases=cases, samplers=["greedy", "lmstudio"], reps_small=reps if quick else max(reps, 7),
                    frontend_tokens=200 if quick else 2000, turns=5 if quick else 20,
                    cycles=3 if quick else 20, log=log)
    if quick:
        setup.reps_small = 1
        setup.own_rounds = 1
    setup.latency_threads = None if args.latency_threads == "plan" else int(args.latency_threads)
    results: dict = {"machine": machine(), "command": "python -m benchmarks " + " ".join(argv or sys.argv[1:]),
                     "sections": {}}
    wanted = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = [s for s in wanted if s not in S.SECTIONS]
    if unknown:
        raise SystemExit(f"unknown section(s) {unknown}; choose from {list(S.SECTIONS)}")
    try:
        for name in wanted:
            log(f"[{name}]")
            load0, t0 = _loadavg(), time.perf_counter()
            results["sections"][name] = S.SECTIONS[name](setup)
            results["sections"][name]["_run"] = {"seconds": time.perf_counter() - t0, "loadavg_start": load0,
                                                 "loadavg_end": _loadavg()}
    finally:
        setup.capture.uninstall()
    try:
        results["machine"]["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        pass
    results["seconds"] = time.perf_counter() - t_start
    results["targets"] = report.targets(results)
    if args.quick:  # one short round: a smoke run, not a measurement
        for target in results["targets"]:
            target["met"] = None
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1, default=str))
    text = report.markdown(results)
    print(text)
    if not args.quick:
        md = args.markdown or HERE / "RESULTS.md"
        md.write_text("# Benchmark results (latest run)\n\nWritten by `bash scripts/bench.sh` "
                      "(`python -m benchmarks`); raw numbers in `benchmarks/results/latest.json` (not committed).\n\n"
                      + text + "\n")
        log(f"wrote {args.out} and {md}")
        if args.docs:
            update_docs(text)
    else:
        log(f"wrote {args.out}")
    return results


def _loadavg() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def update_docs(text: str) -> None:
    """Replace what is between the benchmark markers in docs/performance.md with ``text``."""
    page = HERE.parent / "docs" / "performance.md"
    if not write_between_markers(page, DOCS_START, DOCS_END, text):
        print(f"{page} has no {DOCS_START} … {DOCS_END} markers; not updated", file=sys.stderr)


if __name__ == "__main__":
    main()
