"""The REST server against web pages and odd clients: Host and Origin checks, JSON-only POSTs, serve()'s
arguments, JSON encoding that cannot fail, no server paths or file bytes in any response."""

from __future__ import annotations

import json
import os
import socket

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("uvicorn")

from lmsext.errors import ConfigError  # noqa: E402
from lmsext.server import guard as rest_guard  # noqa: E402
from lmsext.server import http as rest_http  # noqa: E402
from lmsext import server as rest  # noqa: E402


@pytest.fixture(scope="module")
def victim(module_client, stories_path):
    return module_client.llm.load(str(stories_path), config={"contextLength": 256}, identifier="victim")


@pytest.fixture
def handle(module_client, victim):
    with rest.serve(port=0, client=module_client) as h:
        yield h


BODY = {"model": "victim", "prompt": "Once", "max_tokens": 2}


def _post(handle, path="/v1/completions", body=BODY, **headers):
    return httpx.post(handle.url + path, content=json.dumps(body).encode(), headers=headers, timeout=30)


# ------------------------------------------------------------------------------------------ Host


@pytest.mark.parametrize("header,ok", [
    ("127.0.0.1:1234", True), ("localhost", True), ("LOCALHOST:80", True), ("[::1]:1234", True), ("[::1]", True),
    ("[::1]evil.com", False), ("[::1]:1234evil", False), ("evil.example", False), ("localhost@evil.example", False),
    ("localhost:1234:5", False), ("127.0.0.1.evil.example", False), ("[::1", False), ("localhost evil", False),
    ("[::2]", False),
])
def test_host_header_must_name_the_loopback(handle, header, ok):
    r = httpx.get(handle.url + "/v1/models", headers={"Host": header}, timeout=10)
    assert (r.status_code == 200) is ok, r.text
    if not ok:
        assert r.status_code == 403 and r.json()["error"]["message"].startswith("this server only answers")


def test_trusted_host_middleware_parses_the_whole_header():
    """The Host check is Starlette's TrustedHostMiddleware (>= 1.7 parses IPv6 literals; earlier versions cut the
    header at its first ':', so '[::1]:1234' became '[')."""
    from starlette.applications import Starlette
    from starlette.middleware.trustedhost import TrustedHostMiddleware
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route
    from starlette.testclient import TestClient

    app = Starlette(routes=[Route("/", lambda request: PlainTextResponse("ok"))])
    guarded = TrustedHostMiddleware(app, allowed_hosts=list(rest_guard.LOOPBACK_HOSTS))
    with TestClient(guarded) as tc:
        assert tc.get("/", headers={"Host": "[::1]:1234"}).status_code == 200
        assert tc.get("/", headers={"Host": "[::1]evil.com"}).status_code == 400
        assert tc.get("/", headers={"Host": "["}).status_code == 400


def test_ipv6_loopback_host_is_served(handle):
    r = httpx.get(handle.url + "/v1/models", headers={"Host": f"[::1]:{handle.port}"}, timeout=10)
    assert r.status_code == 200


# ------------------------------------------------------------------------------------------ CSRF


@pytest.mark.parametrize("ctype", [None, "text/plain", "text/plain;charset=UTF-8", "multipart/form-data; boundary=x",
                                   "application/x-www-form-urlencoded", "application/jsonp", "application/x+json"])
def test_every_post_needs_json_content_type(handle, ctype):
    before = [m.identifier for m in handle.client.llm.list_loaded()]
    headers = {} if ctype is None else {"Content-Type": ctype}
    for path, body in [("/v1/completions", BODY), ("/api/v1/models/unload", {"instance_id": "victim"}),
                       ("/api/v1/models/load", {"model": "stories260K"})]:
        r = _post(handle, path, body, **headers)
        assert r.status_code == 415, r.text
        assert r.json()["error"]["message"].startswith("Content-Type must be application/json")
    assert [m.identifier for m in handle.client.llm.list_loaded()] == before
    assert _post(handle, **{"Content-Type": "application/json; charset=utf-8"}).status_code == 200


@pytest.mark.parametrize("origin,ok", [
    ("http://localhost:8888", True), ("http://127.0.0.1:5173", True), ("http://[::1]:8888", True),
    ("https://localhost", True), ("https://evil.example", False), ("null", False), ("http://localhost.evil.example", False),
    ("http://127.0.0.1.nip.io", False), ("file://", False), ("http://user@localhost", False),
])
def test_origin_allow_list(handle, origin, ok):
    r = _post(handle, **{"Content-Type": "application/json", "Origin": origin})
    assert (r.status_code == 200) is ok, r.text
    if not ok:
        assert r.status_code == 403 and "are not allowed" in r.json()["error"]["message"]


def test_allowed_origins_and_the_jupyter_servers_origin(module_client, victim, tmp_path, monkeypatch):
    runtime = tmp_path / "runtime"
    runtime.mkdir()
    (runtime / f"jpserver-{os.getpid()}.json").write_text(json.dumps({
        "url": "http://notebook.example:8888/lab/", "pid": os.getpid(), "port": 8888, "hostname": "notebook.example",
        "base_url": "/", "root_dir": str(tmp_path), "secure": False, "token": "", "password": False, "version": "2"}))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(runtime))
    with rest.serve(port=0, client=module_client, allowed_origins=["https://Tools.Example:8443/"]) as h:
        ok = {"Content-Type": "application/json"}
        assert _post(h, **ok, Origin="https://tools.example:8443").status_code == 200
        assert _post(h, **ok, Origin="http://notebook.example:8888").status_code == 200
        assert _post(h, **ok, Origin="http://notebook.example:9999").status_code == 403
        assert _post(h, **ok, Origin="https://tools.example").status_code == 403
    with pytest.raises(ConfigError, match=r"^allowed_origins: 'not an origin' is not an origin"):
        rest.serve(port=0, client=module_client, allowed_origins=["not an origin"])


# ------------------------------------------------------------------------------------------ serve() arguments


@pytest.mark.parametrize("kw,match", [
    ({"api_key": "a\nb"}, r"^api_key may hold only printable ASCII"),
    ({"api_key": "clé"}, r"^api_key may hold only printable ASCII"),
    ({"api_key": "a b"}, r"^api_key may hold only printable ASCII"),
    ({"queue_timeout": float("nan")}, r"^queue_timeout=nan: must be a finite number of seconds >= 0$"),
    ({"queue_timeout": float("inf")}, r"^queue_timeout=inf: must be a finite number"),
    ({"queue_timeout": -1}, r"^queue_timeout=-1: must be"),
    ({"prediction_timeout": 0}, r"^prediction_timeout=0: must be a finite number of seconds > 0$"),
    ({"prediction_timeout": float("nan")}, r"^prediction_timeout=nan"),
    ({"stall_timeout": "5"}, r"^stall_timeout='5'"),
    ({"default_max_tokens": 0}, r"^default_max_tokens=0: must be an integer from 1 to 2,147,483,647$"),
    ({"default_max_tokens": 2**31}, r"^default_max_tokens=2147483648"),
    ({"default_max_tokens": True}, r"^default_max_tokens=True"),
])
def test_bad_serve_arguments_are_one_line(module_client, kw, match):
    with pytest.raises(ConfigError, match=match) as info:
        rest.serve(port=0, client=module_client, **kw)
    assert "\n" not in str(info.value)
    assert rest.current_server() is None


def test_cannot_listen_is_said_once(ip):
    from IPython.utils.capture import capture_output
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    port = taken.getsockname()[1]
    try:
        with capture_output() as cap:
            ip.run_line_magic("lm_serve", f"--port {port}")
        text = cap.stdout + cap.stderr + "".join(o.data.get("text/plain", "") for o in cap.outputs)
        assert text.count("cannot listen on") == 1, text
        assert f"127.0.0.1:{port}" in text
    finally:
        taken.close()
        if rest.current_server() is not None:
            rest.current_server().stop()


# ------------------------------------------------------------------------------------------ encoding, leaks


def test_json_encoding_cannot_fail():
    body = rest_http.JSON({"text": "a\ud800b", "nan": float("nan"), "odd": object()}).body
    data = json.loads(body)
    assert data["text"] == "a\ud800b" and data["nan"] is None and data["odd"].startswith("<object")
    cyclic: list = []
    cyclic.append(cyclic)
    assert json.loads(rest_http.JSON(cyclic).body)["error"]["type"] == "internal_error"


def test_public_messages_hold_no_server_paths():
    msg = rest_http.public_message("/srv/models/x/notes.gguf is not a GGUF file (it does not start with b'GGUF')")
    assert msg == "notes.gguf is not a GGUF file (it does not start with b'GGUF')"
    msg = rest_http.public_message("model 'nope' not found in /srv/models, /root/.lmstudio/models or the "
                                     "Hugging Face cache; set LMSEXT_MODELS_PATH to your model folder")
    assert msg == "model 'nope' not found on this server (GET /api/v1/models lists its models)"


def test_a_symlink_to_a_secret_never_leaks(module_client, victim, tmp_path, monkeypatch):
    (tmp_path / "passwd.gguf").symlink_to("/etc/passwd")
    monkeypatch.setenv("LMSEXT_MODELS_PATH", str(tmp_path))
    with rest.serve(port=0, client=module_client) as h:
        seen = []
        for r in (_post(h, "/api/v1/models/load", {"model": "passwd"}, **{"Content-Type": "application/json"}),
                  _post(h, "/api/v1/chat", {"model": "passwd", "input": "x"}, **{"Content-Type": "application/json"}),
                  httpx.get(h.url + "/api/v1/models", timeout=30), httpx.get(h.url + "/v1/models", timeout=30)):
            seen.append(r.status_code)
            assert "root" not in r.text and str(tmp_path) not in r.text, r.text
        assert seen[0] == seen[1] == 500 and seen[2] == seen[3] == 200


NASTY = [
    ("/v1/completions", b'{"model": "\\ud800", "prompt": "x"}'),
    ("/v1/completions", b'{"model": "victim", "prompt": "x", "\\udfff": 1}'),
    ("/v1/completions", b'{"model": "victim", "prompt": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"),
    ("/v1/completions", b'{"model": "victim", "prompt": "x", "seed": ' + b"9" * 5000 + b"}"),
    ("/v1/chat/completions", b'{"model": "victim", "messages": [{"role": "user", "content": "Hi"}], '
                             b'"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": '
                             b'{"$ref": "#"}}}}'),
    ("/api/v1/chat", b'{"model": "victim", "input": "Hi", "structured": {"type": "json", "jsonSchema": '
                     + b'{"type": "array", "items": ' * 2000 + b"{}" + b"}" * 2000 + b"}}"),
    ("/api/v1/models/load", b'{"model": "\\udc80/x"}'),
]


def test_nasty_bodies_leave_no_traceback_in_any_log(handle, caplog):
    import logging
    caplog.set_level(logging.DEBUG)
    for path, raw in NASTY:
        r = httpx.post(handle.url + path, content=raw, headers={"Content-Type": "application/json"}, timeout=60)
        assert r.status_code == 400, (path, r.text)
        message = r.json()["error"]["message"]
        assert "\n" not in message and "Recursion" not in message and "set_int_max_str_digits" not in message
    bad = [rec for rec in caplog.records if rec.levelno >= logging.WARNING or rec.exc_info]
    assert not bad, [rec.getMessage() for rec in bad]
    assert _post(handle, **{"Content-Type": "application/json"}).status_code == 200
