"""Every REST prediction is bounded: a default token limit, a wall-clock limit, cancelled when the client goes
(streaming and not), and a stream whose client never reads cannot hold the instance or grow memory.

A real uvicorn server on loopback; the clients are raw sockets that disconnect or stop reading.
"""

from __future__ import annotations

import json
import socket
import time

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("uvicorn")

from lmsext.server import jobs as rest_jobs  # noqa: E402
from lmsext import server as rest  # noqa: E402

RUNAWAY = {"temperature": 1.0}
"""A prediction that never ends by itself on a base model: no token limit, the context shifts forever (the
OpenAI endpoints truncate the middle; /api/v1/chat is also given rollingWindow)."""
ROLLING = {"context_overflow_policy": "rollingWindow"}


@pytest.fixture(scope="module")
def victim(module_client, stories_path):
    return module_client.llm.load(str(stories_path), config={"contextLength": 256}, identifier="victim")


def _serve(client, **kw):
    kw.setdefault("queue_timeout", 10)
    return rest.serve(port=0, client=client, **kw)


def _raw_request(handle, path: str, body: dict, rcvbuf: int | None = None) -> socket.socket:
    """Send a POST on a raw socket and return the socket, without reading anything."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.connect((handle.host, handle.port))
    data = json.dumps(body).encode()
    sock.sendall(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                 f"Content-Length: {len(data)}\r\n\r\n".encode() + data)
    return sock


def _free_within(handle, instance: str, seconds: float) -> float:
    """Seconds until no job holds ``instance`` (fails after ``seconds``)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds:
        if not handle._state.gates.busy(instance) and not handle._state.jobs:
            return time.monotonic() - t0
        time.sleep(0.05)
    pytest.fail(f"{instance} still busy after {seconds} s")


def _next_request_served(handle) -> None:
    t0 = time.monotonic()
    r = httpx.post(handle.url + "/v1/completions", json={"model": "victim", "prompt": "Once", "max_tokens": 3},
                   timeout=30)
    assert r.status_code == 200, r.text
    assert time.monotonic() - t0 < 10


def _wait_busy(handle, instance: str) -> None:
    t0 = time.monotonic()
    while not handle._state.gates.busy(instance):
        assert time.monotonic() - t0 < 10, "the prediction never started"
        time.sleep(0.02)


@pytest.mark.parametrize("path,body", [
    ("/api/v1/chat", {"model": "victim", "input": "Once upon a time", **RUNAWAY, **ROLLING}),
    ("/v1/completions", {"model": "victim", "prompt": "Once upon a time", "max_tokens": None, **RUNAWAY}),
    ("/v1/chat/completions", {"model": "victim", "messages": [{"role": "user", "content": "Hi"}], **RUNAWAY}),
], ids=["api-chat", "completions-null", "chat-completions"])
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_client_disconnect_cancels_the_prediction(module_client, victim, path, body, stream):
    with _serve(module_client, default_max_tokens=10_000_000) as handle:
        sock = _raw_request(handle, path, {**body, "stream": stream})
        _wait_busy(handle, "victim")
        time.sleep(0.3)
        sock.close()
        assert _free_within(handle, "victim", 5) < 5
        _next_request_served(handle)


def test_a_stream_whose_client_never_reads_is_cancelled(module_client, victim):
    with _serve(module_client, default_max_tokens=10_000_000, stall_timeout=1.0) as handle:
        sock = _raw_request(handle, "/api/v1/chat", {"model": "victim", "input": "Once", "stream": True, **RUNAWAY,
                                                              **ROLLING}, rcvbuf=4096)
        try:
            _wait_busy(handle, "victim")
            (job,) = list(handle._state.jobs)
            waited = _free_within(handle, "victim", 60)
            assert job.stopped_by == "clientStalled"
            assert job._queue.qsize() <= rest_jobs.QUEUE_EVENTS + 3  # bounded: fragments + result/error/end
            _next_request_served(handle)
        finally:
            sock.close()
    print(f"\nnever-reading stream: instance free again after {waited:.1f} s")


def test_default_token_limit_when_the_request_sets_none(module_client, victim):
    with _serve(module_client, default_max_tokens=7) as handle:
        for path, body in [("/v1/completions", {"prompt": "Once upon a time", "max_tokens": None}),
                           ("/api/v1/chat", {"input": "Once upon a time"}),
                           ("/v1/chat/completions", {"messages": [{"role": "user", "content": "Hi"}]})]:
            r = httpx.post(handle.url + path, json={"model": "victim", "temperature": 0, **RUNAWAY, **body},
                           timeout=30)
            assert r.status_code == 200, r.text
            data = r.json()
            used = data["usage"]["completion_tokens"] if "usage" in data else data["stats"]["total_output_tokens"]
            assert used <= 7, data


def test_wall_clock_limit_ends_the_prediction(module_client, victim):
    with _serve(module_client, default_max_tokens=10_000_000, prediction_timeout=0.5) as handle:
        t0 = time.monotonic()
        r = httpx.post(handle.url + "/v1/completions",
                       json={"model": "victim", "prompt": "Once", "max_tokens": None, **RUNAWAY}, timeout=30)
        elapsed = time.monotonic() - t0
        assert r.status_code == 200, r.text
        choice = r.json()["choices"][0]
        assert choice["finish_reason"] == "length" and r.json()["stats"]["stop_reason"] == "timeLimitReached"
        assert 0.4 < elapsed < 5 and choice["text"]
        with httpx.stream("POST", handle.url + "/api/v1/chat", timeout=30,
                          json={"model": "victim", "input": "Once", "stream": True, **RUNAWAY, **ROLLING}) as s:
            text = "".join(s.iter_text())
        assert '"stop_reason":"timeLimitReached"' in text
        _next_request_served(handle)
