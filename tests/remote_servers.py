"""Model servers for the remote-engine tests, each in its own process on a free loopback port: lmsext's own REST
server and llama-cpp-python's ``llama_cpp.server`` (a server lmsext did not write), plus small misbehaving
servers (a 500, a stream cut mid-answer, one that never answers). Every process is killed in a ``finally``."""

from __future__ import annotations

import contextlib
import http.server
import json
import socket
import subprocess
import sys
import threading
import time
from typing import Iterator

import httpx

#: Seconds a server may take to start before the test fails.
START_TIMEOUT = 60.0


def free_port() -> int:
    """A port nothing listens on (bound and released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def server_process(argv: list[str], port: int, probe: str) -> Iterator[str]:
    """Run ``argv`` until ``GET probe`` answers on ``port``; yield the base URL; kill it afterwards."""
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{argv[:3]} exited: {proc.stderr.read().decode()[-2000:]}")
            try:
                httpx.get(url + probe, timeout=1.0)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{argv[:3]} did not answer within {START_TIMEOUT:g} s") from None
                time.sleep(0.1)
        yield url
    finally:
        proc.kill()
        proc.wait(10)


def lmsext_server(api_key: str | None = None) -> contextlib.AbstractContextManager[str]:
    """lmsext's own REST server (``lmsext.serve``) in a separate Python process."""
    port = free_port()
    code = (f"import time, lmsext; lmsext.serve(port={port}, api_key={api_key!r}); "
            "time.sleep(600)")  # bounded: the test kills it long before
    return server_process([sys.executable, "-c", code], port, "/openapi.json")


def llama_cpp_server(model_path: str) -> contextlib.AbstractContextManager[str]:
    """llama-cpp-python's OpenAI-compatible server on ``model_path`` (loaded at start-up, as vLLM does)."""
    port = free_port()
    return server_process([sys.executable, "-m", "llama_cpp.server", "--model", model_path, "--host", "127.0.0.1",
                           "--port", str(port), "--n_ctx", "512", "--verbose", "False"], port, "/v1/models")


class _BrokenHandler(http.server.BaseHTTPRequestHandler):
    """An OpenAI-shaped server that fails: 500 on chat, a completion stream cut after two deltas."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # quiet
        pass

    def _json(self, code: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802
        if self.path == "/v1/models":
            self._json(200, {"object": "list", "data": [{"id": "broken-model", "object": "model"}]})
        else:
            self._json(404, {"error": {"message": f"no route {self.path}"}})

    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.path == "/v1/chat/completions":
            self._json(500, {"error": {"message": "CUDA out of memory", "type": "server_error"}})
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for text in ("Once", " upon"):
            event = f"data: {json.dumps({'choices': [{'index': 0, 'text': text, 'finish_reason': None}]})}\n\n"
            self.wfile.write(f"{len(event):x}\r\n{event}\r\n".encode())
            self.wfile.flush()
        self.connection.shutdown(socket.SHUT_RDWR)  # the server dies mid-stream: no final chunk
        self.close_connection = True


@contextlib.contextmanager
def broken_server() -> Iterator[str]:
    """A threaded :class:`_BrokenHandler` server on a free port."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _BrokenHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def silent_server() -> Iterator[str]:
    """A socket that accepts connections (the kernel's backlog) and never answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        yield f"http://127.0.0.1:{s.getsockname()[1]}"
