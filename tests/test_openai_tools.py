"""Tool calling through the kernel's OpenAI-compatible server (real uvicorn on loopback, real engine):
``tools`` / ``tool_choice`` in, ``tool_calls`` out, whole and streamed, and the round trip with the
``openai`` package (a forced call, the tool's result sent back, the answer)."""

from __future__ import annotations

import json
import os

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("uvicorn")

import lmsext  # noqa: E402
from lmsext import server as rest  # noqa: E402

MODEL = "stories260K"
ADD = {"type": "function", "function": {
    "name": "add", "description": "Add two integers",
    "parameters": {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
                   "required": ["a", "b"]}}}
ECHO = {"type": "function", "function": {
    "name": "echo", "parameters": {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}}}
BODY = {"model": MODEL, "messages": [{"role": "user", "content": "What is 2 + 3?"}], "temperature": 0,
        "max_tokens": 100, "tools": [ADD, ECHO]}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    old = os.environ.get("LMSEXT_MODELS_PATH")
    os.environ["LMSEXT_MODELS_PATH"] = str(tmp_path_factory.mktemp("models"))
    client = lmsext.Client()
    client.llm.load(MODEL, config={"context_length": 1024})
    handle = rest.serve(port=0, client=client)
    yield handle
    handle.stop()
    client.llm.unload_all()
    if old is None:
        os.environ.pop("LMSEXT_MODELS_PATH", None)
    else:
        os.environ["LMSEXT_MODELS_PATH"] = old


@pytest.fixture
def http(server):
    with httpx.Client(base_url=server.url, timeout=60) as c:
        yield c


def _sse(text: str) -> list[dict]:
    data = [line[6:] for line in text.splitlines() if line.startswith("data: ")]
    assert data[-1] == "[DONE]"
    return [json.loads(d) for d in data[:-1]]


def test_required_tool_choice_returns_tool_calls_whole_and_streamed(http):
    r = http.post("/v1/chat/completions", json={**BODY, "tool_choice": "required"})
    assert r.status_code == 200, r.text
    choice = r.json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    message = choice["message"]
    assert message["role"] == "assistant" and message["content"] is None
    (call,) = message["tool_calls"]
    assert call["type"] == "function" and call["id"] == "call_0" and call["function"]["name"] in ("add", "echo")
    arguments = json.loads(call["function"]["arguments"])  # OpenAI's form: a JSON string
    assert set(arguments) == ({"a", "b"} if call["function"]["name"] == "add" else {"n"})

    with http.stream("POST", "/v1/chat/completions", json={**BODY, "tool_choice": "required", "stream": True}) as s:
        chunks = _sse(s.read().decode())
    deltas = [c["choices"][0]["delta"] for c in chunks]
    assert deltas[0] == {"role": "assistant", "content": ""}
    assert deltas[1] == {"tool_calls": [{"index": 0, **call}]}  # the same call, temperature 0
    assert deltas[2] == {} and chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_tool_choice_by_name_and_none(http):
    r = http.post("/v1/chat/completions", json={**BODY, "tool_choice": {"type": "function",
                                                                        "function": {"name": "echo"}}})
    (call,) = r.json()["choices"][0]["message"]["tool_calls"]
    assert call["function"]["name"] == "echo" and set(json.loads(call["function"]["arguments"])) == {"n"}
    r = http.post("/v1/chat/completions", json={**BODY, "tool_choice": "none", "max_tokens": 8})
    choice = r.json()["choices"][0]
    assert "tool_calls" not in choice["message"] and choice["finish_reason"] == "length"
    assert isinstance(choice["message"]["content"], str)


def test_a_reply_without_a_call_streams_as_text_with_auto(http):
    body = {**BODY, "max_tokens": 8}
    whole = http.post("/v1/chat/completions", json=body).json()["choices"][0]
    assert "tool_calls" not in whole["message"] and whole["finish_reason"] == "length"
    with http.stream("POST", "/v1/chat/completions", json={**body, "stream": True}) as s:
        chunks = _sse(s.read().decode())
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert text == whole["message"]["content"]


def test_openai_package_round_trip(server):
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="none")
    messages = [{"role": "user", "content": "What is 2 + 3?"}]
    first = client.chat.completions.create(model=MODEL, messages=messages, tools=[ADD], tool_choice="required",
                                           temperature=0, max_tokens=100)
    assert first.choices[0].finish_reason == "tool_calls"
    call = first.choices[0].message.tool_calls[0]
    args = json.loads(call.function.arguments)
    messages += [first.choices[0].message.model_dump(exclude_none=True),
                 {"role": "tool", "tool_call_id": call.id, "content": str(args["a"] + args["b"])}]
    second = client.chat.completions.create(model=MODEL, messages=messages, tools=[ADD], temperature=0,
                                            max_tokens=8)
    assert second.choices[0].finish_reason == "length" and second.choices[0].message.tool_calls is None
    assert second.usage.prompt_tokens > first.usage.prompt_tokens  # the call and its result are in the prompt


@pytest.mark.parametrize("change, param, message", [
    ({"tools": [{"type": "function", "function": {"name": "a b"}}]}, "tools",
     r"^tools\[0\]\.function\.name=.a b.: must be 1 to 64"),
    ({"tool_choice": "sometimes"}, "tool_choice", r"tool_choice='sometimes': must be"),
    ({"tool_choice": {"type": "function", "function": {"name": "nope"}}}, "tool_choice", r"names no tool"),
    ({"tools": None, "tool_choice": "required"}, "tool_choice", r"^tool_choice needs tools$"),
    ({"messages": [{"role": "tool", "content": "5"}]}, "messages[0].tool_call_id", r"needs the tool_call_id"),
    ({"messages": [{"role": "assistant", "content": "", "tool_calls": [
        {"id": "x", "type": "function", "function": {"name": "add", "arguments": "{nope"}}]}]},
     "messages[0].tool_calls[0].function.arguments", r"not JSON"),
])
def test_bad_tool_requests_are_one_line_400s(http, change, param, message):
    r = http.post("/v1/chat/completions", json={**BODY, **change})
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["param"] == param and "\n" not in error["message"]
    assert __import__("re").search(message, error["message"]), error["message"]


def test_the_remote_engine_passes_tools_and_reads_tool_calls(server):
    """act() on a RemoteEngine connected to the kernel's server: the server forces the call (tool_choice required),
    its streamed tool_calls become the result's tool_calls, the tool runs here and its result goes back."""
    client = lmsext.Client(server.url)
    try:
        remote = client.llm.model(MODEL)
        ran = []

        def add(a: int, b: int) -> int:
            """Add two integers."""
            ran.append((a, b))
            return a + b

        result = remote.act("What is 2 + 3?", [add], max_prediction_rounds=2,
                            config={"rawTools": {"type": "toolArray", "force": True}, "temperature": 0,
                                    "maxTokens": 100})
        assert result.rounds == 2 and len(ran) == 1
        outcome = result.tool_calls[0]
        assert outcome.error is False and outcome.result == str(sum(ran[0]))
        assert [m["role"] for m in result.chat.messages] == ["user", "assistant", "tool", "assistant"]
    finally:
        client.engine.close()
