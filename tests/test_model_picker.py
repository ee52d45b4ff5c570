"""ModelPicker (lmsext/widgets/model_picker.py) on the real engine: the list of loaded and downloaded models, the
estimate before loading, Load, Download from a loopback hub (tests/hf_hub_server.py), and the picker in the
load panel (it re-targets the panel) and the prediction panel (its Load picks the model Send uses)."""

from __future__ import annotations

import html
import re

import pytest
from hf_hub_server import HubServer

import lmsext
from lmsext import session as session_module
from lmsext import synth
from lmsext.widgets import LoadPanel, PredictionPanel
from lmsext.widgets.model_picker import ModelPicker

REPO = "lmsext-test/picker-GGUF"


@pytest.fixture(autouse=True)
def fresh_session(monkeypatch, isolated_models, unload_all):
    monkeypatch.setattr(session_module, "_session", None)


@pytest.fixture(scope="module")
def moe_bytes(tmp_path_factory):
    return synth.moe_model(tmp_path_factory.mktemp("moe")).read_bytes()


@pytest.fixture
def moe(isolated_models, moe_bytes):
    """A MoE model in the (isolated) model folder, listed as ``lmsext-test/moe/moe``."""
    path = isolated_models / "lmsext-test" / "moe" / "moe.gguf"
    path.parent.mkdir(parents=True)
    path.write_bytes(moe_bytes)
    return path


def client():
    return lmsext.default_client()


def session():
    return session_module.get_session()


def text_of(value):
    return html.unescape(re.sub(r"<[^>]+>", "", value))


def test_lists_downloaded_and_loaded_models_with_the_estimate_before_loading(moe):
    session().update("load", {"contextLength": 512})
    picker = ModelPicker()
    values = [v for _, v in picker.dropdown.options]
    assert sorted(values) == ["file:lmsext-test/moe/moe", "file:stories260K"]
    picker.select("stories260K")
    expected = client().llm.estimate("stories260K", session().load_config)
    assert f"{lmsext.units.format_bytes(expected.total)}" in text_of(picker.estimate.value)
    assert "session load settings" in text_of(picker.estimate.value)
    llm = picker.load()
    assert llm.get_context_length() == 512 and session().model == llm.identifier
    assert picker.dropdown.value == f"loaded:{llm.identifier}" and "loaded as" in text_of(picker.status.value)
    assert f"loaded:{llm.identifier}" in [v for _, v in picker.dropdown.options]
    assert "loaded: takes" in text_of(picker.estimate.value)
    # loading a loaded one uses it as it is
    assert picker.load().identifier == llm.identifier and "already loaded" in text_of(picker.status.value)
    assert len(client().llm.list_loaded()) == 1
    picker.close()


def test_load_button_runs_on_a_thread_and_bad_input_is_one_line(moe):
    picker = ModelPicker()
    picker.select("lmsext-test/moe/moe")
    picker.load_button.click()
    picker.join(60)
    assert [m.model_key for m in client().llm.list_loaded()] == ["lmsext-test/moe/moe"]
    assert not picker.load_button.disabled
    picker.download_button.click()  # nothing typed
    picker.join(10)
    assert text_of(picker.status.value) == "type a Hugging Face repository (owner/repo-GGUF) to download"
    with pytest.raises(lmsext.LmsextError, match="'nope' is not in the list"):
        picker.select("nope")
    assert len(client().llm.list_loaded()) == 1  # nothing lost
    picker.close()


def test_download_box_fetches_lists_and_selects_the_model(monkeypatch, isolated_models, moe_bytes):
    with HubServer() as hub:
        hub.add(REPO, "picker.Q4_K_M.gguf", moe_bytes)
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        picker = ModelPicker()
        picker.repo.value = REPO
        picker.download_button.click()
        picker.join(60)
        assert picker.dropdown.value == f"file:{REPO}/picker.Q4_K_M"
        assert (isolated_models / REPO / "picker.Q4_K_M.gguf").read_bytes() == moe_bytes
        assert "downloaded" in text_of(picker.status.value) and picker.progress.value == 1.0
        # an unknown repository: one line, nothing changes
        picker.repo.value = "lmsext-test/missing-GGUF"
        picker.download_button.click()
        picker.join(30)
        status = text_of(picker.status.value)
        assert "missing-GGUF" in status and "\n" not in status
        assert picker.selection is not None and picker.selection.model_key.startswith(REPO)
        picker.close()


def test_the_load_panel_follows_the_picker(moe):
    panel = LoadPanel("stories260K")
    assert panel.picker.dropdown.value == "file:stories260K"
    panel.picker.dropdown.value = "file:lmsext-test/moe/moe"  # the user picks another model
    assert panel.model_key == "lmsext-test/moe/moe" and not panel.num_experts.disabled
    assert "Load lmsext-test/moe/moe" in text_of(panel.children[1].value)
    llm = panel.load()
    assert llm.model_key == "lmsext-test/moe/moe" and panel.picker.dropdown.value == f"loaded:{llm.identifier}"
    panel.picker.dropdown.value = "file:stories260K"
    assert panel.model_key == "stories260K" and panel.num_experts.disabled and panel.summary.result is None
    panel.picker.dropdown.value = f"loaded:{llm.identifier}"
    assert "editing" in text_of(panel.status.value) and panel.summary.result is llm.load_result
    panel.close()


def test_the_prediction_panels_picker_chooses_the_model_send_uses(moe):
    session().model = "lmsext-test/moe/moe"  # the name of an instance unloaded since: Load must still update the label
    panel = PredictionPanel()
    assert "no model loaded" in text_of(panel.model_label.value)
    panel.picker.select("lmsext-test/moe/moe")
    panel.picker.load_button.click()
    panel.picker.join(60)
    assert text_of(panel.model_label.value) == "model: lmsext-test/moe/moe"
    assert panel.llm().model_key == "lmsext-test/moe/moe"
    panel.close()
