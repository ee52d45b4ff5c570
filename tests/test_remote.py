"""The remote engine (lmsext.remote.RemoteEngine) against real servers on loopback: lmsext's own REST server in
another process (LM Studio REST v1) and llama-cpp-python's ``llama_cpp.server`` (OpenAI-compatible only), the same
API tests as on the in-kernel engine; then the failures, each one line with the client's state kept."""

from __future__ import annotations

import httpx
import pytest
from remote_servers import broken_server, free_port, llama_cpp_server, lmsext_server, silent_server

import lmsext
from lmsext.remote import RemoteEngine

GREEDY = {"maxTokens": 8, "temperature": 0}


@pytest.fixture(scope="module")
def lmsext_url():
    with lmsext_server() as url:
        yield url


@pytest.fixture(scope="module")
def llama_url(stories_path):
    with llama_cpp_server(str(stories_path)) as url:
        yield url


@pytest.fixture(scope="module")
def local_greedy(module_client):
    """What the in-kernel engine answers, greedily, to the prompts below (the servers run the same model)."""
    llm = module_client.llm.model("stories260K")
    return {"complete": llm.complete("Once upon a time", config=GREEDY).content,
            "respond": llm.respond("Hi", config=GREEDY).content}


@pytest.fixture(params=["lmsext", "llama_cpp"])
def remote(request, lmsext_url, llama_url):
    """A Client on each server; whatever it loaded is unloaded afterwards."""
    client = lmsext.Client(lmsext_url if request.param == "lmsext" else llama_url)
    yield client
    client.llm.unload_all()
    client.close()


def test_the_server_is_asked_once_which_api_it_speaks(lmsext_url, llama_url):
    v1, oa = RemoteEngine(lmsext_url), RemoteEngine(llama_url + "/v1")
    assert v1.describe() == f"{lmsext_url} (LM Studio REST v1, lmsext server)"
    assert oa.describe() == f"{llama_url} (OpenAI-compatible)" and oa.url == llama_url
    assert lmsext.Client(lmsext_url.removeprefix("http://")).engine.url == lmsext_url  # host:port is enough


def test_complete_and_respond_match_the_in_kernel_engine(remote, local_greedy):
    llm = remote.llm.model("stories260K")
    done = llm.complete("Once upon a time", config=GREEDY)
    assert done.content == local_greedy["complete"]
    assert done.stats.predicted_tokens_count == 8 and done.stats.stop_reason == "maxPredictedTokensReached"
    assert done.stats.tokens_per_second > 0 and done.stats.time_to_first_token_sec > 0
    assert any(n.startswith("stats") for n in done.stats.notes)  # says which figures the server reported
    reply = llm.respond("Hi", config=GREEDY)
    assert reply.content and reply.stats.predicted_tokens_count == 8
    if "OpenAI" not in remote.describe_engine():  # llama_cpp.server applies its own chat format (llama-2)
        assert reply.content == local_greedy["respond"]
    chat = lmsext.Chat()
    chat.add_user_message("Hi")
    chat.add_assistant_response(reply.content)
    chat.add_user_message("And then?")
    assert llm.respond(chat, config=GREEDY).stats.predicted_tokens_count == 8  # a history: /v1/chat/completions


def test_streaming_and_cancel_keep_the_partial_text(remote):
    llm = remote.llm.model("stories260K")
    stream = llm.complete_stream("Once upon a time", config={"maxTokens": 300})
    seen = []
    for fragment in stream:
        seen.append(fragment.content)
        if len(seen) == 3:
            stream.cancel()
    result = stream.result()
    assert result.stats.stop_reason == "userStopped" and result.content == "".join(seen) and len(seen) == 3
    assert llm.complete("Once", config={"maxTokens": 2}).stats.predicted_tokens_count == 2  # still usable


def test_lmsext_server_loads_with_settings_and_unloads(lmsext_url):
    client = lmsext.Client(lmsext_url)
    llm = client.llm.load("stories260K", config={"contextLength": 256})
    assert llm.load_result.config["context_length"] == 256 and llm.get_context_length() == 256
    assert f"loaded by {lmsext_url} (LM Studio REST v1, lmsext server)" in llm.load_result.notes[0]
    assert client.llm.model("stories260K", config={"contextLength": 512}) .load_result.reused  # JIT: same instance
    listed = httpx.get(lmsext_url + "/api/v1/models").json()["models"][0]["loaded_instances"]
    assert [i["id"] for i in listed] == ["stories260K"]
    llm.unload()
    assert httpx.get(lmsext_url + "/api/v1/models").json()["models"][0]["loaded_instances"] == []
    assert not llm.loaded
    with pytest.raises(lmsext.ModelNotLoadedError):
        llm.complete("Once")


def test_an_openai_only_server_refuses_load_settings_in_one_line(llama_url):
    client = lmsext.Client(llama_url)
    with pytest.raises(lmsext.ConfigError) as err:
        client.llm.load("stories260K", config={"contextLength": 256})
    assert str(err.value) == (f"contextLength: {llama_url} speaks only the OpenAI-compatible API, which loads models "
                              "when the server starts; start the server with that setting instead, or remove "
                              "contextLength")
    assert client.llm.list_loaded() == []
    llm = client.llm.model("stories260K")  # served already: loaded without settings
    assert "the server loaded this model at start-up" in llm.load_result.notes[0]
    assert llm.complete("Once", config={"maxTokens": 3, "temperature": 0}).stats.predicted_tokens_count == 3
    with pytest.raises(lmsext.ConfigError, match="^cpuThreads: not supported on a remote server"):
        llm.complete("Once", config={"cpuThreads": 2})
    probs = llm.respond("Hi", config={"maxTokens": 2, "temperature": 0, "logProbs": 2}).logprobs
    assert len(probs) == 2 and all(len(p.top) == 2 and p.logprob <= 0 for p in probs)
    llm.unload()  # every client on this address shares it (lmsext.registry): the next test starts clean


def test_unknown_model_and_capabilities_are_one_line(lmsext_url):
    client = lmsext.Client(lmsext_url)
    with pytest.raises(lmsext.ModelNotFoundError, match=rf"^no model 'nope' on {lmsext_url} \(it serves: stories260K\)$"):
        client.llm.load("nope")
    llm = client.llm.model("stories260K")
    try:
        with pytest.raises(lmsext.LmsextError, match="^tokenize needs an in-kernel engine"):
            llm.tokenize("Once")
        with pytest.raises(lmsext.LmsextError, match="memory estimate needs an in-kernel engine; RemoteEngine"):
            llm.estimate()
    finally:
        llm.unload()


def test_show_special_is_refused_in_one_line_on_a_server(lmsext_url):
    llm = lmsext.Client(lmsext_url).llm.model("stories260K")
    try:
        with pytest.raises(lmsext.LmsextError, match=r"^show_special \(special tokens as text\) needs an in-kernel "
                                                     r"engine; RemoteEngine does not provide it$"):
            llm.complete("Once", {"maxTokens": 2}, show_special=True)
        assert llm.complete("Once", {"maxTokens": 2}).stats.predicted_tokens_count == 2
    finally:
        llm.unload()


def test_api_key_refused_then_accepted():
    with lmsext_server(api_key="s3cret") as url:
        with pytest.raises(lmsext.RemoteError, match=r"refused the request: 401 .*API key missing or wrong"):
            lmsext.Client(url).list_downloaded_models()
        keyed = lmsext.Client(url, api_key="s3cret")
        assert [m.model_key for m in keyed.list_downloaded_models()] == ["stories260K"]


def test_connection_refused_timeout_5xx_and_a_dying_stream_are_one_line(module_client):
    kept = module_client.llm.model("stories260K")  # the kernel's own state survives every failure below
    with pytest.raises(lmsext.RemoteError, match=r"^cannot connect to http://127\.0\.0\.1:\d+ \(GET /api/v1/models\)"):
        lmsext.Client(f"http://127.0.0.1:{free_port()}").list_downloaded_models()
    with silent_server() as url:
        with pytest.raises(lmsext.RemoteError, match=rf"^{url} \(GET /api/v1/models\) did not answer within 0.5 s$"):
            RemoteEngine(url, timeout=0.5).api
    with broken_server() as url:
        client = lmsext.Client(url)
        llm = client.llm.model("broken-model")
        with pytest.raises(lmsext.RemoteError, match=r"\(POST /v1/chat/completions\) failed: 500 CUDA out of memory$"):
            llm.respond("Hi")
        result = llm.complete("Once")
        assert result.content == "Once upon" and result.stats.stop_reason == "failed"
        assert "the server closed the connection mid-answer" in result.stats.error
        assert "\n" not in result.stats.error and client.llm.list_loaded() == [llm]
    assert kept.complete("Once", config={"maxTokens": 2}).stats.predicted_tokens_count == 2


def shown(cap) -> str:
    """Everything a magic printed or displayed, as text."""
    return cap.stdout + cap.stderr + "".join(str(o.data.get("text/plain", "")) for o in cap.outputs)


def test_magics_run_unchanged_on_a_connected_server(ip, lmsext_url, llama_url, unload_all):
    from magic_runner import run

    from lmsext.client import default_client
    local = default_client()
    try:
        _, cap = run(ip, f"%lm_connect {lmsext_url}")
        assert f"connected to {lmsext_url} (LM Studio REST v1, lmsext server); it serves: stories260K" in shown(cap)
        remote = default_client()
        assert remote is not local and isinstance(remote.engine, RemoteEngine)
        run(ip, "%lm_load stories260K --context-length 256")
        assert [m.get_context_length() for m in remote.llm.list_loaded()] == [256]
        _, cap = run(ip, "%%lm_respond --max-tokens 4 --temperature 0", "Hi")
        assert ip.user_ns["_lm"].stats.predicted_tokens_count == 4 and ip.user_ns["_lm"].content in shown(cap)
        run(ip, "%%lm_complete --max-tokens 4 --temperature 0", "Once upon a time")
        assert ip.user_ns["_lm"].content == ", there was a"
        _, cap = run(ip, "%lm_ps")
        assert "stories260K" in shown(cap)
        run(ip, "%lm_unload stories260K")
        assert remote.llm.list_loaded() == []
        assert httpx.get(lmsext_url + "/api/v1/models").json()["models"][0]["loaded_instances"] == []
        # an OpenAI-only server: a load flag is one red line, the plain load works
        run(ip, f"%lm_connect {llama_url}")
        _, cap = run(ip, "%lm_load stories260K --context-length 256")
        assert "contextLength:" in shown(cap)
        assert default_client().llm.list_loaded() == []
        run(ip, "%lm_load stories260K")
        run(ip, "%%lm_complete --max-tokens 4 --temperature 0", "Once upon a time")
        assert ip.user_ns["_lm"].content == ", there was a"
        _, cap = run(ip, "%lm_connect local")
        assert "back on the in-kernel engine" in shown(cap) and default_client() is local
        _, cap = run(ip, f"%lm_connect http://127.0.0.1:{free_port()}")  # unreachable: one line, nothing switched
        assert "cannot connect to http://127.0.0.1:" in shown(cap) and default_client() is local
    finally:
        from lmsext.client import set_default_client
        set_default_client(local)
