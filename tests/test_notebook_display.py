"""What a notebook cell shows around a prediction (issue 18): %%lm_complete's prompt, dimmed, before the
completion that continues it; a one-line warning when %%lm_respond chats with a base model (no chat template)."""

from __future__ import annotations

import pytest
from IPython.utils.capture import capture_output

from lmsext import magics as magics_module
from lmsext import session as session_module
from lmsext import synth
from lmsext.magics.stream_view import PROMPT_TAIL_CHARS


@pytest.fixture
def lm(ip, unload_all, monkeypatch):
    monkeypatch.setattr(session_module, "_session", None)
    m = magics_module.get_magics(ip)
    m.display_mode = "rich"
    yield m
    m.display_mode = "auto"


def cell(ip, magic, line, body):
    with capture_output() as cap:
        ip.run_cell_magic(magic, line, body)
    return cap


def notes(cap) -> list[str]:
    return [o.data["text/plain"] for o in cap.outputs if "no chat template" in o.data.get("text/plain", "")]


def test_the_completion_follows_its_dimmed_prompt(ip, lm):
    cap = cell(ip, "lm_complete", "--max-tokens 5 --temperature 0", "Once upon a time")
    assert cap.stdout == "\x1b[90mOnce upon a time\x1b[0m" + ip.user_ns["_lm"].content
    long = "word " * 200 + "Once upon a time"
    cap = cell(ip, "lm_complete", "--max-tokens 5 --temperature 0", long)
    assert cap.stdout == "\x1b[90m…" + long[-PROMPT_TAIL_CHARS:] + "\x1b[0m" + ip.user_ns["_lm"].content
    assert ip.user_ns["_lm"].content and not ip.user_ns["_lm"].content.startswith("Once")  # the result: no prompt


def test_a_base_model_chat_is_said_once_with_the_template_used(ip, lm, tmp_path):
    ip.run_line_magic("lm_load", "stories260K --context-length 256")
    first = cell(ip, "lm_respond", "--max-tokens 4 --no-history", "Hi")
    assert notes(first) == ["stories260K has no chat template (a base model): %%lm_respond formats the chat with "
                            "lmsext's plain 'lmsext-plain' template instead (User: … / Assistant:); %%lm_complete "
                            "continues raw text"]
    assert notes(cell(ip, "lm_respond", "--max-tokens 4 --no-history", "Hi")) == []  # once per instance
    with capture_output():
        ip.run_line_magic("lm_load", f"{synth.chatml_model(tmp_path)} --context-length 256")
    assert notes(cell(ip, "lm_respond", "--max-tokens 4 --no-history", "Hi")) == []  # a chat model: nothing
