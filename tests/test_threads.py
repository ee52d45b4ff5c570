"""Thread counts: the load plan's defaults, cpuThreadPoolSize / cpuThreads (capped, with a note),
their display (load summary, %lm_ps, prediction stats), and the adaptive decode threads."""

from __future__ import annotations

import dataclasses

import pytest

from lmsext import LoadModelConfig, synth
from lmsext.engine import plan_load, read_model_info
from lmsext.engine.threads import DecodeThreads, available_cpus, physical_cores
from lmsext.ui.display import loaded_models_bundle


@pytest.fixture(scope="module")
def mid_model(tmp_path_factory):
    """A 21 M-parameter random model (q8_0): above the one-decode-thread size, so its decode threads adapt."""
    return synth.random_model(tmp_path_factory.mktemp("mid"), n_params_target=21_000_000, dtype="q8_0")


def test_plan_uses_physical_cores_and_shows_them(stories_path):
    info = read_model_info(stories_path)
    big = dataclasses.replace(info, parameter_count=250_000_000)
    plan = plan_load(LoadModelConfig(), big)
    cores = physical_cores()
    assert 1 <= cores <= available_cpus()
    assert plan.context_params["n_threads_batch"] == cores and plan.context_params["n_threads"] == cores
    assert plan.effective["cpu_thread_pool_size"] == cores
    assert plan.effective["decode_threads"] == {"max": cores, "adaptive": cores > 1}
    small = plan_load(LoadModelConfig(), info)  # stories260K: one decode thread, batches on the pool
    assert small.context_params["n_threads"] == 1 and small.effective["decode_threads"] == {"max": 1, "adaptive": False}
    assert small.context_params["n_threads_batch"] == cores


def test_cpu_thread_pool_size_sets_both_and_is_capped_with_a_note(client):
    llm = client.llm.load("stories260K", config={"cpuThreadPoolSize": 1, "contextLength": 256})
    assert llm.load_result.config["cpu_thread_pool_size"] == 1
    assert llm.engine.plan.context_params["n_threads_batch"] == 1
    big = client.llm.load("stories260K", config={"cpu_thread_pool_size": 512, "contextLength": 256}, identifier="many")
    cpus = available_cpus()
    assert big.load_result.config["cpu_thread_pool_size"] == cpus
    assert any(n.startswith(f"cpu_thread_pool_size 512 → {cpus}:") for n in big.load_result.notes)
    text = str(big.load_result)
    assert "cpu_thread_pool_size" in text and "decode_threads" in text and "! cpu_thread_pool_size 512" in text
    ps = loaded_models_bundle([llm, big])["text/plain"]
    assert "threads" in ps and "batch 1 · decode 1" in ps and f"batch {cpus} · decode 1" in ps
    assert big.complete("Once", {"maxTokens": 5, "temperature": 0}).stats.predicted_tokens_count == 5


def test_cpu_threads_beyond_the_cpus_is_capped_with_a_note(model):
    cpus = available_cpus()
    r = model.complete("Once upon a time", {"maxTokens": 20, "temperature": 0, "cpuThreads": 512})
    assert r.stats.predicted_tokens_count == 20
    assert r.stats.threads["max"] == cpus and r.stats.threads["adaptive"] is False
    assert r.stats.threads["batch"] == cpus
    assert r.stats.notes and r.stats.notes[0].startswith(f"cpuThreads 512 → {cpus}:")
    same = model.complete("Once upon a time", {"maxTokens": 20, "temperature": 0, "cpuThreads": cpus})
    assert same.content == r.content and same.stats.notes == []


def test_default_decode_threads_adapt_on_the_real_engine(client, mid_model):
    llm = client.llm.load(str(mid_model), config={"contextLength": 512})
    cfg = llm.load_result.config
    cores = physical_cores()
    assert cfg["decode_threads"] == {"max": cores, "adaptive": cores > 1}
    r = llm.complete("Once upon a time", {"maxTokens": 40, "temperature": 0})
    t = r.stats.threads
    assert t["max"] == cores and t["batch"] == cores
    # every decode step was timed and ran at one of the candidate counts
    assert sum(t["steps"].values()) == r.stats.predicted_tokens_count - 1
    assert set(t["steps"]) <= set(range(1, cores + 1)) and 1 <= t["final"] <= cores
    if cores > 1:
        assert len(t["steps"]) >= 2  # it measured the other count too
    fixed = llm.complete("Once upon a time", {"maxTokens": 40, "temperature": 0, "cpuThreads": 1})
    assert fixed.content == r.content  # thread counts never change the tokens
    assert fixed.stats.threads["steps"] == {1: 39}
    assert "now " in loaded_models_bundle([llm])["text/plain"] or cores == 1


class _Machine:
    """Step times as a function of the thread count (a stand-in for a machine, not for llama.cpp)."""

    def __init__(self, ms: dict[int, float]) -> None:
        self.ms = ms
        self.n = None

    def set(self, n: int) -> None:
        self.n = n

    def run(self, tuner: DecodeThreads, steps: int) -> float:
        total = 0.0
        for _ in range(steps):
            tuner.step_threads()
            dt = self.ms[self.n] / 1000
            tuner.record(dt)
            total += dt
        return total


def test_decode_threads_keep_the_faster_count():
    quiet = _Machine({2: 4.5, 1: 6.6})  # the 60 M model on a quiet 2-core machine
    tuner = DecodeThreads(2, quiet.set)
    total = quiet.run(tuner, 256)
    assert tuner.current == 2 and total <= 256 * 4.5 / 1000 / 0.95  # within 5 % of always 2
    busy = _Machine({2: 60.0, 1: 12.0})  # a busy process holds one core: 2 threads stall at every barrier
    tuner = DecodeThreads(2, busy.set)
    total = busy.run(tuner, 256)
    assert tuner.current == 1 and total <= 256 * 12.0 / 1000 / 0.9  # within 10 % of always 1
    # the machine gets quiet again: the probes find 2 threads
    total = quiet.run(tuner.bind(quiet.set), 512)
    assert tuner.current == 2
    fixed = DecodeThreads(2, busy.set, adaptive=False)
    busy.run(fixed, 10)
    assert fixed.steps == {2: 10, 1: 0} and fixed.summary()["steps"] == {2: 10}
