"""Interrupting a real Jupyter kernel (jupyter_client + ipykernel) while lmsext works.

One kernel, one loaded model: 20 interrupts while llama.cpp processes a long prompt (one batch, so
only llama.cpp's abort callback can stop it early) and 20 while it generates. Every time the cell
completes normally with a result whose stop reason is ``userStopped`` (the partial text kept: it is
the start of the temperature-0 continuation), and the next prediction matches a fresh one at
temperature 0 — the KV cache stayed consistent. Nothing from llama.cpp reaches the cell's stderr.
"""

from __future__ import annotations

import json
import os
import random
import statistics
import time
from pathlib import Path

import pytest

jupyter_client = pytest.importorskip("jupyter_client")

N_PROMPT = 20
N_GENERATION = 20
REPO = Path(__file__).resolve().parents[1]

SETUP = r"""
import json, time
import lmsext
from lmsext import synth
GREEDY = {"temperature": 0}
path = synth.random_model(n_params_target=6_000_000)
m = lmsext.Client().llm.load(str(path), config={"contextLength": 4096, "evalBatchSize": 4096})
assert m.load_result.config["eval_batch_size"] == 4096  # the whole prompt is ONE llama_decode call
LONG = "the dog and the cat went to the park and played with a ball . " * 240
PROBE = "Once upon a time there was a"
t0 = time.perf_counter()
full = m.complete(LONG, config={**GREEDY, "maxTokens": 1})
T_FULL = time.perf_counter() - t0
REF_PROBE = m.complete(PROBE, config={**GREEDY, "maxTokens": 8}).content
for SHORT in ("Once upon a time", "The little dog", "Hello there", "One day the cat", "Tom and Lily"):
    REF_GEN = m.complete(SHORT, config={**GREEDY, "maxTokens": 500})
    if REF_GEN.stats.stop_reason == "maxPredictedTokensReached":
        break
REF_GEN = REF_GEN.content

def report(r, t_call, **extra):
    seconds, returned_at = time.perf_counter() - t_call, time.time()
    probe = m.complete(PROBE, config={**GREEDY, "maxTokens": 8})
    print("RESULT " + json.dumps({
        "stop": r.stats.stop_reason, "n": r.stats.predicted_tokens_count, "content": r.content,
        "seconds": seconds, "returned_at": returned_at, "probe": probe.content,
        "probe_ok": probe.content == REF_PROBE, **extra}), flush=True)

print("SETUP " + json.dumps({"t_full": T_FULL, "prompt_tokens": full.stats.prompt_tokens_count,
                             "ref_gen_tokens": 500, "short": SHORT}), flush=True)
"""

PROMPT_CELL = r"""
print("PROMPT", flush=True)
t_call = time.perf_counter()
r = m.complete(LONG, config={**GREEDY, "maxTokens": 5})
report(r, t_call)
"""

GENERATION_CELL = r"""
t_call = time.perf_counter()
r = m.complete(SHORT, config={**GREEDY, "maxTokens": False, "contextOverflowPolicy": "rollingWindow"},
               on_first_token=lambda: print("GENERATING", flush=True))
report(r, t_call, prefix_ok=REF_GEN.startswith(r.content) or r.content.startswith(REF_GEN))
"""


class Kernel:
    """A real ipykernel driven through jupyter_client."""

    def __init__(self) -> None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
        self.km = jupyter_client.KernelManager(kernel_name="python3")
        self.km.start_kernel(env=env)
        self.kc = self.km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=60)
        self.stderr: list[str] = []

    def run(self, code: str, on_stdout=None, timeout: float = 120) -> tuple[list[str], dict]:
        """Execute ``code``; returns (stdout lines, execute_reply content). ``on_stdout(text)`` sees output live."""
        msg_id = self.kc.execute(code)
        lines: list[str] = []
        deadline = time.monotonic() + timeout
        while True:
            msg = self.kc.get_iopub_msg(timeout=max(deadline - time.monotonic(), 0.1))
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            kind, content = msg["msg_type"], msg["content"]
            if kind == "stream":
                if content["name"] == "stderr":
                    self.stderr.append(content["text"])
                else:
                    lines += content["text"].splitlines()
                    if on_stdout is not None:
                        on_stdout(content["text"])
            elif kind == "error":
                self.stderr.append(f"{content['ename']}: {content['evalue']}")
            elif kind == "status" and content["execution_state"] == "idle":
                break
        reply = self.kc.get_shell_msg(timeout=max(deadline - time.monotonic(), 5))
        return lines, reply["content"]

    def interrupt_after(self, marker: str, delay: float):
        """An ``on_stdout`` callback that interrupts the kernel ``delay`` s after ``marker`` is printed."""
        state: dict[str, float] = {}

        def on_stdout(text: str) -> None:
            if marker in text and "at" not in state:
                time.sleep(delay)
                state["at"] = time.time()
                self.km.interrupt_kernel()
        return on_stdout, state

    def close(self) -> None:
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=True)


@pytest.fixture(scope="module")
def kernel(stories_path):
    k = Kernel()
    try:
        lines, reply = k.run(SETUP, timeout=300)
        assert reply["status"] == "ok", k.stderr
        k.setup = json.loads(next(line for line in lines if line.startswith("SETUP "))[6:])
        yield k
    finally:
        k.close()


def _result(lines: list[str]) -> dict:
    return json.loads(next(line for line in lines if line.startswith("RESULT "))[7:])


def test_interrupts_during_prompt_processing_abort_the_batch(kernel):
    t_full = kernel.setup["t_full"]
    assert kernel.setup["prompt_tokens"] > 3500 and t_full > 0.3
    span = min(t_full, 0.6)  # the machine may be quicker later than during the setup: stay early in the prompt
    rng = random.Random(1)
    latencies, fractions = [], []
    for i in range(N_PROMPT):
        on_stdout, fired = kernel.interrupt_after("PROMPT", rng.uniform(0.1, 0.4) * span)
        lines, reply = kernel.run(PROMPT_CELL, on_stdout)
        assert reply["status"] == "ok", (i, reply, kernel.stderr)  # no KeyboardInterrupt escaped into the cell
        r = _result(lines)
        assert r["stop"] == "userStopped" and r["n"] == 0 and r["content"] == "", (i, r)
        assert r["probe_ok"], (i, r)  # the next prediction = a fresh run at temperature 0
        latency = r["returned_at"] - fired["at"]
        # the whole prompt is one llama_decode call and the interrupt came early in it: returning long
        # before the rest of it could have run is the abort callback stopping it mid-batch
        assert latency < 0.5 * t_full, (i, r, latency, t_full)
        latencies.append(latency)
        fractions.append(r["seconds"] / t_full)
    print(f"\nprompt interrupts: {N_PROMPT}/{N_PROMPT} userStopped; full prompt {t_full:.2f} s; stopped at "
          f"{statistics.median(fractions):.0%} (median) of it; interrupt → result median "
          f"{statistics.median(latencies) * 1000:.0f} ms, max {max(latencies) * 1000:.0f} ms")
    assert statistics.median(latencies) < min(0.25 * t_full, 0.5)


def test_interrupts_during_generation_keep_the_partial_text(kernel):
    rng = random.Random(2)
    counts, latencies = [], []
    for i in range(N_GENERATION):
        on_stdout, fired = kernel.interrupt_after("GENERATING", rng.uniform(0.02, 0.12))
        lines, reply = kernel.run(GENERATION_CELL, on_stdout)
        assert reply["status"] == "ok", (i, reply, kernel.stderr)
        r = _result(lines)
        assert r["stop"] == "userStopped" and r["n"] >= 1, (i, r)
        assert r["prefix_ok"], (i, r)  # the partial text is the temperature-0 continuation, kept
        assert r["probe_ok"], (i, r)
        counts.append(r["n"])
        latencies.append(r["returned_at"] - fired["at"])
    print(f"\ngeneration interrupts: {N_GENERATION}/{N_GENERATION} userStopped after {min(counts)}–{max(counts)} "
          f"tokens; interrupt → result median {statistics.median(latencies) * 1000:.0f} ms")


def test_nothing_reached_the_cells_stderr(kernel):
    lines, reply = kernel.run("m.complete('Once', config={'maxTokens': 3}); m.unload(); print('done')")
    assert reply["status"] == "ok" and "done" in lines
    assert kernel.stderr == []
