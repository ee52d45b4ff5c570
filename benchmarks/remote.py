"""``python -m benchmarks.remote``: decoding through lmsext's remote engine vs the ``openai`` package, same server.

Starts lmsext's own REST server (``lmsext.serve``) in a separate process on a free loopback port with the embedded
model (stories260K) loaded, then decodes the same prompt, greedy (temperature 0), the same token count, in
interleaved rounds (order rotated every round) through

* **lmsext** — ``lmsext.Client(url).llm.model(...).complete_stream(...)`` consumed fragment by fragment, and
* **openai** — ``openai.OpenAI(base_url=url + "/v1").completions.create(..., stream=True)`` chunk by chunk,

and reports each one's tok/s (tokens over the seconds from the request to the last token, measured here) and the
median per-round ratio lmsext / openai (target ≥ 0.95). Then ``%%lm_complete`` on the connected server
(``%lm_connect``) through the plain stream view (``widgets = 'off'``) in a real InteractiveShell, with stdout sent
as ipykernel's ``OutStream`` would (one ``stream`` message per flush): the front end's messages per second while
it streams (target ≤ 20/s), counted as :mod:`benchmarks.sections` counts them.

Verdicts are machine-readable (``results["targets"]``: ``met`` True / False / None = not judged). ``--quick``: a
smoke run of 2 short rounds, no verdicts. Writes ``benchmarks/results/remote.json`` and, unless quick, the table
into ``docs/performance.md`` (between its ``remote`` markers).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

from .common import HERE, RESULTS_DIR, machine, write_between_markers

DOC = HERE.parent / "docs" / "performance.md"
DOC_START, DOC_END = "<!-- remote:start -->", "<!-- remote:end -->"
PROMPT = "Once upon a time, there was a little girl named Lily. She loved to play outside."
MODEL = "stories260K"
RATIO_TARGET = 0.95
MESSAGES_TARGET = 20.0
#: Seconds the server may take to answer after it is started.
START_TIMEOUT = 60.0


@contextlib.contextmanager
def lmsext_server() -> Iterator[str]:
    """lmsext's REST server in its own process on a free loopback port (killed afterwards; it also ends by itself)."""
    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code = f"import time, lmsext; lmsext.serve(port={port}); time.sleep(900)"
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if proc.poll() is not None:
                raise RuntimeError("lmsext's server exited at start-up")
            try:
                httpx.get(url + "/openapi.json", timeout=1.0)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"lmsext's server did not answer within {START_TIMEOUT:g} s") from None
                time.sleep(0.1)
        yield url
    finally:
        proc.kill()
        proc.wait(10)


def lmsext_decode(model: Any, tokens: int) -> dict[str, Any]:
    """One greedy ``complete_stream`` through the remote engine, consumed fragment by fragment."""
    t0 = time.perf_counter()
    last = t0
    stream = model.complete_stream(PROMPT, config={"temperature": 0, "maxTokens": tokens})
    for _ in stream:
        last = time.perf_counter()
    n = stream.result().stats.predicted_tokens_count
    return {"tokens": n, "seconds": last - t0, "tok_s": n / (last - t0) if last > t0 else None}


def openai_decode(client: Any, model_id: str, tokens: int) -> dict[str, Any]:
    """One greedy streamed completion through the ``openai`` package (tokens as the server's usage reports)."""
    t0 = time.perf_counter()
    last, n = t0, 0
    for chunk in client.completions.create(model=model_id, prompt=PROMPT, max_tokens=tokens, temperature=0,
                                           stream=True, stream_options={"include_usage": True}):
        if chunk.choices and chunk.choices[0].text:
            last = time.perf_counter()
        if chunk.usage is not None:
            n = chunk.usage.completion_tokens
    return {"tokens": n, "seconds": last - t0, "tok_s": n / (last - t0) if last > t0 else None}


def decode_rounds(url: str, model: Any, tokens: int, rounds: int) -> dict[str, Any]:
    """Interleaved rounds of both clients (order rotated); per-client medians and the per-round ratios."""
    import openai

    plain = openai.OpenAI(base_url=url + "/v1", api_key="x")
    paths = {"lmsext": lambda: lmsext_decode(model, tokens),
             "openai": lambda: openai_decode(plain, model.identifier, tokens)}
    for run in paths.values():  # warm-up: connections open, the prompt cached
        run()
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in paths}
    ratios = []
    names = list(paths)
    for r in range(rounds):
        order = names[r % 2:] + names[:r % 2]
        this = {name: paths[name]() for name in order}
        for name, res in this.items():
            runs[name].append(res)
        if this["lmsext"]["tok_s"] and this["openai"]["tok_s"]:
            ratios.append(this["lmsext"]["tok_s"] / this["openai"]["tok_s"])
    plain.close()
    return {"tokens": tokens, "rounds": rounds,
            "clients": {name: {"tok_s": statistics.median(x["tok_s"] for x in rs if x["tok_s"]),
                               "tokens": [x["tokens"] for x in rs]} for name, rs in runs.items()},
            "round_ratios": ratios, "ratio_median": statistics.median(ratios) if ratios else None}


def magic_messages(url: str, tokens: int) -> dict[str, Any]:
    """``%%lm_complete`` on the connected server through the plain stream view: the front end's messages."""
    from lmsext import magics as magics_module

    from .common import FrontEndCapture
    from .paths import make_shell
    from .sections import measured_stream, timed_views

    shell = make_shell()
    capture = FrontEndCapture().install(shell)
    magics = magics_module.get_magics(shell)
    try:
        with timed_views(magics, capture) as views:
            shell.run_line_magic("lm_connect", url)
            magics.display_mode = "rich"
            if magics.has_trait("widgets"):
                magics.widgets = "off"
            res = measured_stream(shell, capture, views, lambda n: (
                f"%%lm_complete --temperature 0 --max-tokens {n} --model {MODEL}\n{PROMPT}"), tokens)
            shell.run_line_magic("lm_connect", "local")
            return res
    finally:
        capture.uninstall()


def targets(results: dict[str, Any], quick: bool) -> list[dict[str, Any]]:
    """The two targets with their values and ``met`` (None when not judged: a quick run)."""
    ratio = results["decode"]["ratio_median"]
    rate = results["frontend"]["messages_per_s"]
    out = [{"target": f"lmsext remote decode ≥ {RATIO_TARGET}× the openai client's tok/s (median of rounds)",
            "threshold": RATIO_TARGET, "value": ratio, "met": None if ratio is None else ratio >= RATIO_TARGET},
           {"target": f"%%lm_complete on the server, plain view: ≤ {MESSAGES_TARGET:g} front-end messages/s",
            "threshold": MESSAGES_TARGET, "value": rate, "met": None if rate is None else rate <= MESSAGES_TARGET}]
    for t in out:
        if quick:
            t["met"] = None
        t["verdict"] = {True: "met", False: "missed", None: "not judged"}[t["met"]] + (" (quick)" if quick else "")
    return out


def _f(v: Any, fmt: str = "{:,.1f}") -> str:
    return "—" if v is None else fmt.format(v)


def markdown(results: dict[str, Any]) -> str:
    """The measured table and the verdicts."""
    m, d, fe = results["machine"], results["decode"], results["frontend"]
    lines = [f"Measured {m['date']} on {m['cpu']} ({m['cores']} CPUs), `{results['command']}` in "
             f"{results['seconds']:.0f} s: lmsext's REST server in its own process on loopback, {MODEL}, greedy, "
             f"{d['tokens']} tokens per run, {d['rounds']} interleaved rounds (order rotated). tok/s = tokens over the "
             "seconds from the request to the last token, measured in the client; medians of the rounds.", "",
             "| client | tok/s | × openai (median of per-round ratios) |", "|---|---:|---:|",
             f"| lmsext `RemoteEngine` (`complete_stream`) | {_f(d['clients']['lmsext']['tok_s'])} | "
             f"{_f(d['ratio_median'], '{:.3f}')} |",
             f"| `openai` package (`completions.create(stream=True)`) | {_f(d['clients']['openai']['tok_s'])} | 1 |", "",
             f"`%%lm_complete` through the plain stream view on the connected server: {fe['tokens']} tokens in "
             f"{fe['stream_seconds']:.2f} s, {fe['messages']} front-end messages ({_f(fe['messages_per_s'])}/s, "
             f"by kind {fe['messages_by_kind']}).", "",
             "| target | value | verdict |", "|---|---:|---|"]
    for t in results["targets"]:
        lines.append(f"| {t['target']} | {_f(t['value'], '{:.2f}')} | {t['verdict']} |")
    return "\n".join(lines)


def update_doc(text: str, doc: Path = DOC) -> None:
    """Put ``text`` between the remote markers of docs/performance.md."""
    if not write_between_markers(doc, DOC_START, DOC_END, text):
        raise ValueError(f"{doc} has no {DOC_START} … {DOC_END} markers")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.remote", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="smoke run: 2 rounds of 32 tokens, no verdicts")
    p.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 15, at least 7)")
    p.add_argument("--tokens", type=int, default=None, help="tokens per decode (default 200)")
    p.add_argument("--out", type=Path, default=None, help="JSON results (default benchmarks/results/remote.json)")
    p.add_argument("--no-doc", action="store_true", help="do not write the table into docs/performance.md")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark, print the table and verdicts, write the JSON (and the doc's table)."""
    import lmsext

    args = parse_args(argv)
    quick = args.quick
    rounds = args.rounds or (2 if quick else 15)
    if not quick and rounds < 7:
        raise SystemExit("--rounds: at least 7 for a measurement (or --quick)")
    tokens = args.tokens or (32 if quick else 200)
    t_start = time.perf_counter()
    results: dict[str, Any] = {"machine": machine(), "command": "python -m benchmarks.remote " + " ".join(
        argv if argv is not None else sys.argv[1:])}
    with lmsext_server() as url:
        client = lmsext.Client(url)
        model = client.llm.load(MODEL, config={"contextLength": 2048})
        results["server"] = client.describe_engine()
        results["decode"] = decode_rounds(url, model, tokens, rounds)
        results["frontend"] = magic_messages(url, 64 if quick else 1500)
        client.engine.close()
    results["seconds"] = time.perf_counter() - t_start
    results["targets"] = targets(results, quick)
    out = args.out or RESULTS_DIR / ("remote-quick.json" if quick else "remote.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1, default=str))
    text = markdown(results)
    print(text)
    if not (quick or args.no_doc):
        update_doc(text)
    return results


if __name__ == "__main__":
    main()
