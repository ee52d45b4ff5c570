"""Issue 13, defect 1 over REST: two unauthenticated requests used to kill the process — a /v1/completions with an
800 K-word prompt, then /api/v1/models/unload of that instance 0.25 s later (the model was freed under the running
llama_tokenize). Also a 4 x 25 storm of 300 KB prompts while the instance is unloaded and loaded again.

The server runs in a child process; each test asserts the child lives, every answer is one JSON line, and the
other model instance still answers the same temperature-0 reply. (An unload over REST first stops the instance's
REST prediction and waits for it; a notebook cell unloading during a REST tokenization needs the engine's own
lifetime rule for its native handles.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("uvicorn")

CHILD = textwrap.dedent("""
    import sys, time, lmsext
    from lmsext import server
    client = lmsext.Client()
    path = sys.argv[1]
    client.llm.load(path, config={"contextLength": 512}, identifier="target")
    client.llm.load(path, config={"contextLength": 512}, identifier="other")
    handle = server.serve(port=0, client=client, queue_timeout=120, prediction_timeout=120)
    print(handle.url, flush=True)
    sys.stdin.read()  # until the test closes stdin
    handle.stop()
""")
GREEDY = {"model": "other", "prompt": "Once upon a time", "temperature": 0, "max_tokens": 8}


@pytest.fixture
def child(stories_path):
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(stories_path)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONFAULTHANDLER": "1"})
    url = proc.stdout.readline().strip()
    if not url.startswith("http://"):
        proc.kill()
        pytest.fail(f"the child server did not start: {proc.stderr.read()[-2000:]}")
    try:
        yield proc, url
    finally:
        if proc.poll() is None:
            proc.stdin.close()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


def _answer(r: httpx.Response) -> None:
    """A JSON answer; an error is one line."""
    body = r.json()
    if r.status_code >= 400:
        message = body["error"]["message"]
        assert message and "\n" not in message, message


def _alive_and_other_answers(proc, url: str, reference: str) -> None:
    assert proc.poll() is None, f"the server process died (rc {proc.returncode}): {proc.stderr.read()[-3000:]}"
    r = httpx.post(url + "/v1/completions", json=GREEDY, timeout=60)
    assert r.status_code == 200 and r.json()["choices"][0]["text"] == reference, r.text


def test_unload_during_a_huge_prompt_over_rest(child):
    proc, url = child
    reference = httpx.post(url + "/v1/completions", json=GREEDY, timeout=60).json()["choices"][0]["text"]
    body = json.dumps({"model": "target", "prompt": "word " * 800_000, "max_tokens": 2}).encode()
    out: dict = {}

    def complete() -> None:
        try:
            out["r"] = httpx.post(url + "/v1/completions", content=body,
                                  headers={"Content-Type": "application/json"}, timeout=300)
        except httpx.HTTPError as exc:
            out["error"] = exc

    worker = threading.Thread(target=complete)
    worker.start()
    time.sleep(0.25)
    try:
        unload = httpx.post(url + "/api/v1/models/unload", json={"instance_id": "target"}, timeout=300)
    except httpx.HTTPError as exc:  # the server died: said below, with its stderr
        unload = exc
    worker.join(300)
    assert not worker.is_alive()
    proc.poll() is None or time.sleep(0.5)
    _alive_and_other_answers(proc, url, reference)
    assert "error" not in out, out.get("error")
    _answer(out["r"])
    assert out["r"].status_code in (200, 404, 409), out["r"].text
    assert isinstance(unload, httpx.Response), unload
    _answer(unload)
    assert unload.status_code in (200, 404), unload.text


def test_storm_of_big_prompts_while_the_instance_is_unloaded_and_loaded(child, stories_path):
    proc, url = child
    reference = httpx.post(url + "/v1/completions", json=GREEDY, timeout=60).json()["choices"][0]["text"]
    prompt = "word " * 60_000  # 300 KB
    failures: list = []
    stop = threading.Event()

    def storm() -> None:
        with httpx.Client(timeout=300) as http:
            for _ in range(25):
                try:
                    _answer(http.post(url + "/v1/completions",  # the first instance of the key: 'target' or
                                      json={"model": "stories260K", "prompt": prompt, "max_tokens": 2}))  # its
                    # successor loaded by churn(), or 'other' while there is none
                except (httpx.HTTPError, AssertionError, ValueError) as exc:
                    failures.append(repr(exc)[:300])

    def churn() -> None:
        with httpx.Client(timeout=300) as http:
            while not stop.is_set() and proc.poll() is None:
                models = http.get(url + "/api/v1/models").json()["models"]
                for instance in [i["id"] for m in models for i in m["loaded_instances"] if i["id"] != "other"]:
                    _answer(http.post(url + "/api/v1/models/unload", json={"instance_id": instance}))
                time.sleep(0.2)
                http.post(url + "/api/v1/models/load", json={"model": "stories260K",
                                                             "config": {"context_length": 512}})
                time.sleep(0.2)

    threads = [threading.Thread(target=storm) for _ in range(4)]
    churner = threading.Thread(target=churn)
    for t in [*threads, churner]:
        t.start()
    for t in threads:
        t.join(600)
    stop.set()
    churner.join(60)
    proc.poll() is None or time.sleep(0.5)
    _alive_and_other_answers(proc, url, reference)
    assert not failures, failures[:5]
