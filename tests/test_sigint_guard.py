"""The token loop's SIGINT guard: installed once per generation, passes Ctrl-C on between tokens,
survives its handler being replaced between tokens, interleaves with other generations, and always
leaves the previous handler in place."""

from __future__ import annotations

import os
import signal
import threading

import pytest

from lmsext.engine.generate import SigintGuard

LONG = {"temperature": 0, "maxTokens": 200}


pytestmark = pytest.mark.usefixtures("shared_models_only")


@pytest.fixture(autouse=True)
def original_handler():
    before = signal.getsignal(signal.SIGINT)
    yield before
    assert signal.getsignal(signal.SIGINT) is before, "a generation left its SIGINT handler installed"
    signal.signal(signal.SIGINT, before)


def test_handler_restored_after_finished_and_abandoned_generations(model, original_handler):
    model.complete("Once upon a time", config={"maxTokens": 5})
    assert signal.getsignal(signal.SIGINT) is original_handler
    stream = model.complete_stream("Once upon a time", config=LONG)
    next(iter(stream))
    assert isinstance(signal.getsignal(signal.SIGINT), SigintGuard)  # installed for the whole generation
    stream.close()
    assert signal.getsignal(signal.SIGINT) is original_handler
    assert stream.result().stats.stop_reason == "userStopped"


def test_ctrl_c_between_tokens_raises_in_the_consumer(model):
    stream = model.complete_stream("Once upon a time", config=LONG)
    it = iter(stream)
    next(it)
    with pytest.raises(KeyboardInterrupt):
        signal.raise_signal(signal.SIGINT)  # consumer code: ordinary Ctrl-C behaviour
    assert not model.engine.stop_requested.is_set()
    next(it)  # the generation goes on until the consumer stops it
    stream.close()
    assert stream.result().stats.stop_reason == "userStopped"


def test_handler_replaced_between_tokens_is_reinstalled_then_restored(model, original_handler):
    seen = []
    custom = lambda signum, frame: seen.append(signum)  # noqa: E731
    stream = model.complete_stream("Once upon a time", config={"temperature": 0, "maxTokens": False,
                                                                "contextOverflowPolicy": "rollingWindow"})
    it = iter(stream)
    next(it)
    signal.signal(signal.SIGINT, custom)  # e.g. ipykernel between cells
    timer = threading.Timer(0.05, lambda: os.kill(os.getpid(), signal.SIGINT))
    timer.start()
    for _ in it:  # the guard is back for the engine's work: the kill stops the generation cleanly
        pass
    timer.join()
    result = stream.result()
    assert result.stats.stop_reason == "userStopped" and seen == []
    assert signal.getsignal(signal.SIGINT) is custom  # what was installed when the guard came back
    signal.raise_signal(signal.SIGINT)
    assert seen == [signal.SIGINT]
    signal.signal(signal.SIGINT, original_handler)


def test_interleaved_generations_on_two_instances(client):
    a = client.llm.load("stories260K", config={"contextLength": 512}, identifier="a")
    b = client.llm.load("stories260K", config={"contextLength": 512}, identifier="b")
    sa = iter(a.complete_stream("Once upon a time", config={"temperature": 0, "maxTokens": 20}))
    sb = iter(b.complete_stream("Once upon a time", config={"temperature": 0, "maxTokens": 20}))
    texts = {"a": [], "b": []}
    for fa, fb in zip(sa, sb):
        texts["a"].append(fa.content)
        texts["b"].append(fb.content)
    with pytest.raises(KeyboardInterrupt):  # between tokens of both: passed on through both guards
        signal.raise_signal(signal.SIGINT)
    for name, rest in (("a", sa), ("b", sb)):
        texts[name].extend(f.content for f in rest)
    assert texts["a"] == texts["b"]


def test_guard_chain_without_engine(original_handler):
    fa, fb = threading.Event(), threading.Event()
    ga, gb = SigintGuard(fa), SigintGuard(fb)
    with ga:
        pass
    with gb:  # installed over ga
        pass
    with ga:  # ga is reached through gb: no reinstall, no cycle
        assert signal.getsignal(signal.SIGINT) is gb
        signal.raise_signal(signal.SIGINT)
    assert fa.is_set() and not fb.is_set()
    with pytest.raises(KeyboardInterrupt):  # neither inside: on to the original handler
        signal.raise_signal(signal.SIGINT)
    ga.close()  # not installed: leaves gb in place
    assert signal.getsignal(signal.SIGINT) is gb
    gb.close()  # back to ga's predecessor, skipping the closed ga
    assert signal.getsignal(signal.SIGINT) is original_handler


def test_guard_is_inert_off_the_main_thread(original_handler):
    flag = threading.Event()
    seen = []

    def work():
        g = SigintGuard(flag)
        with g:
            seen.append(g.inside)
        g.close()

    t = threading.Thread(target=work)
    t.start()
    t.join()
    assert seen == [False] and signal.getsignal(signal.SIGINT) is original_handler
