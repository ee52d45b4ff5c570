"""The plain stream view (``StreamView``, rich mode: Jupyter without widgets) on the real engine: what
reaches the front end, message by message.

While tokens arrive: stdout ``stream`` messages carrying only the text that is new, and a small live
stats line (one display, updated in place) — together at most one message per interval whatever the
token rate. At the end: the text once, then the stats line (or, with ``markdown``, one rendered
output). Front-end traffic is recorded as a kernel would send it (``magic_runner.KernelOutput``), on a
simulated clock where the throttle is checked; the last test counts a real ipykernel's messages.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from magic_runner import KernelOutput
from pydantic import BaseModel

from lmsext import magics as magics_module
from lmsext import session as session_module
from lmsext.magics.stream_view import StreamView, run_stream

REPO = Path(__file__).resolve().parents[1]
INTERVAL = 0.05
LIVE = re.compile(r"^… (generating|\d+ tokens · ([\d.]+|–) tok/s · [\d.]+ s)$")
#: What %%lm_complete shows before the completion of "Once upon a time": the prompt, dimmed (grey).
PROMPT = "\x1b[90mOnce upon a time\x1b[0m"
STATS = re.compile(r"^\[\d+ tokens · [\d.]+ tok/s · first token .+ · stop: \w+.*\]$")


@pytest.fixture(autouse=True)
def clean(ip, monkeypatch):
    monkeypatch.setattr(session_module, "_session", None)
    m = magics_module.get_magics(ip)
    for name in ("stream_update_interval", "display_mode", "markdown", "widgets"):
        m.traits()[name].set(m, m.traits()[name].default())
    yield


@pytest.fixture(scope="module")
def magic_model(ip):
    """stories260K in the magics' client (the kernel-wide default client), unloaded after the module."""
    import lmsext
    llm = lmsext.default_client().llm.load("stories260K", config={"contextLength": 1024}, identifier="streaming")
    yield llm
    llm.unload()


@pytest.fixture
def rich(ip, magic_model):
    """The magics in rich mode with plain displays (what a front end without widgets gets)."""
    m = magics_module.get_magics(ip)
    m.display_mode, m.widgets = "rich", "off"
    session_module.get_session().model = magic_model.identifier
    return m


class Paced:
    """A real prediction stream whose fragments arrive ``rate`` per second on a simulated clock."""

    def __init__(self, stream, rate: float) -> None:
        self.stream, self.rate, self.now = stream, rate, 0.0

    def clock(self) -> float:
        return self.now

    def __iter__(self):
        for fragment in self.stream:
            self.now += 1.0 / self.rate
            yield fragment

    def close(self) -> None:
        self.stream.close()

    def result(self):
        return self.stream.result()


def stream_through_view(shell, stream, rate: float, **view_options):
    """(result, messages before finish, messages of finish, outputs) of ``stream`` paced at ``rate``."""
    paced = Paced(stream, rate)
    view = StreamView("rich", INTERVAL, clock=paced.clock, **view_options)
    marks = []
    finish = view.finish
    view.finish = lambda result: (marks.append(len(kernel.messages)), finish(result))[-1]
    with KernelOutput(shell, clock=paced.clock) as kernel:
        result = run_stream(paced, view)
    return result, kernel.messages[:marks[0]], kernel.messages[marks[0]:], kernel.outputs()


def assert_deltas_only(messages, content):
    """Each stream message is the next slice of ``content``; every other message is the small live line."""
    pos = 0
    for kind, msg, _ in messages:
        if kind == "stream":
            assert msg["text"] and content[pos:pos + len(msg["text"])] == msg["text"], (pos, msg)
            pos += len(msg["text"])
        else:
            assert kind in ("display_data", "update_display_data"), kind
            assert LIVE.match(msg["data"]["text/plain"]), msg
            assert len(json.dumps(msg)) < 400
    return pos


def max_per_second(messages) -> int:
    times = [t for _, _, t in messages]
    return max((sum(1 for u in times if t <= u < t + 1.0 - 1e-9) for t in times), default=0)


@pytest.mark.parametrize("rate", [5, 30, 300, 3_000, 30_000])
def test_interim_messages_carry_only_the_delta_at_most_one_per_interval(ip, module_model, rate):
    stream = module_model.complete_stream("Once upon a time", {"temperature": 0, "maxTokens": 400})
    result, interim, final, outputs = stream_through_view(ip, stream, rate)
    content = result.content
    assert result.stats.predicted_tokens_count > 100
    opening, *during = interim
    assert opening[0] == "display_data" and opening[1]["transient"]["display_id"]  # the live line
    streams = [m["text"] for kind, m, _ in interim + final if kind == "stream"]
    assert "".join(streams) == content  # the deltas add up to the text: nothing resent, nothing lost
    sent = assert_deltas_only(during, content)
    assert during[0][0] == "stream" and during[0][2] == 1.0 / rate  # the first fragment goes out at once
    assert max_per_second(during) <= 1 / INTERVAL  # whatever the token rate
    seconds = result.stats.predicted_tokens_count / rate
    assert len(during) <= seconds / INTERVAL + 1
    if rate >= 300:  # tokens faster than the interval: one message per interval, not one per token
        assert len(during) >= 0.8 * seconds / INTERVAL
    lives = [m for kind, m, _ in during if kind == "update_display_data"]
    assert len(lives) <= seconds / 0.5 and (lives or seconds < 0.6)  # the live line, every 0.5 s
    # the end: the rest of the text, the live line taken down, the stats line under the text
    rest = ["stream"] if sent < len(content) else []
    assert [kind for kind, _, _ in final] == rest + ["update_display_data", "display_data"]
    live, text, stats = outputs  # as the cell shows it (and a saved notebook keeps it): the text once, then stats
    display_id = opening[1]["transient"]["display_id"]
    assert live == {"type": "display_data", "data": {"text/plain": ""}, "display_id": display_id}
    assert text == {"type": "stream", "text": content} and stats["display_id"] is None
    assert STATS.match(stats["data"]["text/plain"]) and "lmsext-stats" in stats["data"]["text/html"]


def test_the_live_line_counts_tokens_and_the_rate(ip, module_model):
    stream = module_model.complete_stream("Once upon a time", {"temperature": 0, "maxTokens": 200})
    _, interim, _, _ = stream_through_view(ip, stream, 100)
    lives = [(m["data"]["text/plain"], t) for kind, m, t in interim if kind == "update_display_data"]
    assert len(lives) == 3, lives  # 2 s: at 0.5, 1.0 and 1.5 s
    for line, t in lives:  # a token every 10 ms, the first at 10 ms
        assert line == f"… {round(t * 100)} tokens · 100.0 tok/s · {t:.1f} s", (line, t)


def test_a_long_stream_through_the_magic_shows_the_text_once_then_the_stats(ip, rich):
    rich.stream_update_interval = 0.0  # a message for every fragment: the most traffic there can be
    with KernelOutput(ip) as kernel:
        ip.run_cell_magic("lm_complete", "--temperature 0 --max-tokens 300", "Once upon a time")
    result = ip.user_ns["_lm"]
    live, text, stats = kernel.outputs()
    assert live["data"] == {"text/plain": ""} and text == {"type": "stream", "text": PROMPT + result.content}
    assert STATS.match(stats["data"]["text/plain"]), stats
    assert stats["data"]["text/plain"].startswith(f"[{result.stats.predicted_tokens_count} tokens · ")
    assert "stop: maxPredictedTokensReached" in stats["data"]["text/plain"]
    assert kernel.messages[1][1]["text"] == PROMPT  # the prompt, dimmed, then the completion continuing it
    assert_deltas_only(kernel.messages[2:-2], result.content)
    assert sum(kind == "stream" for kind, _, _ in kernel.messages) >= result.stats.predicted_tokens_count * 0.9


def test_a_coarse_interval_sends_the_first_fragment_then_the_rest_at_the_end(ip, rich):
    rich.stream_update_interval = 60.0
    with KernelOutput(ip) as kernel:
        ip.run_cell_magic("lm_complete", "--temperature 0 --max-tokens 100", "Once upon a time")
    result = ip.user_ns["_lm"]
    kinds = [kind for kind, _, _ in kernel.messages]
    assert kinds == ["display_data", "stream", "stream", "stream", "update_display_data", "display_data"]
    prompt, first, rest = (m["text"] for kind, m, _ in kernel.messages if kind == "stream")
    assert prompt == PROMPT and first + rest == result.content and len(first) < 10


def test_parse_errors_show_with_the_stats(ip, rich):
    class Pet(BaseModel):
        name: str

    ip.user_ns["Pet"] = Pet
    with KernelOutput(ip) as kernel:
        ip.run_cell_magic("lm_respond", "--structured Pet --max-tokens 3 --no-history", "Describe a pet.")
    result = ip.user_ns["_lm"]
    assert result.parse_error
    *_, text, stats = kernel.outputs()  # (before them, once per instance: the base-model warning)
    assert text["text"] == result.content
    assert stats["data"]["text/plain"].startswith(result.parse_error + "\n[")
    assert 'color:red' in stats["data"]["text/html"]


def test_markdown_streams_deltas_then_one_rendered_output(ip, module_model):
    stream = module_model.complete_stream("Once upon a time", {"temperature": 0, "maxTokens": 200})
    result, interim, final, outputs = stream_through_view(ip, stream, 1000, markdown=True)
    assert_deltas_only(interim[1:], result.content)
    assert [kind for kind, _, _ in final] == ["clear_output", "display_data"] and final[0][1] == {"wait": True}
    (shown,) = outputs  # the streamed plain text replaced by the rendered one: the text once
    assert shown["data"]["text/markdown"].startswith(result.content + "\n\n*200 tokens · ")
    assert shown["data"]["text/plain"].startswith(result.content + "\n\n[200 tokens")


def test_markdown_through_the_magic(ip, rich):
    rich.markdown = True
    with KernelOutput(ip) as kernel:
        ip.run_cell_magic("lm_complete", "--temperature 0 --max-tokens 30", "Once upon a time")
    (shown,) = kernel.outputs()
    assert shown["data"]["text/markdown"].startswith(ip.user_ns["_lm"].content + "\n\n*30 tokens")


def test_an_error_keeps_the_text_so_far_without_stats(ip, module_model):
    class Failing(StreamView):
        def feed(self, text):
            if len(self.parts) == 40:
                raise RuntimeError("the display broke")
            super().feed(text)

    paced = Paced(module_model.complete_stream("Once upon a time", {"temperature": 0, "maxTokens": 200}), 3000)
    view = Failing("rich", INTERVAL, clock=paced.clock)
    with KernelOutput(ip, clock=paced.clock) as kernel, pytest.raises(RuntimeError, match="display broke"):
        run_stream(paced, view)
    live, text = kernel.outputs()
    assert live["data"] == {"text/plain": ""} and text["text"] == view.text and len(view.parts) == 40
    assert module_model.complete("Once", {"maxTokens": 2}).stats.predicted_tokens_count == 2  # released


def test_ctrl_c_while_drawing_the_last_frame_shows_nothing_twice(ip, module_model, monkeypatch):
    from lmsext.magics import stream_view as streaming
    real, calls = streaming.stats_bundle, []

    def interrupted_once(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(streaming, "stats_bundle", interrupted_once)
    stream = module_model.complete_stream("Once upon a time", {"temperature": 0, "maxTokens": 100})
    result, _, _, outputs = stream_through_view(ip, stream, 3000)
    assert len(calls) == 2
    live, text, stats = outputs
    assert text["text"] == result.content and STATS.match(stats["data"]["text/plain"])


def test_feeding_is_an_append_and_messages_stay_bounded(ip):
    now = [0.0]
    view = StreamView("rich", INTERVAL, clock=lambda: now[0])
    with KernelOutput(ip, clock=lambda: now[0]) as kernel:
        view.start()
        for _ in range(100_000):  # 100k tokens at 100k tok/s
            now[0] += 1e-5
            view.feed("x")
    assert view.text == "x" * 100_000 and len(view.parts) == 100_000  # appends; joined lazily
    assert 19 <= len(kernel.messages) <= 22  # ~1 s: ≤ 20 messages and the opening
    assert sum(len(m.get("text", "")) for _, m, _ in kernel.messages) < 100_000  # the tail is still pending


# ------------------------------------------------------------------------------ a real kernel

KERNEL_SETUP = """
%load_ext lmsext
%config LMMagics.widgets = 'off'
%lm_load stories260K --context-length 2304
"""
KERNEL_CELL = "%%lm_complete --max-tokens 2000 --temperature 0.8 --seed 1\nOnce upon a time"


def test_in_a_real_kernel_the_stream_messages_are_the_deltas(stories_path):
    """ipykernel's own stdout and display publisher, counted on the wire (iopub)."""
    jupyter_client = pytest.importorskip("jupyter_client")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
           "LMSEXT_MODELS_PATH": str(stories_path.parent)}
    km = jupyter_client.KernelManager(kernel_name="python3")
    km.start_kernel(env=env)
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=60)

        def execute(code):
            msg_id = kc.execute(code)
            messages = []
            while True:
                msg = kc.get_iopub_msg(timeout=120)
                if msg["parent_header"].get("msg_id") != msg_id:
                    continue
                if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                    return messages
                if msg["msg_type"] != "status" and msg["msg_type"] != "execute_input":
                    messages.append((msg["msg_type"], msg["content"], msg["header"]["date"].timestamp()))

        assert not [m for m in execute(KERNEL_SETUP) if m[0] == "error"]
        messages = execute(KERNEL_CELL)
        # one print may reach the client as several stream messages on a loaded machine: join them
        printed = "".join(m[1]["text"] for m in execute(
            "import json; print(json.dumps({'content': _lm.content, 'tokens': _lm.stats.predicted_tokens_count}))")
            if m[0] == "stream")
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    result = json.loads(printed)
    content = result["content"]
    assert result["tokens"] > 300, result
    kinds = [kind for kind, _, _ in messages]
    assert "error" not in kinds and kinds[0] == "display_data" and kinds[-2:] == ["update_display_data", "display_data"]
    streams = [m["text"] for kind, m, _ in messages if kind == "stream"]
    assert "".join(streams) == PROMPT + content  # the dimmed prompt, then the deltas, on ipykernel's real stdout
    assert streams[0] == PROMPT
    during = messages[2:-2]
    if kinds[-3] == "stream":  # the rest of the text, sent by finish
        during = messages[2:-3]
    assert_deltas_only(during, content)
    span = during[-1][2] - during[0][2]
    assert len(during) - 1 <= span / INTERVAL + 1, (len(during), span)
    assert max_per_second(during) <= 1 / INTERVAL
    stats = messages[-1][1]["data"]["text/plain"]
    assert STATS.match(stats) and f"[{result['tokens']} tokens" in stats
