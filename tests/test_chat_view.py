"""ChatView (lmsext/widgets/chat_view.py) on the real engine: the session chat as bubbles shared with
%%lm_respond and the prediction panel, streaming into the live bubble, Stop, New chat, Markdown export,
``%lm_chat view``, and its front-end messages."""

from __future__ import annotations

import dataclasses
import time

import pytest
from magic_runner import run

import lmsext
from lmsext import magics as magics_module
from lmsext import session as session_module
from lmsext import synth
from lmsext.widgets import ChatView, PredictionPanel
from lmsext.widgets import chat_view as chat_view_module

ENDLESS = {"maxTokens": False, "contextOverflowPolicy": "rollingWindow"}


@pytest.fixture(autouse=True)
def clean(ip, unload_all, monkeypatch):
    """A fresh session; the magics in rich mode with widgets on."""
    monkeypatch.setattr(session_module, "_session", None)
    m = magics_module.get_magics(ip)
    m.display_mode, m.widgets = "rich", "on"
    yield
    for name in ("display_mode", "widgets"):
        m.traits()[name].set(m, m.traits()[name].default())


@pytest.fixture(scope="module")
def chatml(tmp_path_factory):
    return synth.chatml_model(tmp_path_factory.mktemp("chatml"))


def session():
    return session_module.get_session()


def client():
    return lmsext.default_client()


def msg(view, **content):
    """What the front end sends (model.send)."""
    view._on_front_end_msg(view, content, [])


def test_send_streams_into_the_live_bubble_and_records_the_exchange(ip, chatml, monkeypatch):
    client().llm.load(str(chatml), config={"contextLength": 1024}, identifier="chatml")
    session().model = "chatml"
    session().update("predict", {"maxTokens": 40, "temperature": 0})
    view = ChatView()
    lives = []
    view.observe(lambda change: lives.append(dict(change["new"])), names="live")
    monkeypatch.setattr(chat_view_module, "FLUSH_INTERVAL", 0.0)  # every fragment reaches the front end
    msg(view, action="send", text="Tell me a story")
    view.join(30)
    result = view.result
    assert result.stats.predicted_tokens_count > 1 and not view.busy and view.live == {}
    growing = [live["content"] for live in lives if live]
    assert growing[0] == "" and growing[-1] == result.content
    assert all(len(a) <= len(b) for a, b in zip(growing, growing[1:])) and len(set(growing)) >= 3
    assert all(live["user"] == "Tell me a story" for live in lives if live)
    assert view.messages == [{"role": "user", "content": "Tell me a story", "reasoning": ""},
                             {"role": "assistant", "content": result.content, "reasoning": ""}]
    assert session().chats["default"].messages == [{"role": "user", "content": "Tell me a story"},
                                                   {"role": "assistant", "content": result.content}]
    assert view.status.startswith(f"{result.stats.predicted_tokens_count} tokens") and view.model_name == "chatml"
    md = view.markdown
    assert md.startswith("# Chat 'default' with chatml") and "### You\n\nTell me a story" in md
    assert f"### Assistant\n\n{result.content}" in md and md == view.to_markdown()
    # %%lm_respond continues the same chat, and the view follows
    run(ip, "%%lm_respond --max-tokens 5", "And then?")
    assert [m["content"] for m in view.messages][2] == "And then?" and len(view.messages) == 4
    # New chat forgets it, as %lm_chat reset does
    msg(view, action="new")
    assert view.messages == [] and "default" not in session().chats and view.status == "new chat"
    view.close()


def test_stop_ends_the_reply_with_user_stopped_and_keeps_its_text():
    client().llm.load("stories260K", config={"contextLength": 256})
    session().update("predict", {**ENDLESS, "seed": 3})
    view = ChatView()
    view.send("Tell me a story")
    deadline = time.monotonic() + 10
    while view._live["content"].count(" ") < 20 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert view.busy
    msg(view, action="stop")
    view.join(10)
    result = view.result
    assert result.stats.stop_reason == "userStopped" and result.stats.predicted_tokens_count >= 20
    assert view.messages[-1]["content"] == result.content and not view.busy
    assert "userStopped" in view.status
    view.close()


def test_a_reply_stops_at_the_notebooks_default_limit_as_lm_respond_does():
    client().llm.load("stories260K", config={"contextLength": 512})
    session().update("predict", {"temperature": 0})
    session().max_tokens_bound = 9  # as %config LMMagics.default_max_tokens = 9 (256 by default)
    view = ChatView()
    view.send("Tell me a story")
    view.join(30)
    stats = view.result.stats
    assert stats.stop_reason == "maxPredictedTokensReached" and stats.predicted_tokens_count == 9
    assert "hit the 9-token limit" in view.status and view.result.prediction_config["maxTokens"] == 9
    session().update("predict", {"maxTokens": False})  # the user's "no limit" wins over the bound: until Stop
    view.send("And then?")
    deadline = time.monotonic() + 20
    while view._live["content"].count(" ") < 30 and time.monotonic() < deadline:
        time.sleep(0.01)
    view.stop()
    view.join(10)
    assert view.result.prediction_config["maxTokens"] is False and view.result.stats.predicted_tokens_count > 30
    assert "userStopped" in view.status and "-token limit" not in view.status
    view.close()


def test_bad_input_is_one_line_and_nothing_is_lost():
    view = ChatView()
    msg(view, action="send", text="   ")
    assert view.status == "the message is empty" and view.messages == []
    with pytest.raises(TypeError):
        ChatView("")
    msg(view, action="unknown")
    msg(view, action="send")  # no text
    assert view.status == "the message is empty"
    view.close()


def test_reasoning_is_kept_folded_beside_its_reply(monkeypatch):
    """A result with ``reasoning_content`` (a reasoning model's) shows it in the bubble and the export."""
    view = ChatView("thinking")
    chat = lmsext.Chat()
    chat.add_user_message("Why?")
    result = dataclasses.replace(client().llm.model().complete("x", {"maxTokens": 1}),
                                 content="<think>First, think.</think>Because.", non_reasoning_content="Because.")
    result.reasoning_content = "First, think."
    assert view.record(chat, None, result) == ""
    assert view.messages[-1] == {"role": "assistant", "content": "Because.", "reasoning": "First, think."}
    assert "<details><summary>reasoning</summary>\n\nFirst, think.\n\n</details>" in view.markdown
    view.close()


def test_a_reasoning_reply_streams_its_reasoning_folded_and_the_chat_keeps_the_answer():
    """On a real engine (a grammar forces ``<think>…</think>answer``): the live bubble gets the answer, the folded
    part the reasoning (no tags), and the session chat the answer only, as %%lm_respond keeps it."""
    client().llm.load("stories260K", config={"contextLength": 512})
    session().update("predict", {"structured": {"type": "gbnf", "gbnfGrammar":
                                                'root ::= "<think>" [a-z ]{3,30} "</think>" [a-z ]{3,30}'},
                                 "temperature": 0.7, "seed": 3, "maxTokens": 120})
    view = ChatView("reasoning")
    seen = []
    view.observe(lambda change: seen.append(dict(change["new"])), names="live")
    view.send("Think about a cat")
    view.join(30)
    result = view.result
    assert result.reasoning_content and result.non_reasoning_content
    live = [s for s in seen if s]
    assert live and all("<think>" not in s["content"] and "</think>" not in s["reasoning"] for s in live)
    assert any(s["reasoning"] for s in live) and result.reasoning_content.startswith(live[-1]["reasoning"][:3])
    assert view.messages[-1] == {"role": "assistant", "content": result.non_reasoning_content,
                                 "reasoning": result.reasoning_content}
    assert session().chats["reasoning"].messages[-1]["content"] == result.non_reasoning_content
    view.close()


def test_the_prediction_panel_shows_the_conversation_as_bubbles(chatml):
    client().llm.load(str(chatml), config={"contextLength": 1024}, identifier="chatml")
    session().model = "chatml"
    session().update("predict", {"maxTokens": 8, "temperature": 0})
    panel = PredictionPanel()
    for prompt in ("Tell me a story", "What happened next?"):
        panel.send(prompt)
        panel.join(30)
    # both turns are in the view, not only the last reply
    assert [m["role"] for m in panel.conversation.messages] == ["user", "assistant"] * 2
    assert panel.conversation.messages[1]["content"] == session().chats["default"].messages[1]["content"]
    assert panel.conversation.live == {} and panel.conversation.compose is False
    assert panel.stream.layout.display == "none"  # the bubbles replace the one-reply stream view
    assert panel.conversation.status.startswith(f"{panel.result.stats.predicted_tokens_count} tokens")
    panel.mode.value = "complete"
    assert panel.conversation.layout.display == "none" and panel.stream.layout.display is None
    panel.close()


def test_lm_chat_view_shows_the_widget_with_a_text_fallback(ip):
    shown = []
    import IPython.display
    original = IPython.display.display

    def capture(obj, *args, **kwargs):
        shown.append(obj)

    IPython.display.display = capture
    try:
        run(ip, "%lm_chat view --chat other")
    finally:
        IPython.display.display = original
    (view,) = shown
    assert isinstance(view, ChatView) and view.chat_name == "other"
    bundle = view._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle and "chat 'other'" in bundle["text/plain"]
    view.close()
    # widgets off (a terminal, %config LMMagics.widgets = 'off'): the chat as text, as %lm_chat show
    magics_module.get_magics(ip).widgets = "off"
    _, captured = run(ip, "%lm_chat view --chat other")
    (shown_as_text,) = captured.outputs
    assert "chat 'other'" in shown_as_text.data["text/plain"]
    assert "application/vnd.jupyter.widget-view+json" not in shown_as_text.data
