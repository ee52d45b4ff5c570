"""Concurrency: a prediction on a model that is already generating gets ModelBusyError at once —
never interleaved state. Checked from other threads, from a callback inside the running prediction
(what a widget does), with many threads at once, and with unload/stop from another thread.
Every prediction that ran must equal the same prediction run alone at temperature 0.
"""

from __future__ import annotations

import threading
import time

import pytest

from lmsext.errors import ModelBusyError, ModelNotLoadedError

GREEDY = {"temperature": 0}
PROMPTS = ["Once upon a time", "The little dog", "Lily and Tom went", "One day a bird"]


@pytest.fixture(scope="module")
def client(module_client):
    return module_client


@pytest.fixture(scope="module")
def model(client, stories_path):
    return client.llm.load(str(stories_path), config={"contextLength": 1024}, identifier="concurrency")


@pytest.fixture(scope="module")
def solo(model):
    """What each prompt gives when it runs alone (temperature 0, 60 tokens)."""
    return {p: model.complete(p, config={**GREEDY, "maxTokens": 60}).content for p in PROMPTS}


def test_second_prediction_from_another_thread_is_busy_and_the_first_is_untouched(model, solo):
    started, release = threading.Event(), threading.Event()
    out: dict = {}

    def first():
        def on_fragment(_):
            started.set()
            release.wait(5)  # hold the model while the other thread tries
        out["r"] = model.complete(PROMPTS[0], config={**GREEDY, "maxTokens": 60}, on_prediction_fragment=on_fragment)

    t = threading.Thread(target=first)
    t.start()
    assert started.wait(10)
    t0 = time.perf_counter()
    with pytest.raises(ModelBusyError, match="is busy with another prediction"):
        model.complete(PROMPTS[1], config={**GREEDY, "maxTokens": 60})
    assert time.perf_counter() - t0 < 1.0  # at once, not after the other one
    stream = model.respond_stream("Hello", config={"maxTokens": 5})
    with pytest.raises(ModelBusyError):
        next(iter(stream))
    stream.close()  # closing the refused stream must not stop the running prediction
    release.set()
    t.join(30)
    assert out["r"].stats.stop_reason == "maxPredictedTokensReached" and out["r"].content == solo[PROMPTS[0]]


def test_a_callback_inside_the_running_prediction_gets_busy(model, solo):
    """A widget's callback that tries to predict on the same model while it streams."""
    errors = []

    def on_fragment(_):
        try:
            model.respond("Hi", config={"maxTokens": 3})
        except ModelBusyError as exc:
            errors.append(exc)

    r = model.complete(PROMPTS[2], config={**GREEDY, "maxTokens": 60}, on_prediction_fragment=on_fragment)
    assert len(errors) >= 10
    assert r.content == solo[PROMPTS[2]]  # every refused attempt left the running prediction alone


def test_many_threads_at_once_either_run_cleanly_or_are_refused(model, solo):
    results, busy, other = [], [], []
    barrier = threading.Barrier(4)

    def worker(prompt: str):
        barrier.wait()
        for _ in range(6):
            try:
                results.append((prompt, model.complete(prompt, config={**GREEDY, "maxTokens": 60}).content))
            except ModelBusyError:
                busy.append(prompt)
                time.sleep(0.005)
            except Exception as exc:  # noqa: BLE001 - anything else is a failure
                other.append(repr(exc))

    threads = [threading.Thread(target=worker, args=(p,)) for p in PROMPTS]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not other
    assert results and busy  # they did collide, and some ran
    assert all(content == solo[prompt] for prompt, content in results)  # never interleaved
    print(f"\n4 threads × 6 predictions: {len(results)} ran (all equal to the solo run), {len(busy)} refused as busy")


def test_two_models_generate_in_parallel(client, stories_path, model, solo):
    other = client.llm.load(str(stories_path), config={"contextLength": 1024}, identifier="concurrency-2")
    out: dict = {}
    threads = [threading.Thread(target=lambda m=m, k=k: out.__setitem__(k, m.complete(
        PROMPTS[3], config={**GREEDY, "maxTokens": 60}).content)) for k, m in (("a", model), ("b", other))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert out["a"] == out["b"] == solo[PROMPTS[3]]
    other.unload()


def test_stop_and_unload_from_another_thread(client, stories_path, model, solo):
    victim = client.llm.load(str(stories_path), config={"contextLength": 256}, identifier="concurrency-3")
    out: dict = {}
    first = threading.Event()

    def run():
        out["r"] = victim.complete("Once", config={"maxTokens": False, "contextOverflowPolicy": "rollingWindow"},
                                   on_first_token=first.set)

    t = threading.Thread(target=run)
    t.start()
    assert first.wait(10)
    victim.stop()
    t.join(10)
    assert out["r"].stats.stop_reason == "userStopped"
    t = threading.Thread(target=run)
    first.clear()
    t.start()
    assert first.wait(10)
    victim.unload()  # waits for the running prediction to let go, then frees
    t.join(10)
    assert not t.is_alive() and out["r"].stats.stop_reason == "userStopped"
    with pytest.raises(ModelNotLoadedError):
        victim.complete("Once")
    assert model.complete(PROMPTS[0], config={**GREEDY, "maxTokens": 60}).content == solo[PROMPTS[0]]


def test_next_token_distribution_while_generating_is_busy(model):
    if not hasattr(model, "next_token_distribution"):
        pytest.skip("no next_token_distribution in this build")
    stream = model.complete_stream("Once upon a time", config={"maxTokens": 50})
    next(iter(stream))
    with pytest.raises(ModelBusyError):
        model.next_token_distribution("Once")
    stream.close()
