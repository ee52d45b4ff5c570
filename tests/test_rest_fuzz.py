"""Randomised REST fuzz: random JSON shaped like each endpoint's schema, plus random junk, against a real
server on loopback. Asserts: never a 5xx, every error is one JSON line, the server keeps running, and
the victim model's temperature-0 reply is the same afterwards.

Bounded and reproducible: hypothesis with ``derandomize=True`` (the same examples on every run), at most
50 examples per endpoint and 50 of junk (300 in all) and 60 s of wall clock for the whole module;
predictions are capped by the server (16 tokens by default, 3 s of wall clock).
"""

from __future__ import annotations

import json
import time

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("uvicorn")
hypothesis = pytest.importorskip("hypothesis")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from lmsext import server as rest  # noqa: E402

EXAMPLES_PER_ENDPOINT = 50
BUDGET_SECONDS = 60.0
GREEDY = {"temperature": 0, "maxTokens": 12}
SETTINGS = settings(max_examples=EXAMPLES_PER_ENDPOINT, derandomize=True, deadline=None, database=None,
                    suppress_health_check=list(HealthCheck))

json_leaf = (st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=True, allow_infinity=True)
             | st.text(max_size=20))
json_value = st.recursive(json_leaf, lambda inner: st.lists(inner, max_size=4)
                          | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)


def _either(good: st.SearchStrategy) -> st.SearchStrategy:
    """Plausible values for a field (the test corrupts one field of a body in four with any JSON at all, so most
    requests reach the model)."""
    return good


MODEL = _either(st.sampled_from(["victim"] * 6 + ["stories260K", "nope-model", "", "victim:2",
                                 "../stories260K", "file:///etc/passwd"]))
TEXT = _either(st.text(max_size=40))
SAMPLING = {
    "temperature": _either(st.floats(0, 2)), "top_p": _either(st.floats(0.01, 1)),
    "top_k": _either(st.integers(0, 100)), "min_p": _either(st.floats(0, 1)),
    "repeat_penalty": _either(st.floats(0, 2)), "seed": _either(st.integers(-1, 2**33)),
    "stop": _either(st.lists(st.text(min_size=1, max_size=5), max_size=3) | st.text(max_size=5)),
    "stream": _either(st.booleans()),
}
MAX_TOKENS = _either(st.none() | st.integers(0, 40))
SCHEMA = _either(st.fixed_dictionaries({"type": st.sampled_from(["object", "string", "integer", "array", "objekt"])},
                                       optional={"properties": st.dictionaries(st.text(max_size=5),
                                                                               st.just({"type": "string"}),
                                                                               max_size=2)}))
MESSAGE = _either(st.fixed_dictionaries(
    {"role": st.sampled_from(["system", "user", "user", "user", "assistant", "developer", "tool", "robot"]),
     "content": TEXT | st.lists(st.fixed_dictionaries({"type": st.sampled_from(["text", "text", "image_url"]),
                                                        "text": st.text(max_size=10)}), max_size=2)}))

BODIES = {
    "/v1/completions": st.fixed_dictionaries({"model": MODEL, "prompt": _either(
        TEXT | st.lists(st.text(max_size=10), min_size=1, max_size=1))}, optional={"max_tokens": MAX_TOKENS, **SAMPLING,
        "n": _either(st.sampled_from([1, 1, 1, 2])), "echo": _either(st.sampled_from([False, False, True])),
        "stream_options": _either(st.fixed_dictionaries({"include_usage": st.booleans()}))}),
    "/v1/chat/completions": st.fixed_dictionaries({"model": MODEL, "messages": _either(
        st.lists(MESSAGE, min_size=1, max_size=3))}, optional={"max_tokens": MAX_TOKENS,
        **SAMPLING, "tool_choice": _either(st.sampled_from(["none", "auto", "required"])),
        "response_format": _either(st.fixed_dictionaries(
            {"type": st.sampled_from(["text", "json_object", "json_schema", "xml"])},
            optional={"json_schema": st.fixed_dictionaries({"name": st.just("x"), "schema": SCHEMA})}))}),
    "/api/v1/chat": st.fixed_dictionaries({"model": MODEL, "input": _either(
        TEXT | st.lists(st.fixed_dictionaries({"type": st.sampled_from(["message", "message", "image"]),
                                               "content": st.text(max_size=10)}), min_size=1, max_size=2))},
                                          optional={"system_prompt": TEXT, "max_output_tokens": MAX_TOKENS, **SAMPLING,
        "context_overflow_policy": _either(st.sampled_from(["stopAtLimit", "truncateMiddle", "rollingWindow", "x"])),
        "structured": _either(st.fixed_dictionaries({"type": st.just("json"), "jsonSchema": SCHEMA})),
        "previous_response_id": _either(st.text(max_size=10)), "store": _either(st.booleans()),
        "context_length": _either(st.integers(0, 4096)), "cpu_threads": _either(st.integers(0, 8)),
        "reasoning": _either(st.sampled_from(["off", "off", "on"])), "xtc_probability": _either(st.floats(0, 1))}),
    "/api/v1/models/load": st.fixed_dictionaries({"model": MODEL}, optional={"config": _either(
        st.fixed_dictionaries({}, optional={
            "context_length": _either(st.integers(-5, 10**9)), "eval_batch_size": _either(st.integers(-5, 10**6)),
            "flash_attention": _either(st.booleans()), "num_experts": _either(st.integers(-2, 10)),
            "gpu": _either(st.floats(0, 1) | st.sampled_from(["max", "off"])
                           | st.fixed_dictionaries({}, optional={"main_gpu": st.integers(-2, 2**40),
                                                                 "ratio": st.floats(-1, 2)})),
            "seed": _either(st.integers(-5, 2**40)), "rope_frequency_base": json_value,
            "llama_k_cache_quantization_type": _either(st.sampled_from(["f16", "q8_0", "q4_0", "nope"])),
            "try_mmap": _either(st.booleans())}))}),
    "/api/v1/models/unload": st.fixed_dictionaries({}, optional={
        "instance_id": _either(st.sampled_from(["stories260K", "nope", "", "stories260K:2"]))}),
}
JUNK = st.one_of(st.binary(max_size=64), json_value.map(lambda v: json.dumps(v).encode()),
                 st.dictionaries(st.text(max_size=8), json_value, max_size=5).map(lambda v: json.dumps(v).encode()))


@pytest.fixture(scope="module")
def fuzz(module_client, stories_path):
    victim = module_client.llm.load(str(stories_path), config={"contextLength": 512, "seed": 3}, identifier="victim")
    reference = victim.complete("Once upon a time", config=GREEDY).content
    handle = rest.serve(port=0, client=module_client, default_max_tokens=16, prediction_timeout=3.0,
                        queue_timeout=5.0, stall_timeout=3.0)
    http = httpx.Client(base_url=handle.url, timeout=60)
    state = {"deadline": time.monotonic() + BUDGET_SECONDS, "requests": 0, "statuses": {}}
    yield module_client, victim, reference, handle, http, state
    http.close()
    handle.stop()
    print(f"\nREST fuzz: {state['requests']} requests, statuses {dict(sorted(state['statuses'].items()))}")


def _send(fuzz, path: str, content: bytes, content_type: str | None = "application/json") -> None:
    client, victim, _, handle, http, state = fuzz
    if time.monotonic() > state["deadline"]:
        return  # the module's time budget is spent: the remaining examples pass without a request
    headers = {} if content_type is None else {"Content-Type": content_type}
    r = http.post(path, content=content, headers=headers)
    state["requests"] += 1
    state["statuses"][r.status_code] = state["statuses"].get(r.status_code, 0) + 1
    assert r.status_code < 500, (path, content[:300], r.status_code, r.text[:500])
    if r.status_code >= 400:
        message = r.json()["error"]["message"]
        assert message and "\n" not in message and "Traceback" not in message, message
    assert handle.running
    for llm in client.llm.list_loaded():  # JIT loads and loads over HTTP: only the victim stays
        if llm.identifier != "victim":
            client.llm.unload(llm)


@pytest.mark.parametrize("path", sorted(BODIES))
def test_fuzz_endpoint_schema(fuzz, path):
    @SETTINGS
    @given(body=BODIES[path], data=st.data())
    def run(body, data):
        if body and data.draw(st.sampled_from(["as is", "as is", "as is", "one field corrupted"])) != "as is":
            body[data.draw(st.sampled_from(sorted(body)))] = data.draw(json_value)
        if path == "/api/v1/models/unload" and body.get("instance_id") == "victim":
            return
        _send(fuzz, path, json.dumps(body).encode())
    run()


def test_fuzz_junk(fuzz):
    @SETTINGS
    @given(path=st.sampled_from(sorted(BODIES)), content=JUNK,
           ctype=st.sampled_from(["application/json", "application/json", None, "text/plain"]))
    def run(path, content, ctype):
        if path == "/api/v1/models/unload" and b"victim" in content:
            return
        _send(fuzz, path, content, ctype)
    run()


def test_victim_unchanged_after_fuzz(fuzz):
    client, victim, reference, handle, http, state = fuzz
    assert handle.running and victim.loaded
    assert victim.complete("Once upon a time", config=GREEDY).content == reference
    r = http.post("/v1/completions", json={"model": "victim", "prompt": "Once upon a time", "temperature": 0,
                                           "max_tokens": 12})
    assert r.status_code == 200 and r.json()["choices"][0]["text"] == reference
    assert state["requests"] > 50
