"""The native handles' lifetime rule (engine/model.py) and Ctrl-C during a load, each in a child process.

Unloading a model while another thread is inside llama.cpp with it (tokenizing 3,000,000 words, the
prompt of a completion, a chat rendered through its template, a next-token distribution, a
detokenize, a suspended stream) used to free the model under the running call: the process died
(SIGSEGV/SIGABRT). Each reproduction runs in its own child process; the test asserts the child exits
normally, the unloaded model's user ended with a clean ``ModelNotLoadedError`` (or finished), and the
other loaded model still gives its temperature-0 reply.

A Ctrl-C during a load used to be swallowed inside ctypes' callbacks (the load finished anyway): a
real SIGINT sent by the parent during the load of a generated model now aborts it, raises
``KeyboardInterrupt`` and leaves no half-loaded instance behind.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

CHILD = textwrap.dedent(r"""
    import json, sys, threading, time
    import lmsext
    from lmsext.errors import ModelNotLoadedError
    STORIES = sys.argv[1]
    GREEDY = {"temperature": 0, "maxTokens": 8}
    client = lmsext.Client()
    victim = client.llm.load(STORIES, config={"contextLength": 256}, identifier="victim")
    reference = victim.complete("Once upon a time", config=GREEDY).content
    target = client.llm.load(STORIES, config={"contextLength": 256}, identifier="target")
    engine = target.engine
    WORDS = "word " * 3_000_000
    outcome = []

    def work():
        try:
            WORK
            outcome.append("finished")
        except ModelNotLoadedError as exc:
            outcome.append("ModelNotLoadedError")
        except BaseException as exc:
            outcome.append(f"{type(exc).__name__}: {exc}")

    thread = threading.Thread(target=work)
    thread.start()
    time.sleep(DELAY)
    t0 = time.perf_counter()
    target.unload()
    unload_seconds = time.perf_counter() - t0
    thread.join(300)
    assert not thread.is_alive(), "the worker never ended"
    after = victim.complete("Once upon a time", config=GREEDY).content
    print("RESULT " + json.dumps({"outcome": outcome, "victim_ok": after == reference, "unload_s": unload_seconds,
                                  "loaded": [m.identifier for m in client.llm.list_loaded()]}), flush=True)
""")

#: Each reproduction: the worker's body (indented into CHILD), how long to wait before unloading.
REPRODUCTIONS = {
    "complete-3M-words": ('target.complete(WORDS, config={"maxTokens": 2})', 0.5),
    "tokenize-3M-words": ("target.tokenize(WORDS)", 0.5),
    "count-tokens-3M-words": ("target.count_tokens(WORDS)", 0.3),
    "distribution-3M-words": ("target.next_token_distribution(WORDS)", 0.5),
    "respond-chat-template-3M-words": ('target.respond([{"role": "user", "content": WORDS}], config={"maxTokens": 2})',
                                       0.5),
    "apply-template-then-tokenize": ('target.count_tokens(target.apply_prompt_template(WORDS))', 0.5),
    "detokenize-every-token": ("[engine.detokenize(list(range(engine.n_vocab)) * 20_000, special=s) for s in (True, "
                               "False, True)]", 0.3),
    "token-bytes-loop": ("[engine.token_bytes(t % engine.n_vocab) for t in range(2_000_000)]", 0.3),
    "suspended-stream": ("s = target.complete_stream('Once upon a time', config={'maxTokens': 100_000, "
                         "'contextOverflowPolicy': 'rollingWindow'}); it = iter(s); next(it); time.sleep(1.5); "
                         "list(it)", 0.3),
}


def _run_child(code: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=timeout,
                          env=env, cwd=REPO)


def _result(stdout: str) -> dict:
    return json.loads(next(line for line in stdout.splitlines() if line.startswith("RESULT "))[7:])


@pytest.mark.parametrize("name", list(REPRODUCTIONS))
def test_unload_during_a_native_call_never_kills_the_process(name, stories_path):
    body, delay = REPRODUCTIONS[name]
    code = CHILD.replace("WORK", body, 1).replace("DELAY", str(delay))
    proc = _run_child(code, str(stories_path))
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-2000:])  # 139 / 134 were SIGSEGV / SIGABRT
    r = _result(proc.stdout)
    assert r["outcome"] and r["outcome"][0] in ("ModelNotLoadedError", "finished"), r
    assert r["victim_ok"] and r["loaded"] == ["victim"], r
    assert r["unload_s"] < 5, r  # an unload waits at most 2 s for a user, then the last user frees


LOAD_CHILD = textwrap.dedent(r"""
    import json, sys, time
    import lmsext
    from lmsext import synth
    client = lmsext.Client()
    victim = client.llm.load(sys.argv[1], config={"contextLength": 256}, identifier="victim")
    GREEDY = {"temperature": 0, "maxTokens": 8}
    reference = victim.complete("Once upon a time", config=GREEDY).content
    path = synth.random_model(n_params_target=6_000_000)
    fractions = []

    def slow_disk(fraction):  # each tensor takes a while, as from a slow disk: the load lasts seconds
        if not fractions:
            print("LOADING", flush=True)
        fractions.append(fraction)
        time.sleep(0.05)

    t0 = time.perf_counter()
    try:
        client.llm.load(str(path), config={"tryMmap": False}, on_load_progress=slow_disk, identifier="big")
        outcome = "loaded"
    except KeyboardInterrupt as exc:
        outcome = f"KeyboardInterrupt: {exc}"
    seconds = time.perf_counter() - t0
    loaded = [m.identifier for m in client.llm.list_loaded()]
    after = victim.complete("Once upon a time", config=GREEDY).content
    again = client.llm.load(str(path), identifier="big")  # nothing half-loaded is in the way
    again_ok = again.complete("Once", config={"maxTokens": 2}).stats.predicted_tokens_count == 2
    print("RESULT " + json.dumps({"outcome": outcome, "seconds": seconds, "last_fraction": fractions[-1],
                                  "calls": len(fractions), "loaded": loaded, "victim_ok": after == reference,
                                  "again_ok": again_ok}), flush=True)
""")


def test_ctrl_c_during_a_load_aborts_it_and_leaves_nothing_half_loaded(stories_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.Popen([sys.executable, "-c", LOAD_CHILD, str(stories_path)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)
    try:
        for line in proc.stdout:
            if line.startswith("LOADING"):
                time.sleep(0.3)
                proc.send_signal(signal.SIGINT)  # a real Ctrl-C, in the middle of llama.cpp's load
                break
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, (proc.returncode, err[-2000:])
    r = _result(out)
    assert r["outcome"].startswith("KeyboardInterrupt: the load of") and "nothing was loaded" in r["outcome"], r
    assert r["last_fraction"] < 1.0, r  # llama.cpp stopped loading tensors: the load was aborted, not finished
    assert r["loaded"] == ["victim"] and r["victim_ok"] and r["again_ok"], r
    assert "Exception ignored" not in err and "KeyboardInterrupt" not in err, err[-2000:]


STORM_CHILD = textwrap.dedent(r"""
    import json, sys, threading, time
    import lmsext
    from lmsext.errors import ModelBusyError, ModelNotLoadedError
    client = lmsext.Client()
    GREEDY = {"temperature": 0, "maxTokens": 8}
    victim = client.llm.load(sys.argv[1], config={"contextLength": 256}, identifier="victim")
    reference = victim.complete("Once upon a time", config=GREEDY).content
    target = client.llm.load(sys.argv[1], config={"contextLength": 256}, identifier="target")
    PROMPT = "the cat sat on the mat . " * 12_000  # 300 KB
    outcomes = []

    def storm():
        for _ in range(10):
            try:
                target.complete(PROMPT, config={"maxTokens": 2})
                outcomes.append("done")
            except ModelBusyError:
                outcomes.append("busy")
            except ModelNotLoadedError:
                outcomes.append("not loaded")

    threads = [threading.Thread(target=storm) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    target.unload()
    for t in threads:
        t.join(300)
    after = victim.complete("Once upon a time", config=GREEDY).content
    print("RESULT " + json.dumps({"outcomes": sorted(set(outcomes)), "n": len(outcomes),
                                  "alive": any(t.is_alive() for t in threads), "victim_ok": after == reference,
                                  "loaded": [m.identifier for m in client.llm.list_loaded()]}), flush=True)
""")


def test_a_storm_of_long_prompts_on_four_threads_then_an_unload(stories_path):
    """4 threads × 10 completions of a 300 KB prompt (tokenizing concurrently with a running prediction),
    then an unload in the middle: every call ends in a result or a one-line error; the process lives."""
    proc = _run_child(STORM_CHILD, str(stories_path))
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-2000:])
    r = _result(proc.stdout)
    assert r["n"] == 40 and not r["alive"] and set(r["outcomes"]) <= {"done", "busy", "not loaded"}, r
    assert "not loaded" in r["outcomes"] and r["victim_ok"] and r["loaded"] == ["victim"], r


def test_unload_from_the_predictions_own_callback_stops_it_and_frees_after_it(client, stories_path):
    """``unload()`` inside ``on_prediction_fragment`` (the prediction's own thread) does not wait for a
    prediction that cannot end while it waits: the prediction stops at once and frees the model as it ends."""
    m = client.llm.load(str(stories_path), config={"contextLength": 256})
    engine = m.engine
    r = m.complete("Once upon a time", config={"maxTokens": 100},
                   on_prediction_fragment=lambda f: m.loaded and m.unload())
    assert r.stats.stop_reason == "userStopped" and r.stats.predicted_tokens_count < 100
    assert engine._model is None and not m.loaded and client.llm.list_loaded() == []
