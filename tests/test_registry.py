"""One registry per kernel (lmsext.registry): every ``lmsext.Client()`` on the in-kernel engine shares the loaded
instances with the magics, the panels and each other, as LM Studio's clients share one server; clients on one
server address share its instances; ``Client.close()`` only detaches."""

from __future__ import annotations

import pytest
from IPython.utils.capture import capture_output
from remote_servers import lmsext_server

import lmsext
from lmsext import session as session_module


@pytest.fixture
def magics(ip, unload_all, monkeypatch):
    monkeypatch.setattr(session_module, "_session", None)
    return ip


def shown(cap) -> str:
    return cap.stdout + "".join(o.data.get("text/plain", "") + o.data.get("text/html", "") for o in cap.outputs)


def test_jit_across_clients_reuses_the_instance(unload_all, stories_path):
    first, second = lmsext.Client(), lmsext.Client()
    loaded = first.llm.load("stories260K", config={"contextLength": 1536}, identifier="shared")
    found = second.llm.model("stories260K")  # JIT: no second copy with other settings
    assert found is loaded and found.get_context_length() == 1536
    assert [m.identifier for m in second.llm.list_loaded()] == ["shared"]
    assert second.llm.model(str(stories_path)) is loaded  # by its file too
    assert second.llm.model("stories260K", config={"contextLength": 4096}).get_context_length() == 1536
    second.llm.unload("shared")  # an unload through one client is seen by all
    assert not loaded.loaded and first.llm.list_loaded() == [] and lmsext.default_client().llm.list_loaded() == []


def test_close_only_detaches(unload_all):
    first = lmsext.Client()
    llm = first.llm.load("stories260K", config={"contextLength": 512}, identifier="kept")
    first.close()
    with lmsext.Client() as other:
        assert other.llm.get("kept") is llm and llm.loaded
        assert llm.complete("Once upon a time", {"maxTokens": 3, "temperature": 0}).stats.predicted_tokens_count == 3
    assert lmsext.Client().llm.get("kept").loaded


def test_client_after_lm_load_reuses_the_magics_instance(magics):
    with capture_output():
        magics.run_line_magic("lm_load", "stories260K --context-length 2048")
    llm = lmsext.Client().llm.model("stories260K")  # the README's example
    assert llm.identifier == "stories260K" and llm.get_context_length() == 2048
    assert [m.identifier for m in lmsext.default_client().llm.list_loaded()] == ["stories260K"]


def test_lm_ps_and_lm_unload_see_what_any_client_loaded(magics):
    mine = lmsext.Client().llm.load("stories260K", config={"contextLength": 512}, identifier="from-python")
    with capture_output() as cap:
        magics.run_line_magic("lm_ps", "")
    assert "from-python" in shown(cap)
    with capture_output():
        magics.run_line_magic("lm_unload", "from-python")
    assert not mine.loaded and lmsext.Client().llm.list_loaded() == []


def test_the_panels_client_sees_a_python_clients_instance(unload_all):
    from lmsext.widgets import LoadPanel, PredictionPanel
    mine = lmsext.Client().llm.load("stories260K", config={"contextLength": 512}, identifier="for-panels")
    assert mine in PredictionPanel().client.llm.list_loaded()
    assert LoadPanel("stories260K").client.llm.get("for-panels") is mine


def test_clients_on_one_server_address_share_its_instances():
    with lmsext_server() as url:
        first, second = lmsext.Client(url), lmsext.Client(url.removeprefix("http://"))
        try:
            llm = first.llm.load("stories260K", config={"contextLength": 256}, identifier="remote-shared")
            assert second.llm.model("remote-shared") is llm
            assert lmsext.Client().llm.list_loaded() == []  # the in-kernel engine is another server
            second.llm.unload("remote-shared")
            assert not llm.loaded and first.llm.list_loaded() == []
        finally:
            first.close()
            second.close()
        assert first.engine.transport._http.is_closed  # the last client gone: the connection is closed
        assert not lmsext.Client(url).engine.transport._http.is_closed  # and a new client gets a fresh one
