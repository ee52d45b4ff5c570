"""The REST server (lmsext.server) against a real uvicorn on loopback, with httpx, curl and openai."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

import lmsext  # noqa: E402
from lmsext.errors import ConfigError  # noqa: E402
from lmsext.models import embedded_model_path  # noqa: E402
from lmsext import server as rest  # noqa: E402

MODEL = "stories260K"  # the embedded default model: always in the catalog
SEED_KEYS = ("context_length", "eval_batch_size", "flash_attention", "num_experts", "offload_kv_cache_to_gpu")


@pytest.fixture(scope="module", autouse=True)
def models_path(tmp_path_factory):
    """An empty model folder: the catalog is the embedded default model."""
    old = os.environ.get("LMSEXT_MODELS_PATH")
    os.environ["LMSEXT_MODELS_PATH"] = str(tmp_path_factory.mktemp("models"))
    yield
    if old is None:
        os.environ.pop("LMSEXT_MODELS_PATH", None)
    else:
        os.environ["LMSEXT_MODELS_PATH"] = old


@pytest.fixture(scope="module")
def client(models_path):
    c = lmsext.Client()
    c.llm.load(MODEL, config={"context_length": 2048})
    yield c
    c.llm.unload_all()


@pytest.fixture
def server(client):
    handle = rest.serve(port=0, client=client)
    yield handle
    handle.stop()


@pytest.fixture
def http(server):
    with httpx.Client(base_url=server.url, timeout=30) as c:
        yield c


def error_of(response, status: int, param: str | None = "<any>") -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and {"message", "type", "param"} <= set(body["error"]), body
    assert body["error"]["message"]
    if param != "<any>":
        assert body["error"]["param"] == param, body
    return body["error"]


def sse_events(text: str) -> list[tuple[str | None, str]]:
    events = []
    for block in text.strip().split("\n\n"):
        name, data = None, []
        for line in block.splitlines():
            if line.startswith("event: "):
                name = line[len("event: "):]
            elif line.startswith("data: "):
                data.append(line[len("data: "):])
        events.append((name, "\n".join(data)))
    return events


# ------------------------------------------------------------------------------------------ lifecycle


def test_serve_port_zero_current_server_and_restart(client):
    first = rest.serve(port=0, client=client)
    try:
        assert first.running and first.host == "127.0.0.1" and first.port > 0
        assert first.url == f"http://127.0.0.1:{first.port}"
        assert rest.current_server() is first
        second = rest.serve(port=0, client=client)  # stops the running one first
        assert not first.running and second.running and rest.current_server() is second
        assert httpx.get(second.url + "/v1/models", timeout=10).status_code == 200
        with pytest.raises(httpx.TransportError):
            httpx.get(first.url + "/v1/models", timeout=2)
        second.stop()
        assert not second.running and rest.current_server() is None
        second.stop()  # twice is fine
    finally:
        first.stop()


def test_non_loopback_needs_api_key_and_bad_arguments(client):
    with pytest.raises(ConfigError, match="api_key"):
        rest.serve(host="0.0.0.0", port=0, client=client)
    with pytest.raises(ConfigError, match="port"):
        rest.serve(port=70000, client=client)
    with pytest.raises(ConfigError, match="api_key"):
        rest.serve(port=0, api_key="  ", client=client)
    assert rest.current_server() is None


def test_api_key_enforced(client):
    with rest.serve(port=0, api_key="s3cret", client=client) as handle:
        assert handle.requires_api_key
        url = handle.url + "/v1/models"
        missing = httpx.get(url, timeout=10)
        assert error_of(missing, 401)["type"] == "authentication_error"
        assert missing.headers["www-authenticate"] == "Bearer"
        error_of(httpx.get(url, headers={"Authorization": "Bearer wrong"}, timeout=10), 401)
        error_of(httpx.get(url, headers={"Authorization": "s3cret"}, timeout=10), 401)
        error_of(httpx.post(handle.url + "/api/v1/chat", json={"model": MODEL, "input": "hi"}, timeout=10), 401)
        ok = httpx.get(url, headers={"Authorization": "Bearer s3cret"}, timeout=10)
        assert ok.status_code == 200 and ok.json()["object"] == "list"
        # with a key, any Host header is fine (e.g. behind a proxy): the key is what protects the server
        proxied = httpx.get(url, headers={"Authorization": "Bearer s3cret", "Host": "notebook.example"}, timeout=10)
        assert proxied.status_code == 200


def test_host_header_must_be_local(http):
    error_of(http.get("/v1/models", headers={"Host": "evil.example:1234"}), 403)
    assert http.get("/v1/models", headers={"Host": "localhost:1234"}).status_code == 200


def test_unknown_route_and_method(http):
    error_of(http.get("/api/v1/nothing"), 404)
    error_of(http.get("/api/v1/models/load"), 405)


def test_openapi_schema(http):
    doc = http.get("/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    for path in ("/api/v1/models/load", "/api/v1/models/unload", "/api/v1/models", "/api/v1/chat", "/v1/models",
                 "/v1/chat/completions", "/v1/completions"):
        assert path in doc["paths"], path
    schemas = doc["components"]["schemas"]
    assert set(SEED_KEYS) <= set(schemas["LoadConfig"]["properties"])
    assert schemas["LoadConfig"]["additionalProperties"] is False
    assert schemas["LoadRequest"]["required"] == ["model"]
    assert "max_output_tokens" in schemas["ChatRequest"]["properties"]


# ------------------------------------------------------------------------------------------ seed 002

SEED_BODY = """{
          "model": "stories260K",
          "config": {
            "context_length": 16384,
            "flash_attention": true
          }
        }"""


def test_seed_curl_example_verbatim(server, client):
    url = server.url + "/api/v1/models/load"
    if shutil.which("curl"):
        out = subprocess.run(["curl", "-sS", url, "-H", "Content-Type: application/json", "-d", SEED_BODY],
                             capture_output=True, text=True, timeout=60, check=True).stdout
        body = json.loads(out)
    else:  # pragma: no cover - curl is on the dev and CI machines
        r = httpx.post(url, content=SEED_BODY, headers={"Content-Type": "application/json"}, timeout=60)
        assert r.status_code == 200, r.text
        body = r.json()
    assert list(body) == ["type", "instance_id", "model_instance_id", "config", "load_time_seconds", "status"]
    assert body["model_instance_id"] == body["instance_id"] == f"{MODEL}:2"  # a new instance beside the fixture's
    config = body["config"]
    assert list(config)[:5] == list(SEED_KEYS)
    assert config["context_length"] == 16384 and config["flash_attention"] is True
    assert isinstance(config["eval_batch_size"], int) and config["num_experts"] == 0
    assert isinstance(config["offload_kv_cache_to_gpu"], bool)
    assert {"gpu", "try_mmap", "use_fp16_for_kv_cache", "seed"} <= set(config)  # every effective value
    assert isinstance(body["load_time_seconds"], (int, float)) and body["load_time_seconds"] >= 0
    llm = client.llm.get(f"{MODEL}:2")  # the notebook sees it
    assert llm.get_context_length() == 16384
    r = httpx.post(server.url + "/api/v1/models/unload", json={"instance_id": f"{MODEL}:2"}, timeout=30)
    assert r.status_code == 200 and r.json() == {"instance_id": f"{MODEL}:2"}
    assert [m.identifier for m in client.llm.list_loaded()] == [MODEL]


def test_load_validation_errors(http, client):
    before = [m.identifier for m in client.llm.list_loaded()]
    load = "/api/v1/models/load"
    error_of(http.post(load, json={"config": {}}), 400, "model")
    error_of(http.post(load, json={"model": MODEL, "extra": 1}), 400, "extra")
    error_of(http.post(load, json={"model": 5}), 400, "model")
    e = error_of(http.post(load, json={"model": MODEL, "config": {"contextLength": 512}}), 400,
                 "config.contextLength")
    assert "context_length" in e["message"]
    e = error_of(http.post(load, json={"model": MODEL, "config": {"context_lenght": 512}}), 400,
                 "config.context_lenght")
    assert "context_length" in e["message"]
    error_of(http.post(load, json={"model": MODEL, "config": {"context_length": "4096"}}), 400,
             "config.context_length")
    error_of(http.post(load, json={"model": MODEL, "config": {"context_length": 0}}), 400, "config.context_length")
    error_of(http.post(load, json={"model": MODEL, "config": {"flash_attention": 1}}), 400, "config.flash_attention")
    error_of(http.post(load, json={"model": MODEL, "config": {"gpu": {"mainGpu": 0}}}), 400, "config.gpu.mainGpu")
    error_of(http.post(load, json={"model": MODEL, "config": []}), 400, "config")
    error_of(http.post(load, content=b'{"model": "stories260K",', headers={"Content-Type": "application/json"}), 400)
    error_of(http.post(load, content=b'["stories260K"]', headers={"Content-Type": "application/json"}), 400)
    error_of(http.post(load, content=b"", headers={"Content-Type": "application/json"}), 400)
    error_of(http.post(load, content=b'{"model": "x"}', headers={"Content-Type": "text/plain"}), 415)
    e = error_of(http.post(load, json={"model": "no-such-model"}), 404, "model")
    assert e["type"] == "model_not_found"
    assert [m.identifier for m in client.llm.list_loaded()] == before


@pytest.mark.parametrize("key", [
    "../models/stories260K", "../../lmsext/models/stories260K.gguf", str(embedded_model_path()),
    "/etc/passwd", "~/stories260K", "./stories260K", "..\\stories260K", "sub/../../stories260K",
    "openai/gpt-oss-20b",  # a Hugging Face id is never downloaded over HTTP
])
def test_model_keys_never_resolve_to_paths(http, client, key):
    before = len(client.llm.list_loaded())
    error_of(http.post("/api/v1/models/load", json={"model": key}), 404, "model")
    error_of(http.post("/api/v1/chat", json={"model": key, "input": "hi"}), 404, "model")
    assert len(client.llm.list_loaded()) == before


def test_oversized_body_is_413(client):
    with rest.serve(port=0, client=client, max_body_bytes=1000) as handle:
        big = {"model": MODEL, "input": "x" * 2000}
        error_of(httpx.post(handle.url + "/api/v1/chat", json=big, timeout=10), 413)

        def chunks():  # no Content-Length: counted while reading
            yield b'{"model": "stories260K", "input": "'
            for _ in range(20):
                yield b"y" * 100
            yield b'"}'
        r = httpx.post(handle.url + "/api/v1/chat", content=chunks(), timeout=10,
                       headers={"Content-Type": "application/json"})
        error_of(r, 413)
        ok = httpx.post(handle.url + "/api/v1/chat", json={"model": MODEL, "input": "hi", "max_output_tokens": 2},
                        timeout=10)
        assert ok.status_code == 200, ok.text


# ------------------------------------------------------------------------------------------ models


def test_list_models_and_unload(http, client):
    models = http.get("/api/v1/models").json()["models"]
    entry = next(m for m in models if m["key"] == MODEL)
    assert entry["type"] == "llm" and entry["format"] == "gguf" and entry["architecture"] == "llama"
    assert entry["size_bytes"] == embedded_model_path().stat().st_size
    assert entry["max_context_length"] == 2048
    [instance] = entry["loaded_instances"]
    assert instance["id"] == MODEL and instance["config"]["context_length"] == 2048
    assert set(SEED_KEYS) <= set(instance["config"])
    ids = [m["id"] for m in http.get("/v1/models").json()["data"]]
    assert MODEL in ids

    # loaded in the notebook (Python API) -> visible over HTTP, unloaded over HTTP -> gone in the notebook
    llm = client.llm.load(MODEL, config={"context_length": 256})
    entry = next(m for m in http.get("/api/v1/models").json()["models"] if m["key"] == MODEL)
    assert [i["id"] for i in entry["loaded_instances"]] == [MODEL, llm.identifier]
    assert entry["loaded_instances"][1]["config"]["context_length"] == 256
    r = http.post("/api/v1/models/unload", json={"instance_id": llm.identifier})
    assert r.status_code == 200 and r.json() == {"instance_id": llm.identifier}
    assert not llm.loaded and [m.identifier for m in client.llm.list_loaded()] == [MODEL]
    error_of(http.post("/api/v1/models/unload", json={"instance_id": llm.identifier}), 404, "instance_id")
    error_of(http.post("/api/v1/models/unload", json={"instance": MODEL}), 400, "instance")


def test_shares_the_kernel_default_client(models_path):
    shared = lmsext.default_client()
    with rest.serve(port=0) as handle:  # client=None: the kernel's client
        assert handle.client is shared
        r = httpx.post(handle.url + "/api/v1/models/load", json={"model": MODEL, "config": {"context_length": 512}},
                       timeout=30)
        assert r.status_code == 200, r.text
        ident = r.json()["model_instance_id"]
        try:
            llm = shared.llm.get(ident)  # what %lm_ps lists
            assert llm.get_context_length() == 512
            cell = llm.complete("Once upon", config={"max_tokens": 6, "temperature": 0}).content
            r = httpx.post(handle.url + "/v1/completions", timeout=30, json={
                "model": ident, "prompt": "Once upon", "max_tokens": 6, "temperature": 0})
            assert r.status_code == 200 and r.json()["choices"][0]["text"] == cell
        finally:
            shared.llm.unload(ident)
        listed = [i["id"] for m in httpx.get(handle.url + "/api/v1/models", timeout=30).json()["models"]
                  for i in m["loaded_instances"]]
        assert ident not in listed  # (the module's own model stays: every Client() shares the kernel's instances)


# ------------------------------------------------------------------------------------------ /api/v1/chat


def test_api_chat(http, client):
    body = {"model": MODEL, "input": "Hi", "temperature": 0, "max_output_tokens": 8}
    r = http.post("/api/v1/chat", json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["model_instance_id"] == MODEL
    [message] = out["output"]
    assert message["type"] == "message"
    expected = client.llm.get(MODEL).respond("Hi", config={"temperature": 0, "maxTokens": 8}).content
    assert message["content"] == expected
    stats = out["stats"]
    assert stats["input_tokens"] > 0 and stats["total_output_tokens"] == 8
    assert stats["stop_reason"] == "maxPredictedTokensReached" and stats["reasoning_output_tokens"] == 0
    assert stats["tokens_per_second"] > 0 and stats["time_to_first_token_seconds"] >= 0
    # stateful continuation
    r2 = http.post("/api/v1/chat", json={"model": MODEL, "input": "More", "previous_response_id": out["response_id"],
                                         "max_output_tokens": 4, "temperature": 0})
    assert r2.status_code == 200, r2.text
    assert r2.json()["stats"]["input_tokens"] > stats["input_tokens"]
    error_of(http.post("/api/v1/chat", json={"model": MODEL, "input": "x", "previous_response_id": "resp_nope"}),
             404, "previous_response_id")
    r3 = http.post("/api/v1/chat", json={"model": MODEL, "input": [{"type": "message", "content": "Hi"}],
                                         "system_prompt": "Be brief.", "store": False, "max_output_tokens": 2,
                                         "seed": 3, "stop": ["\n"], "top_k": 40, "top_p": 0.9, "min_p": 0.05,
                                         "repeat_penalty": 1.1})
    assert r3.status_code == 200 and "response_id" not in r3.json()


def test_api_chat_validation(http):
    chat = "/api/v1/chat"
    ok = {"model": MODEL, "input": "Hi"}
    error_of(http.post(chat, json={**ok, "temperature": 5}), 400, "temperature")
    error_of(http.post(chat, json={**ok, "temperature": "hot"}), 400, "temperature")
    e = error_of(http.post(chat, json={**ok, "max_output_tokens": 0}), 400, "max_output_tokens")
    assert "max_output_tokens" in e["message"]
    e = error_of(http.post(chat, json={**ok, "max_tokens": 5}), 400, "max_tokens")
    assert "max_output_tokens" in e["message"]
    error_of(http.post(chat, json={**ok, "stream": "yes"}), 400, "stream")
    error_of(http.post(chat, json={**ok, "top_k": True}), 400, "top_k")
    error_of(http.post(chat, json={**ok, "context_overflow_policy": "wrap"}), 400, "context_overflow_policy")
    error_of(http.post(chat, json={**ok, "integrations": ["mcp/x"]}), 400, "integrations")
    error_of(http.post(chat, json={**ok, "reasoning": "high"}), 400, "reasoning")
    error_of(http.post(chat, json={"model": MODEL, "input": [{"type": "image", "data_url": "data:,"}]}), 400,
             "input[0]")
    error_of(http.post(chat, json={"model": MODEL, "input": [{"type": "message", "content": "x", "x": 1}]}), 400,
             "input[0].x")
    error_of(http.post(chat, json={"model": MODEL}), 400, "input")
    error_of(http.post(chat, json={"model": "no-such-model", "input": "x"}), 404, "model")


def test_api_chat_stream(http):
    body = {"model": MODEL, "input": "Hi", "temperature": 0, "max_output_tokens": 12, "stream": True}
    with http.stream("POST", "/api/v1/chat", json=body) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        text = r.read().decode()
    events = sse_events(text)
    names = [name for name, _ in events]
    assert names[:4] == ["chat.start", "prompt_processing.start", "prompt_processing.end", "message.start"]
    assert names[-2:] == ["message.end", "chat.end"]
    assert all(n == "message.delta" for n in names[4:-2]) and len(names) > 6
    payloads = [json.loads(data) for _, data in events]
    assert all(p["type"] == n for p, n in zip(payloads, names))
    streamed = "".join(p["content"] for p in payloads if p["type"] == "message.delta")
    result = payloads[-1]["result"]
    assert result["output"][0]["content"] == streamed and result["stats"]["total_output_tokens"] == 12
    plain = http.post("/api/v1/chat", json={**body, "stream": False}).json()
    assert plain["output"][0]["content"] == streamed


def test_api_chat_jit_loads_with_context_length(http, client):
    r = http.post("/api/v1/chat", json={"model": MODEL + ":jit", "input": "x"})
    error_of(r, 404, "model")  # an unknown instance id is not loaded on the fly
    client.llm.unload(MODEL)
    try:
        with http.stream("POST", "/api/v1/chat", json={"model": MODEL, "input": "Hi", "stream": True,
                                                       "max_output_tokens": 3, "context_length": 512}) as r:
            names = [n for n, _ in sse_events(r.read().decode())]
        assert names[:4] == ["chat.start", "model_load.start", "model_load.progress", "model_load.end"]
        assert client.llm.get(MODEL).get_context_length() == 512
    finally:
        client.llm.unload_all()
        client.llm.load(MODEL, config={"context_length": 2048})


def test_client_disconnect_mid_stream_frees_the_model(http):
    body = {"model": MODEL, "input": "Once upon a time", "max_output_tokens": 1500, "stream": True,
            "context_overflow_policy": "stopAtLimit"}
    with http.stream("POST", "/api/v1/chat", json=body) as r:
        assert r.status_code == 200
        next(r.iter_lines())
    t0 = time.monotonic()
    r = http.post("/api/v1/chat", json={"model": MODEL, "input": "Hi", "max_output_tokens": 2})
    assert r.status_code == 200 and time.monotonic() - t0 < 10


def test_stop_with_a_stream_in_flight(client):
    handle = rest.serve(port=0, client=client)
    body = {"model": MODEL, "input": "Once upon a time", "max_output_tokens": 1500, "stream": True,
            "context_overflow_policy": "stopAtLimit"}
    started = threading.Event()

    def reader() -> None:
        try:
            with httpx.stream("POST", handle.url + "/api/v1/chat", json=body, timeout=30) as r:
                for _ in r.iter_lines():
                    started.set()
        except httpx.HTTPError:
            pass
        started.set()

    thread = threading.Thread(target=reader)
    thread.start()
    assert started.wait(10)
    t0 = time.monotonic()
    handle.stop()
    assert time.monotonic() - t0 < 5 and not handle.running
    thread.join(10)
    assert not thread.is_alive()
    # the instance is free again for the notebook
    assert client.llm.get(MODEL).complete("Once", config={"max_tokens": 2}).stats.predicted_tokens_count == 2


# ------------------------------------------------------------------------------------------ busy


def test_busy_notebook_prediction_is_409(http, client):
    stream = client.llm.get(MODEL).complete_stream("Once upon a time", config={"max_tokens": 200})
    next(iter(stream))  # a cell is generating: the engine lock is held
    try:
        e = error_of(http.post("/v1/completions", json={"model": MODEL, "prompt": "x", "max_tokens": 2}), 409, "model")
        assert e["type"] == "model_busy"
        error_of(http.post("/api/v1/chat", json={"model": MODEL, "input": "x", "stream": True}), 409, "model")
    finally:
        stream.close()
    assert http.post("/v1/completions", json={"model": MODEL, "prompt": "x", "max_tokens": 2}).status_code == 200


def test_queue_waits_then_429(client):
    with rest.serve(port=0, client=client, queue_timeout=0.3) as handle:
        url = handle.url + "/v1/completions"
        body = {"model": MODEL, "prompt": "Once", "max_tokens": 3, "temperature": 0}
        with handle._hold_instance(MODEL):
            t0 = time.monotonic()
            r = httpx.post(url, json=body, timeout=10)
            waited = time.monotonic() - t0
            e = error_of(r, 429, "model")
            assert e["type"] == "model_busy" and r.headers["retry-after"] == "1" and 0.25 <= waited < 5
        # a request that arrives while the instance is held waits and then succeeds
        results = {}
        with handle._hold_instance(MODEL):
            worker = threading.Thread(target=lambda: results.setdefault("r", httpx.post(url, json=body, timeout=10)))
            worker.start()
            time.sleep(0.1)
        worker.join(10)
        assert results["r"].status_code == 200, results["r"].text


# ------------------------------------------------------------------------------------------ OpenAI


def test_openai_chat_completions(http):
    body = {"model": MODEL, "messages": [{"role": "system", "content": "Be brief."},
                                         {"role": "user", "content": [{"type": "text", "text": "Hi"}]}],
            "max_tokens": 6, "temperature": 0}
    r = http.post("/v1/chat/completions", json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["object"] == "chat.completion" and out["model"] == MODEL and out["id"].startswith("chatcmpl-")
    choice = out["choices"][0]
    assert choice["message"]["role"] == "assistant" and choice["finish_reason"] == "length"
    assert out["usage"]["completion_tokens"] == 6
    assert out["usage"]["total_tokens"] == out["usage"]["prompt_tokens"] + 6
    with http.stream("POST", "/v1/chat/completions",
                     json={**body, "stream": True, "stream_options": {"include_usage": True}}) as r:
        events = sse_events(r.read().decode())
    assert events[-1] == (None, "[DONE]")
    chunks = [json.loads(d) for _, d in events[:-1]]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == choice["message"]["content"]
    assert chunks[-2]["choices"][0]["finish_reason"] == "length" and chunks[-1]["usage"]["completion_tokens"] == 6
    # validation
    error_of(http.post("/v1/chat/completions", json={**body, "n": 2}), 400, "n")
    error_of(http.post("/v1/chat/completions", json={**body, "tools": [{"type": "function"}]}), 400, "tools")
    error_of(http.post("/v1/chat/completions", json={**body, "messages": []}), 400, "messages")
    error_of(http.post("/v1/chat/completions", json={**body, "messages": [{"role": "robot", "content": "x"}]}), 400,
             "messages[0].role")
    error_of(http.post("/v1/chat/completions", json={**body, "temperature": 3}), 400, "temperature")
    error_of(http.post("/v1/chat/completions", json={**body, "response_format": {"type": "xml"}}), 400,
             "response_format.type")
    error_of(http.post("/v1/chat/completions", json={**body, "frobnicate": True}), 400, "frobnicate")


def test_openai_json_schema_response_format(http):
    schema = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 8}}, "required": ["name"]}
    r = http.post("/v1/chat/completions", json={
        "model": MODEL, "messages": [{"role": "user", "content": "Name?"}], "max_tokens": 40, "temperature": 0,
        "response_format": {"type": "json_schema", "json_schema": {"name": "n", "schema": schema}}})
    assert r.status_code == 200, r.text
    choice = r.json()["choices"][0]
    if choice["finish_reason"] == "stop":
        assert isinstance(json.loads(choice["message"]["content"])["name"], str)


def test_openai_completions(http, client):
    body = {"model": MODEL, "prompt": "Once upon a time", "max_tokens": 7, "temperature": 0}
    r = http.post("/v1/completions", json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["object"] == "text_completion" and out["choices"][0]["finish_reason"] == "length"
    expected = client.llm.get(MODEL).complete("Once upon a time", config={"maxTokens": 7, "temperature": 0}).content
    assert out["choices"][0]["text"] == expected
    default = http.post("/v1/completions", json={"model": MODEL, "prompt": ["Once"], "temperature": 0}).json()
    assert default["usage"]["completion_tokens"] <= 16  # OpenAI's default max_tokens
    with http.stream("POST", "/v1/completions", json={**body, "stream": True}) as r:
        events = sse_events(r.read().decode())
    assert events[-1] == (None, "[DONE]")
    chunks = [json.loads(d) for _, d in events[:-1]]
    assert "".join(c["choices"][0]["text"] for c in chunks) == expected
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    error_of(http.post("/v1/completions", json={**body, "prompt": ["a", "b"]}), 400, "prompt")
    error_of(http.post("/v1/completions", json={**body, "echo": True}), 400, "echo")
    error_of(http.post("/v1/completions", json={**body, "max_tokens": -1}), 400, "max_tokens")


def test_official_openai_client(server):
    openai = pytest.importorskip("openai")
    oai = openai.OpenAI(base_url=server.url + "/v1", api_key="not-needed", max_retries=0, timeout=30)
    assert MODEL in [m.id for m in oai.models.list()]
    chat = oai.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}], max_tokens=5,
                                       temperature=0)
    assert chat.choices[0].finish_reason == "length" and chat.usage.completion_tokens == 5
    streamed = "".join(c.choices[0].delta.content or "" for c in oai.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Hi"}], max_tokens=5, temperature=0, stream=True)
        if c.choices)
    assert streamed == chat.choices[0].message.content
    completion = oai.completions.create(model=MODEL, prompt="Once upon a time", max_tokens=4, temperature=0)
    assert completion.choices[0].text and completion.usage.completion_tokens == 4
    with pytest.raises(openai.NotFoundError):
        oai.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "Hi"}])
    with pytest.raises(openai.BadRequestError) as info:
        oai.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}], temperature=9)
    assert info.value.body["param"] == "temperature"


# ------------------------------------------------------------------------------------------ load test


def test_load_200_requests_4_threads_nothing_lost_or_interleaved(server, client):
    """200 requests from 4 threads on one instance: all answered, each exactly as when run alone."""
    prompts = ["Once upon a time", "The cat", "Lily went", "One day"]
    body = {"model": MODEL, "max_tokens": 12, "temperature": 0}
    llm = client.llm.get(MODEL)
    expected = {p: llm.complete(p, config={"maxTokens": 12, "temperature": 0}).content for p in prompts}
    total, per_thread = 200, 50
    results: list[tuple[str, int, str]] = []
    lock = threading.Lock()

    def worker(i: int) -> None:
        prompt = prompts[i]
        with httpx.Client(base_url=server.url, timeout=60) as c:
            for n in range(per_thread):
                kind = n % 4
                if kind == 0:
                    r = c.post("/v1/completions", json={**body, "prompt": prompt})
                    text = r.json()["choices"][0]["text"] if r.status_code == 200 else r.text
                elif kind == 1:
                    with c.stream("POST", "/v1/completions", json={**body, "prompt": prompt, "stream": True}) as s:
                        raw = s.read().decode()
                    text = "".join(json.loads(d)["choices"][0]["text"] for _, d in sse_events(raw)[:-1]) \
                        if s.status_code == 200 else raw
                    r = s
                elif kind == 2:
                    r = c.post("/v1/completions", json={**body, "prompt": [prompt]})
                    text = r.json()["choices"][0]["text"] if r.status_code == 200 else r.text
                else:
                    r = c.get("/api/v1/models")
                    text = expected[prompt] if r.status_code == 200 and r.json()["models"] else r.text
                with lock:
                    results.append((prompt, r.status_code, text))

    t0 = time.monotonic()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    elapsed = time.monotonic() - t0
    assert not any(t.is_alive() for t in threads)
    assert len(results) == total  # nothing lost
    errors = [(p, s, t[:200]) for p, s, t in results if s != 200]
    assert errors == []
    wrong = [(p, t) for p, s, t in results if t != expected[p]]
    assert wrong == []  # nothing interleaved: every answer is what the prompt gives alone
    print(f"\nload test: {total} requests from 4 threads in {elapsed:.2f} s, {len(errors)} errors")
    assert elapsed < 60
