"""The embedded default model (lmsext/models/stories260K.gguf): always in the catalog, the default of
``client.llm.model()``, ``%lm_load`` and the panels, overridden by a user's file of the same key."""

from __future__ import annotations

import hashlib
import shutil

import pytest
from magic_runner import run

from lmsext import synth
from lmsext.client import DEFAULT_MODEL_NOTE
from lmsext.engine.resolve import EMBEDDED_MODEL_KEY, embedded_model_path
from lmsext import render as views
from lmsext import magics as magics_module
from lmsext import session as session_module

SHA256 = "270cba1bd5109f42d03350f60406024560464db173c0e387d91f0426d3bd256d"


def test_the_model_ships_with_its_licence_and_provenance(stories_path):
    assert stories_path == embedded_model_path() and stories_path.parent.name == "models"
    assert hashlib.sha256(stories_path.read_bytes()).hexdigest() == SHA256
    doc = (stories_path.parent / "MODELS.md").read_text()
    assert SHA256 in doc and "llama2.c" in doc and "MIT" in doc and "cannot" in doc
    assert "Copyright (c) 2023 Andrej Karpathy" in (stories_path.parent / "LICENSE-stories260K").read_text()


def test_always_in_the_catalog_with_empty_model_folders(client, isolated_models):
    [entry] = [m for m in client.llm.list_downloaded() if m.model_key == EMBEDDED_MODEL_KEY]
    assert entry.path == str(embedded_model_path()) and entry.architecture == "llama" and entry.error is None
    assert entry.size_bytes == 1_185_376


def test_a_user_file_of_the_same_key_takes_precedence(client, isolated_models, tmp_path_factory):
    own = isolated_models / "stories260K.gguf"
    shutil.copyfile(synth.chatml_model(tmp_path_factory.mktemp("chatml")), own)
    entries = [m for m in client.llm.list_downloaded() if m.model_key == EMBEDDED_MODEL_KEY]
    assert [e.path for e in entries] == [str(own)]
    llm = client.llm.model(EMBEDDED_MODEL_KEY, config={"contextLength": 256})
    assert llm.load_result.path == str(own)
    assert str(own) in views.load_summary_bundle(llm.load_result)["text/plain"]  # the summary shows which file


def test_model_with_no_key_loads_the_embedded_model_and_says_so(client):
    llm = client.llm.model()
    lr = llm.load_result
    assert lr.model_key == EMBEDDED_MODEL_KEY and lr.path == str(embedded_model_path())
    assert lr.notes[0] == DEFAULT_MODEL_NOTE
    assert DEFAULT_MODEL_NOTE in views.load_summary_bundle(lr)["text/plain"]
    story = llm.complete("Once upon a time", config={"maxTokens": 20, "temperature": 0}).content
    assert len(story.split()) >= 5
    assert client.llm.model() is llm  # loaded now: the first loaded instance, no second load


def test_a_story_with_no_max_tokens_ends_by_itself(client):
    """llama2.c ends a story with BOS: with maxTokens unset a prediction ends there; maxTokens goes past it."""
    llm = client.llm.model()
    result = llm.complete("Once upon a time", config={"seed": 1})
    ended = result.stats.predicted_tokens_count
    assert result.stats.stop_reason == "eosFound" and 20 < ended < 2048 and result.content.strip()
    longer = llm.complete("Once upon a time", config={"seed": 1, "maxTokens": ended + 50})
    assert longer.stats.stop_reason == "maxPredictedTokensReached" and longer.content.startswith(result.content)


@pytest.fixture
def fresh_magics(ip, unload_all, isolated_models, monkeypatch):
    monkeypatch.setattr(session_module, "_session", None)
    m = magics_module.get_magics(ip)
    m.default_model = None
    yield m
    m.display_mode, m.widgets = m.traits()["display_mode"].default(), m.traits()["widgets"].default()


def test_lm_load_with_no_model_uses_the_embedded_model(ip, fresh_magics):
    value, cap = run(ip, "%lm_load --context-length 256")
    assert cap.outputs[0].data["text/plain"] == "no model given: loading the embedded default model stories260K"
    assert value.model_key == EMBEDDED_MODEL_KEY and value.path == str(embedded_model_path())
    assert value.config["context_length"] == 256


def test_panels_with_no_model_use_the_embedded_model(ip, fresh_magics):
    from lmsext.widgets import LoadPanel, PredictionPanel
    fresh_magics.display_mode, fresh_magics.widgets = "rich", "on"
    value, cap = run(ip, "%lm_panel load")
    assert "the load panel is for the embedded default model stories260K" in cap.outputs[0].data["text/plain"]
    assert isinstance(value, LoadPanel) and value.model_key == EMBEDDED_MODEL_KEY
    assert LoadPanel().path == embedded_model_path()
    panel = PredictionPanel()
    assert "Send loads the embedded default model stories260K" in panel.model_label.value
    assert panel.llm().model_key == EMBEDDED_MODEL_KEY  # Send's model: loaded now
