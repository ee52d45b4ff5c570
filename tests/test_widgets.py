"""The widgets on the real engine (stories260K): panels bound to the session defaults, Load, Send/Stop on a
background thread, the StreamWidget's coalesced delta messages, and the magics' widget displays."""

from __future__ import annotations

import html
import os
import re
import signal
import threading
import time
from pathlib import Path

import pytest
from magic_runner import run, run_headless

import lmsext
from lmsext import synth
from lmsext.engine import plan_load, read_model_info
from lmsext.engine import estimate as estimate_module
from lmsext.engine.params import CONTEXT_STEP
from lmsext.config import LoadModelConfig
from lmsext import magics as magics_module
from lmsext import session as session_module
from lmsext.widgets import LoadPanel, LoadSummaryWidget, PredictionPanel, StreamWidget
from lmsext.widgets import frontend
from lmsext.render import stats_line
from lmsext.widgets.stream import FLUSH_INTERVAL, WidgetStreamView

WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
ENDLESS = {"maxTokens": False, "contextOverflowPolicy": "rollingWindow"}


@pytest.fixture(autouse=True)
def clean(ip, unload_all, monkeypatch, stories_path):
    """A fresh session; the magics in rich mode with widgets on (a kernel-less shell otherwise says text)."""
    monkeypatch.setattr(session_module, "_session", None)
    m = magics_module.get_magics(ip)
    for name in ("display_mode", "widgets", "stream_update_interval"):
        m.traits()[name].set(m, m.traits()[name].default())
    yield


@pytest.fixture
def widget_magics(ip):
    m = magics_module.get_magics(ip)
    m.display_mode, m.widgets = "rich", "on"
    return m


@pytest.fixture(scope="module")
def moe(tmp_path_factory):
    return synth.moe_model(tmp_path_factory.mktemp("moe"))


@pytest.fixture(scope="module")
def chatml(tmp_path_factory):
    return synth.chatml_model(tmp_path_factory.mktemp("chatml"))


def text_of(html_value):
    """What an HTML widget reads as: tags dropped, entities decoded."""
    return html.unescape(re.sub(r"<[^>]+>", "", html_value))


def session():
    return session_module.get_session()


def client():
    return lmsext.default_client()



def record(widget):
    """Collect the custom messages ``widget`` sends (the comm is a dummy outside a kernel)."""
    sent = []
    original = widget.send

    def send(content, buffers=None):
        sent.append(content)
        original(content, buffers)

    widget.send = send
    return sent


# ------------------------------------------------------------------------------ LoadPanel

def test_load_panel_ranges_come_from_the_model(stories_path):
    panel = LoadPanel("stories260K")
    info = read_model_info(stories_path)
    assert (panel.context_length.min, panel.context_length.max, panel.context_length.step) == (
        CONTEXT_STEP, info.trained_context, CONTEXT_STEP)
    assert panel.context_length.value == plan_load(LoadModelConfig(), info).effective["context_length"]
    assert (panel.gpu.min, panel.gpu.max) == (0, info.n_layer + 1)
    assert panel.gpu_label.value == f"{panel.gpu.value} of {info.n_layer + 1} layers" + (
        " (off)" if panel.gpu.value == 0 else " (max)" if panel.gpu.value == info.n_layer + 1 else "")
    assert panel.num_experts.disabled and panel.experts_label.value == "dense model: no experts to choose"
    assert set(panel.k_cache.options) == {"f32", "f16", "q8_0", "q4_0", "q4_1", "iq4_nl", "q5_0", "q5_1"}
    assert panel.k_cache.value == "f16" and panel.mmap.value is True and panel.seed.value == ""
    panel.close()


def test_load_panel_on_a_moe_model_offers_the_experts(moe):
    panel = LoadPanel(str(moe))
    assert not panel.num_experts.disabled
    assert (panel.num_experts.min, panel.num_experts.max, panel.num_experts.value) == (1, 4, 2)
    panel.num_experts.value = 1
    assert session().load_config.num_experts == 1
    panel.close()


def test_load_sliders_and_lm_config_share_the_session_defaults(ip):
    panel = LoadPanel("stories260K")
    panel.context_length.value = 512
    panel.gpu.value = 3
    panel.seed.value = "42"
    cfg = session().load_config
    assert cfg.context_length == 512 and cfg.gpu.ratio == 0.5 and cfg.seed == 42
    assert "3 of 6 layers" in panel.gpu_label.value
    run(ip, "%lm_config load contextLength=1024 flashAttention=true gpu='max'")
    assert panel.context_length.value == 1024 and panel.flash_attention.value is True and panel.gpu.value == 6
    run(ip, "%lm_config load --reset")
    assert panel.context_length.value == 2048 and panel.seed.value == "" and panel.flash_attention.value is False
    panel.seed.value = "not a number"
    assert "seed &#x27;not a number&#x27;: must be an integer" in panel.notes.value and panel.seed.value == ""
    assert session().load_config.explicit() == {}
    panel.close()


def parts(estimate):
    return estimate.weights, estimate.kv_cache, estimate.compute, estimate.overhead, estimate.total


def test_memory_estimate_is_the_apis_and_the_magics(ip, widget_magics):
    panel = LoadPanel("stories260K")
    before = panel.estimate.value
    panel.context_length.value = 256
    panel.flash_attention.value = True
    assert panel.estimate.value != before
    api = client().llm.estimate("stories260K", session().load_config)
    assert parts(panel.memory) == parts(api) and api.compute > 0 and api.overhead > 0
    shown = text_of(panel.estimate.value)
    breakdown = api.describe().split(" (available")[0]  # weights + KV cache + compute buffers + overhead = total
    assert breakdown in shown and "fits (available: " in shown and "NOT" not in shown
    estimate, cap = run(ip, "%lm_load stories260K --estimate-only")  # the session's config: the panel's
    assert parts(estimate) == parts(api) and breakdown in cap.outputs[-1].data["text/plain"]
    panel.context_length.value = 512  # follows the sliders
    assert parts(panel.memory) == parts(client().llm.estimate("stories260K", {"contextLength": 512,
                                                                              "flashAttention": True}))
    panel.close()


def test_memory_verdict_is_the_one_the_load_applies(monkeypatch):
    panel = LoadPanel("stories260K")
    panel.context_length.value = 256
    total = panel.memory.total
    monkeypatch.setattr(estimate_module, "available_memory", lambda: total)  # just enough for 256
    panel.context_length.value = 512  # recomputed: 512 tokens need more than the 256-token total
    assert panel.memory.fits is False and "does NOT fit" in panel.estimate.value
    assert "Load refuses it" in panel.estimate.value
    with pytest.raises(lmsext.InsufficientMemoryError, match="not loading stories260K.gguf"):
        panel.load()
    assert "not loading" in panel.status.value and client().llm.list_loaded() == []
    panel.context_length.value = 256
    assert panel.memory.fits is True and "NOT" not in panel.estimate.value
    llm = panel.load()  # the same verdict as the load's check
    assert llm.load_result.memory["kv_cache"] == panel.memory.kv_cache
    panel.close()


def test_impossible_settings_are_refused_before_loading():
    panel = LoadPanel("stories260K")
    panel.v_cache.value = "q8_0"
    assert "needs flash attention" in panel.notes.value and panel.load_button.disabled
    assert "Memory estimate</b> –" in panel.estimate.value
    panel.v_cache.value = "f16"
    assert not panel.load_button.disabled and "needs flash attention" not in panel.notes.value
    panel.close()


def test_load_button_loads_with_progress_then_reloads_with_the_new_config():
    panel = LoadPanel("stories260K")
    progress = []
    panel.progress.observe(lambda change: progress.append(change["new"]), names="value")
    panel.context_length.value = 512
    assert panel.start_load() is not None
    panel.join(30)
    llm = client().llm.get("stories260K")
    assert llm.get_context_length() == 512 and session().model == "stories260K"
    assert progress[-1] == 1.0 and panel.progress.bar_style == "success"
    assert "loaded as 'stories260K'" in panel.status.value
    rows = {row["key"]: row for row in panel.summary.summary["config"]}
    assert rows["context_length"]["effective"] == "512" and rows["context_length"]["requested"] == "512"
    panel.context_length.value = 1024
    panel.load_button.click()
    panel.join(30)
    (again,) = client().llm.list_loaded()  # reloaded in place, same identifier
    assert again.identifier == "stories260K" and again.get_context_length() == 1024 and not llm.loaded
    panel.close()


def test_panel_for_a_loaded_instance_reloads_that_instance():
    first = client().llm.load("stories260K", config={"contextLength": 256}, identifier="mine")
    panel = LoadPanel(first)
    assert panel.identifier == "mine"
    # it shows the instance it edits, with the settings that instance was loaded with (not the session's)
    assert "editing mine" in text_of(panel.status.value)
    assert panel.summary.result is first.load_result
    assert panel.context_length.value == 256 and panel.config.context_length == 256
    assert session().load_config.context_length is None
    panel.context_length.value = 512  # edits the panel's copy: neither the session nor the instance
    assert session().load_config.context_length is None and first.get_context_length() == 256
    panel.load()
    assert [m.identifier for m in client().llm.list_loaded()] == ["mine"] and not first.loaded
    assert client().llm.get("mine").get_context_length() == 512
    panel.close()


# ------------------------------------------------------------------------------ PredictionPanel

def test_prediction_slider_ranges_and_defaults():
    panel = PredictionPanel()
    assert (panel.temperature.min, panel.temperature.max, panel.temperature.value) == (0.0, 2.0, 0.8)
    assert (panel.top_p.min, panel.top_p.max) == (0.01, 1.0) and panel.top_p.value == 0.95
    assert (panel.min_p.value, panel.top_k.value, panel.repeat_penalty.value) == (0.05, 40, 1.1)
    assert (panel.xtc_probability.max, panel.xtc_threshold.max) == (1.0, 0.5)
    # bounded as the magics: the box shows the notebook's default limit, "no limit" is off
    assert panel.no_limit.value is False and panel.max_tokens.value == 256 and panel.max_tokens.layout.display is None
    assert panel.config.max_tokens == 256 and "max_tokens" not in session().prediction_config.explicit()
    assert panel.stop_strings.value == [] and panel.seed.value == ""
    assert "no model loaded" in panel.model_label.value
    assert text_of(panel.chat_label.value) == "conversation: new" and panel.turns == 0
    panel.close()


def test_temperature_slider_drives_the_next_lm_respond_and_lm_config_moves_it(ip, widget_magics):
    run(ip, "%lm_load stories260K --context-length 512")
    panel = PredictionPanel()
    assert "stories260K" in panel.model_label.value
    panel.temperature.value = 0.25
    assert session().prediction_config.temperature == 0.25
    run(ip, "%%lm_respond --max-tokens 3", "Hello")
    assert ip.user_ns["_lm"].prediction_config["temperature"] == 0.25
    run(ip, "%lm_config predict temperature=1.5 maxTokens=40 stop=['\\n\\n', 'The end'] topPSampling=False")
    assert panel.temperature.value == 1.5 and panel.max_tokens.value == 40 and panel.top_p.value == 1.0
    assert panel.no_limit.value is False and panel.max_tokens.layout.display is None
    assert panel.stop_strings.value == ["\\n\\n", "The end"]
    panel.stop_strings.value = ["\\n", "x"]
    assert session().prediction_config.stop_strings == ["\n", "x"]
    run(ip, "%lm_config predict --reset")
    assert panel.temperature.value == 0.8 and panel.no_limit.value is False and panel.stop_strings.value == []
    assert panel.max_tokens.value == 256  # back to the notebook's default limit
    panel.close()


def test_no_limit_switch_is_maxtokens_false_and_wins_over_the_default_limit(ip):
    panel = PredictionPanel()
    assert "max_tokens" not in session().prediction_config.explicit() and panel.max_tokens.value == 256
    panel.no_limit.value = True  # the user's explicit choice: LM Studio's maxTokens false
    assert session().prediction_config.max_tokens is False and panel.config.max_tokens is False
    assert panel.max_tokens.layout.display == "none"
    panel.no_limit.value = False  # the number shown is the default limit: unset again
    assert "max_tokens" not in session().prediction_config.explicit() and panel.config.max_tokens == 256
    panel.max_tokens.value = 25
    assert session().prediction_config.max_tokens == 25 == panel.config.max_tokens
    panel.no_limit.value = True
    assert session().prediction_config.max_tokens is False
    panel.no_limit.value = False
    assert session().prediction_config.max_tokens == 25  # the box kept the last limit
    run(ip, "%lm_config predict maxTokens=False")  # false = no limit
    assert panel.no_limit.value is True and panel.max_tokens.layout.display == "none"
    run(ip, "%lm_config predict maxTokens=7")
    assert panel.no_limit.value is False and panel.max_tokens.value == 7
    run(ip, "%lm_config predict maxTokens=None")  # unset: the notebook's default limit
    assert panel.no_limit.value is False and panel.max_tokens.value == 256 and session().prediction_config.explicit() == {}
    session().max_tokens_bound = 0  # %config LMMagics.default_max_tokens = 0: no default limit, the switch reads so
    assert panel.no_limit.value is True and panel.max_tokens.layout.display == "none" and panel.config.max_tokens is None
    panel.no_limit.value = False
    assert session().prediction_config.max_tokens == 256  # the number shown, now an explicit limit
    panel.close()


def test_complete_mode_stops_at_the_default_limit_and_no_limit_lifts_it():
    client().llm.load("stories260K", config={"contextLength": 512})
    session().update("predict", {"temperature": 0.0})
    session().max_tokens_bound = 12  # as %config LMMagics.default_max_tokens = 12 (256 by default)
    panel = PredictionPanel()
    panel.mode.value = "complete"
    panel.send("Once upon a time")
    panel.join(30)
    stats = panel.result.stats
    assert stats.stop_reason == "maxPredictedTokensReached" and stats.predicted_tokens_count == 12
    assert panel.result.prediction_config["maxTokens"] == 12
    assert "hit the 12-token limit" in stats_line(stats)
    panel.no_limit.value = True  # the user's "no limit" wins over the default bound: it runs until Stop
    panel.send("Once upon a time")
    deadline = time.monotonic() + 20
    while panel.stream.partial_text.count(" ") < 30 and time.monotonic() < deadline:
        time.sleep(0.01)
    panel.stop()
    panel.join(10)
    stats = panel.result.stats
    assert panel.result.prediction_config["maxTokens"] is False and stats.predicted_tokens_count > 30
    assert stats.stop_reason == "userStopped"
    assert "-token limit" not in stats_line(stats)
    panel.close()


def test_send_streams_on_a_background_thread():
    client().llm.load("stories260K", config={"contextLength": 512})
    session().update("predict", {"maxTokens": 40, "temperature": 0.0})
    panel = PredictionPanel()
    sent = record(panel.stream)
    panel.mode.value = "complete"
    thread = panel.send("Once upon a time")
    assert thread is not threading.main_thread() and panel.send_button.disabled
    panel.join(30)
    result = panel.result
    assert result.stats.stop_reason in ("maxPredictedTokensReached", "eosFound")
    assert "".join(m["delta"] for m in sent) == result.content == panel.stream.text
    assert panel.stream.prompt == "Once upon a time"  # complete mode: shown greyed before the continuation
    assert panel.stream.stats_line == stats_line(result.stats) and panel.status.value == ""  # how it stopped: once
    assert panel.stream.done and not panel.stream.running and panel.stream.stop_reason == result.stats.stop_reason
    assert panel.stream.stats["predicted_tokens_count"] == result.stats.predicted_tokens_count
    assert not panel.send_button.disabled and panel.stop_button.disabled
    panel.mode.value = "respond"
    panel.prompt.value = "Tell me a story"
    panel.send_button.click()
    panel.join(30)
    assert panel.result.prompt.endswith("Assistant:") and panel.result.stats.predicted_tokens_count > 0
    panel.close()


def test_stop_button_stops_a_running_generation_while_the_kernel_thread_is_free():
    client().llm.load("stories260K", config={"contextLength": 256})
    session().update("predict", ENDLESS)
    panel = PredictionPanel()
    panel.mode.value = "complete"
    panel.send("Once upon a time")
    deadline = time.monotonic() + 10
    while panel.stream.partial_text.count(" ") < 50 and time.monotonic() < deadline:
        time.sleep(0.01)  # this (main) thread is free while the panel generates
    assert panel.busy and not panel.stop_button.disabled
    panel.stop_button.click()
    panel.join(10)
    assert not panel.busy
    stats = panel.result.stats
    assert stats.stop_reason == "userStopped" and stats.predicted_tokens_count > 50
    assert panel.stream.stop_reason == "userStopped" and panel.result.content == panel.stream.text
    panel.close()


def test_stop_message_from_the_stream_view_and_errors_in_the_panel():
    client().llm.load("stories260K", config={"contextLength": 256})
    session().update("predict", ENDLESS)
    panel = PredictionPanel()
    panel.send("Once upon a time")
    time.sleep(0.1)
    panel.stream._handle_custom_msg({"type": "stop", "run": panel.stream.run - 1}, [])  # an older run's Stop
    time.sleep(0.05)
    assert panel.busy
    panel.stream._handle_custom_msg({"type": "stop", "run": panel.stream.run}, [])
    panel.join(10)
    assert panel.result.stats.stop_reason == "userStopped"
    with pytest.raises(lmsext.LmsextError, match="empty"):
        panel.send("  ")
    assert "the prompt is empty" in panel.status.value
    session().update("predict", {"structured": {"type": "gbnf", "gbnfGrammar": "root ::= ("}})
    with pytest.raises(lmsext.LmsextError):
        panel.send("Hi")
    assert "color:#c62828" in panel.status.value and not panel.busy
    client().llm.unload_all()
    with pytest.raises(lmsext.LmsextError, match="grammar"):  # no model: Send loads the embedded default first
        panel.send("Hi")
    assert [m.model_key for m in client().llm.list_loaded()] == ["stories260K"]
    panel.close()


def test_send_continues_one_conversation_shared_with_lm_respond(ip, widget_magics, chatml):
    llm = client().llm.load(str(chatml), config={"contextLength": 1024}, identifier="chatml")
    session().model = "chatml"
    session().update("predict", {"maxTokens": 12, "temperature": 0})
    panel = PredictionPanel()
    panel.send("Tell me a story")
    panel.join(30)
    r1 = panel.result
    assert panel.turns == 1 and text_of(panel.chat_label.value) == "conversation: 1 turn"
    panel.prompt.value = "What happened next?"
    panel.send_button.click()
    panel.join(30)
    r2 = panel.result
    assert panel.chat.messages == [
        {"role": "user", "content": "Tell me a story"}, {"role": "assistant", "content": r1.content},
        {"role": "user", "content": "What happened next?"}, {"role": "assistant", "content": r2.content}]
    assert text_of(panel.chat_label.value) == "conversation: 2 turns"
    # the second prompt is the whole conversation: the first turn's tokens and then the new message's
    alone = llm.respond("What happened next?", {"maxTokens": 1}).stats.prompt_tokens_count
    first_turn = r1.prompt + r1.content
    assert r2.prompt.startswith(first_turn) and "What happened next?" in r2.prompt[len(first_turn):]
    assert r2.stats.prompt_tokens_count >= r1.stats.prompt_tokens_count + r1.stats.predicted_tokens_count + alone - 2
    print(f"\nprompt tokens: turn 1 {r1.stats.prompt_tokens_count} (+{r1.stats.predicted_tokens_count} replied), "
          f"turn 2 {r2.stats.prompt_tokens_count}, turn 2's message alone {alone}")
    # %%lm_respond continues the same chat, and the panel follows
    run(ip, "%%lm_respond --max-tokens 5", "And then?")
    assert len(session().chats["default"]) == 6 and panel.turns == 3
    assert text_of(panel.chat_label.value) == "conversation: 3 turns"
    # New chat forgets it, as %lm_chat reset does: the next prompt is a fresh chat
    panel.new_chat_button.click()
    assert panel.turns == 0 and "default" not in session().chats
    assert text_of(panel.chat_label.value) == "conversation: new"
    panel.send("What happened next?")
    panel.join(30)
    assert len(panel.chat) == 2 and panel.result.stats.prompt_tokens_count == alone
    run(ip, "%lm_chat reset")
    assert panel.turns == 0 and text_of(panel.chat_label.value) == "conversation: new"
    panel.mode.value = "complete"  # a raw completion is a one-shot outside the chat
    assert "one-shot" in text_of(panel.chat_label.value)
    panel.send("Once upon a time")
    panel.join(30)
    assert panel.result.stats.predicted_tokens_count > 0 and panel.turns == 0
    panel.close()


def test_a_stopped_reply_is_recorded_as_lm_respond_records_it():
    client().llm.load("stories260K", config={"contextLength": 256})
    session().update("predict", {**ENDLESS, "seed": 3})
    panel = PredictionPanel()

    def generate_a_while(prompt):
        panel.send(prompt)
        deadline = time.monotonic() + 10
        while panel.stream.partial_text.count(" ") < 20 and panel.busy and time.monotonic() < deadline:
            time.sleep(0.01)
        assert panel.busy and panel.new_chat_button.disabled

    generate_a_while("Tell me a story")
    panel.stop_button.click()
    panel.join(10)
    result = panel.result
    assert result.stats.stop_reason == "userStopped" and result.stats.predicted_tokens_count >= 20
    assert panel.chat.messages == [{"role": "user", "content": "Tell me a story"},
                                   {"role": "assistant", "content": result.content}]
    assert panel.turns == 1 and not panel.new_chat_button.disabled
    # a reply whose chat is reset while it generates is not put back into it
    generate_a_while("And then?")
    panel.new_chat()
    panel.stop()
    panel.join(10)
    assert panel.result.stats.stop_reason == "userStopped" and panel.turns == 0 and "default" not in session().chats
    assert "not in it" in panel.status.value
    panel.close()


# ------------------------------------------------------------------------------ StreamWidget

def test_a_2000_token_generation_is_coalesced_to_at_most_20_messages_per_second():
    llm = client().llm.load("stories260K", config={"contextLength": 512})
    widget = StreamWidget()
    sent = record(widget)
    widget.begin()
    t0 = time.monotonic()
    stream = llm.complete_stream("Once upon a time", {**ENDLESS, "maxTokens": 2000, "seed": 1, "temperature": 0.8})
    for fragment in stream:
        widget.feed(fragment.content, fragment.tokens_count)
    result = stream.result()
    widget.finish(result)
    elapsed = time.monotonic() - t0
    assert result.stats.predicted_tokens_count == 2000
    deltas = [m for m in sent if "delta" in m]
    assert len(deltas) <= elapsed / FLUSH_INTERVAL + 2, (len(deltas), elapsed)  # ≤ 20/s (+ first and last)
    assert [m["seq"] for m in deltas] == list(range(len(deltas)))
    assert all(set(m) == {"seq", "delta", "tokens", "elapsed"} for m in deltas)
    assert "".join(m["delta"] for m in deltas) == result.content == widget.text
    assert deltas[-1]["tokens"] <= 2000 and deltas[-1]["tokens"] >= deltas[0]["tokens"]
    assert widget.done and widget.stop_reason == "maxPredictedTokensReached"
    assert widget.stats["predicted_tokens_count"] == 2000
    print(f"\n2,000 tokens in {elapsed:.2f} s → {len(deltas)} delta messages ({len(deltas) / elapsed:.1f}/s)")


def test_stream_widget_coalesces_by_its_clock_and_answers_a_late_view():
    ticks = iter(i * 0.01 for i in range(100_000))
    widget = StreamWidget(clock=lambda: next(ticks))
    sent = record(widget)
    widget.begin()
    for i in range(1000):
        widget.feed("x", 1)
    assert 160 <= len(sent) <= 201  # a message every 5-6 ticks of 10 ms (float sums), not 1000
    widget._handle_custom_msg({"type": "sync"}, [])
    snapshot = sent[-1]
    assert snapshot["type"] == "snapshot" and snapshot["seq"] == len(sent) - 2
    assert snapshot["text"] == "".join(m["delta"] for m in sent[:-1])
    widget.fail("engine exploded")
    assert widget.done and widget.error == "engine exploded" and widget.text == "x" * 1000
    assert "".join(m["delta"] for m in sent if "delta" in m) == "x" * 1000  # the tail was flushed


# ------------------------------------------------------------------------------ magics

def test_lm_load_shows_the_summary_widget_with_the_html_fallback(ip, widget_magics):
    lr, cap = run(ip, "%lm_load stories260K --context-length 1000")
    (out,) = cap.outputs
    assert WIDGET_MIME in out.data and "lmsext-load-summary" in out.data["text/html"]
    assert out.data["text/plain"].startswith("loaded stories260K")
    widget = LoadSummaryWidget(lr)
    row = next(r for r in widget.summary["config"] if r["key"] == "context_length")
    assert row == {"key": "context_length", "effective": "1024", "requested": "1000", "differs": True, "rest": True,
                   "llama": "n_ctx (rounded up to a multiple of 256)"}


def test_lm_respond_streams_into_a_widget_and_keeps_a_fallback(ip, widget_magics, monkeypatch):
    views = []
    original = WidgetStreamView.start
    monkeypatch.setattr(WidgetStreamView, "start", lambda self: (views.append(self), original(self))[1])
    run(ip, "%lm_load stories260K --context-length 512")
    _, cap = run(ip, "%%lm_respond --max-tokens 300 --temperature 0", "Tell me a story")
    result = ip.user_ns["_lm"]
    (view,) = views
    *_, first, final = cap.outputs  # (first, once per instance: the base-model warning)
    assert WIDGET_MIME in first.data and not first.update and final.update
    assert final.data[WIDGET_MIME] == first.data[WIDGET_MIME]
    assert final.data["text/plain"].startswith(result.content) and "stop: " in final.data["text/plain"]
    w = view.widget
    assert w.done and w.text == result.content and w.stop_mode == "interrupt"
    assert w.stats["predicted_tokens_count"] == result.stats.predicted_tokens_count and w.markdown
    assert w.stats_line == stats_line(result.stats) and w.prompt == ""  # the plain view's line, said once


def test_lm_complete_in_the_widget_shows_the_prompt_greyed_and_the_plain_words_of_the_limit(ip, widget_magics,
                                                                                             monkeypatch):
    views = []
    original = WidgetStreamView.start
    monkeypatch.setattr(WidgetStreamView, "start", lambda self: (views.append(self), original(self))[1])
    run(ip, "%lm_load stories260K --context-length 512")
    run(ip, "%%lm_complete --temperature 0", "Once upon a time")  # no --max-tokens: the notebook's 256
    result = ip.user_ns["_lm"]
    w = views[-1].widget
    assert w.prompt == "Once upon a time" and w.text == result.content  # the prompt is not part of the reply
    assert result.stats.predicted_tokens_count == 256 and w.stats_line == stats_line(result.stats)
    assert w.stats_line.endswith("stop: maxPredictedTokensReached (hit the 256-token limit — --max-tokens to change)")
    long_prompt = "word " * 100
    run(ip, "%%lm_complete --temperature 0 --max-tokens 2", long_prompt)
    w = views[-1].widget
    assert w.prompt == "…" + long_prompt.rstrip("\n")[-300:] and "(hit the token limit)" in w.stats_line


def test_interrupting_a_widget_streamed_cell_ends_as_user_stopped(ip, widget_magics, monkeypatch):
    run(ip, "%lm_load stories260K --context-length 256")
    run(ip, "%lm_config predict maxTokens=False contextOverflowPolicy=rollingWindow")
    timers = []
    original = StreamWidget.feed

    def feed(self, text, tokens=1):
        if not timers:  # what the Stop button's interrupt request does: SIGINT to the busy kernel
            timers.append(threading.Timer(0.1, lambda: os.kill(os.getpid(), signal.SIGINT)))
            timers[0].start()
        original(self, text, tokens)

    monkeypatch.setattr(StreamWidget, "feed", feed)
    _, cap = run(ip, "%%lm_complete", "Once upon a time")
    timers[0].join()
    result = ip.user_ns["_lm"]
    assert result.stats.stop_reason == "userStopped" and result.stats.predicted_tokens_count > 0
    assert "stop: userStopped" in cap.outputs[-1].data["text/plain"]


def test_lm_panel_shows_the_panels(ip, widget_magics):
    value, cap = run(ip, "%lm_panel load")  # no model: the embedded default model's panel, saying so
    assert "embedded default model stories260K" in cap.outputs[0].data["text/plain"]
    assert isinstance(value, LoadPanel) and value.model_key == "stories260K" and value.identifier is None
    value.close()
    run(ip, "%lm_load stories260K --context-length 512")
    ip.run_cell("p = %lm_panel predict")
    assert isinstance(ip.user_ns["p"], PredictionPanel)
    ip.run_cell("both = %lm_panel")
    load, predict = ip.user_ns["both"].children
    assert isinstance(load, LoadPanel) and isinstance(predict, PredictionPanel) and load.identifier == "stories260K"
    ip.run_cell("q = %lm_panel load stories260K")
    assert isinstance(ip.user_ns["q"], LoadPanel)
    for name in ("p", "both", "q"):
        ip.user_ns.pop(name).close()


def test_terminal_and_plain_modes_do_not_use_widgets(ip):
    m = magics_module.get_magics(ip)
    assert m.mode == "text" and not m.use_widgets
    m.display_mode = "rich"
    assert not m.use_widgets  # no kernel: plain displays
    m.widgets = "on"
    assert m.use_widgets
    m.widgets = "off"
    assert not m.use_widgets


# ------------------------------------------------------------------------------ packaging

def test_front_end_files_ship_with_the_package_and_the_kernel_id_is_found(monkeypatch):
    for name in ("stream.js", "load_summary.js"):
        path = frontend.asset(name)
        assert path.parent.name == "static" and "export default" in path.read_text()
    import sys
    import ipykernel
    assert frontend.kernel_id() == ""  # no kernel here
    monkeypatch.setitem(sys.modules, "ipykernel.kernelapp", sys.modules.get("ipykernel.kernelapp", object()))
    monkeypatch.setattr(ipykernel, "get_connection_file", lambda: "/run/jupyter/kernel-1a2b-3c.json")
    assert frontend.kernel_id() == "1a2b-3c"
    monkeypatch.setattr(ipykernel, "get_connection_file", lambda: "/tmp/other.json")
    assert frontend.kernel_id() == ""
    pyproject = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    assert '"lmsext.widgets.static" = ["*.js", "*.css"]' in pyproject


def test_headless_execution_keeps_the_final_stream_in_the_widget_state_and_the_fallback(tmp_path, monkeypatch):
    saved = run_headless(tmp_path, monkeypatch, "%load_ext lmsext", "%lm_load stories260K --context-length 512",
                         "%%lm_respond --max-tokens 20 --temperature 0\nTell me a story", "print(repr(_lm.content))",
                         store_widget_state=True)
    content = eval(saved.cells[3].outputs[0].text)  # noqa: S307 — the repr printed by the kernel
    *_, out = saved.cells[2].outputs  # (first: the base-model warning)
    assert WIDGET_MIME in out.data and out.data["text/plain"].startswith(content)  # the fallback: final text, stats
    assert "stop: maxPredictedTokensReached" in out.data["text/plain"]
    states = saved.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    stream = states[out.data[WIDGET_MIME]["model_id"]]["state"]
    assert stream["text"] == content and stream["done"] is True and stream["running"] is False
    assert stream["stop_reason"] == "maxPredictedTokensReached" and stream["stats"]["predicted_tokens_count"] == 20
    (summary_out,) = saved.cells[1].outputs
    summary = states[summary_out.data[WIDGET_MIME]["model_id"]]["state"]["summary"]
    assert any(row["key"] == "context_length" and row["effective"] == "512" for row in summary["config"])
