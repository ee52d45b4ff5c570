"""Thread counts: the load plan's defaults, cpuThreadPoolSize / cpuThreads (capped, with a note),
their display (load summary, %lm_ps, prediction stats), and the adaptive decode threads."""

from __future__ import annotations

import dataclasses

import pytest

from lmsext import LoadModelConfig, synth
from lmsext.engine import plan_load, read_model_info
from lmsext.engine.threads import (DecodeThreads, available_cpus, batch_threads, idle_cpus, physical_cores,
                                   runnable_others)
from lmsext.omp import WAIT_POLICY
from lmsext.render import loaded_models_bundle


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
    assert plan.effective["decode_threads"] == {"max": cores, "adaptive": cores > 1, "barrier_wait": WAIT_POLICY}
    small = plan_load(LoadModelConfig(), info)  # stories260K: one decode thread, batches on the pool
    assert small.context_params["n_threads"] == 1 and small.effective["decode_threads"]["max"] == 1
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


def test_cpu_thread_pool_size_beyond_any_use_is_refused_in_one_line(model, client):
    from lmsext import ConfigError
    with pytest.raises(ConfigError) as info:
        client.llm.load("stories260K", config={"cpuThreadPoolSize": 100_000}, identifier="too-many")
    assert str(info.value) == "cpuThreadPoolSize=100000: must be at most 512"
    assert model.complete("Once", {"maxTokens": 3}).stats.predicted_tokens_count == 3  # the loaded model survives


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
    assert cfg["decode_threads"] == {"max": cores, "adaptive": cores > 1, "barrier_wait": WAIT_POLICY}
    r = llm.complete("Once upon a time", {"maxTokens": 40, "temperature": 0})
    t = r.stats.threads
    assert t["max"] == cores and 1 <= t["batch"] <= cores
    # every decode step was timed and ran at one of the candidate counts
    assert sum(t["steps"].values()) == r.stats.predicted_tokens_count - 1
    assert set(t["steps"]) <= set(range(1, cores + 1)) and 1 <= t["final"] <= cores
    assert "now " in loaded_models_bundle([llm])["text/plain"]
    again = llm.complete("Once upon a time", {"maxTokens": 20, "temperature": 0}).stats.threads
    assert sum(again["steps"].values()) == 19  # per prediction
    fixed = llm.complete("Once upon a time", {"maxTokens": 40, "temperature": 0, "cpuThreads": 1})
    assert fixed.content == r.content  # thread counts never change the tokens
    assert fixed.stats.threads["steps"] == {1: 39} and fixed.stats.threads["adaptive"] is False
    if cores < 2 or runnable_others() is None or WAIT_POLICY == "passive":
        return  # (passive barriers: step times alone decide, tested with _Machine below)
    # every CPU taken by another process: one thread for decode steps and for a long prompt's batches
    long_prompt = "Once upon a time " * 40
    with subprocess_busy(available_cpus()):
        busy = llm.complete(long_prompt, {"maxTokens": 40, "temperature": 0})
    assert busy.stats.threads["batch"] == 1
    assert busy.stats.threads["final"] == 1 and busy.stats.threads["steps"].get(cores, 0) <= 3


class _Machine:
    """Step times and free CPUs as a function of the thread count (a stand-in for a machine, not for llama.cpp)."""

    def __init__(self, ms: dict[int, float], idle: int | None) -> None:
        self.ms = ms
        self.free = idle
        self.n = None

    def set(self, n: int) -> None:
        self.n = n

    def idle(self) -> int | None:
        return self.free

    def run(self, tuner: DecodeThreads, steps: int) -> float:
        total = 0.0
        for _ in range(steps):
            tuner.step_threads()
            dt = self.ms[self.n] / 1000
            tuner.record(dt)
            total += dt
        return total


QUIET = {2: 4.5, 1: 6.6}  # the 60 M model on a quiet 2-core machine
BUSY = {2: 175.0, 1: 16.0}  # the 250 M model while another process holds a core: 2 threads stall at every barrier


def test_decode_threads_keep_the_faster_count():
    quiet = _Machine(QUIET, idle=2)
    tuner = DecodeThreads(2, quiet.set, idle=quiet.idle, spinning=True)
    total = quiet.run(tuner, 256)
    assert tuner.current == 2 and total <= 256 * QUIET[2] / 1000 / 0.95  # within 5 % of always 2
    # a process takes a core: the tuner moves to 1 thread and does not try 2 while the CPU is taken
    busy = _Machine(BUSY, idle=1)
    total = busy.run(tuner.bind(busy.set, busy.idle), 256)
    assert tuner.current == 1 and total <= 256 * BUSY[1] / 1000 / 0.9  # two slow steps tell it
    assert tuner.steps[2] <= 2  # two slow steps before the move
    # the machine gets quiet again: the probes find 2 threads
    quiet.run(tuner.bind(quiet.set, quiet.idle), 512)
    assert tuner.current == 2
    # busy from the start: 1 thread at once, no probe towards 2
    fresh = DecodeThreads(2, busy.set, idle=busy.idle, spinning=True)
    total = busy.run(fresh, 256)
    assert fresh.current == 1 and fresh.steps[2] == 0


def test_passive_barriers_let_step_times_decide():
    assert WAIT_POLICY == "passive"  # lmsext set OMP_WAIT_POLICY before llama.cpp loaded
    import os
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    # with sleeping barriers 2 threads can beat 1 even while another process runs: probes find it
    busy_passive = _Machine({2: 14.0, 1: 28.0}, idle=1)
    tuner = DecodeThreads(2, busy_passive.set, idle=busy_passive.idle, spinning=False)
    busy_passive.run(tuner, 128)
    assert tuner.current == 2
    assert batch_threads(2, 1000) == 2  # prompt batches keep the pool


def test_decode_threads_without_a_run_queue_count_still_bound_the_loss():
    busy = _Machine(BUSY, idle=None)  # no /proc/loadavg: probes towards 2 threads happen, spaced out
    tuner = DecodeThreads(2, busy.set, idle=busy.idle, spinning=True)
    total = busy.run(tuner, 512)
    assert tuner.current == 1 and total <= 512 * BUSY[1] / 1000 / 0.85
    fixed = DecodeThreads(2, busy.set, adaptive=False, idle=busy.idle)
    busy.run(fixed, 10)
    assert fixed.steps == {2: 10, 1: 0} and fixed.summary()["steps"] == {2: 10}


def test_run_queue_and_batch_threads():
    others = runnable_others()
    assert others is None or others >= 0
    idle = idle_cpus(samples=3)
    assert idle is None or 1 <= idle <= available_cpus()
    assert batch_threads(2, 1) == 2  # a one-token batch is a decode step: no look at the run queue
    assert 1 <= batch_threads(2, 1000) <= 2
    if WAIT_POLICY == "active":
        with subprocess_busy(available_cpus()):  # every CPU taken and spinning barriers: a long prompt runs on 1 thread
            assert batch_threads(available_cpus(), 1000) == 1 or runnable_others() is None


class subprocess_busy:
    """``n`` busy processes for the duration of a ``with`` (each also ends by itself after 20 s)."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.procs: list = []

    def __enter__(self):
        import subprocess
        import sys
        import time
        code = "import time\nend = time.monotonic() + 20\nwhile time.monotonic() < end:\n    pass\n"
        self.procs = [subprocess.Popen([sys.executable, "-c", code]) for _ in range(self.n)]
        time.sleep(0.5)
        return self

    def __exit__(self, *exc):
        for p in self.procs:
            p.kill()
        for p in self.procs:
            p.wait(5)


def test_rest_load_takes_cpu_thread_pool_size_and_reports_the_threads(client):
    import httpx

    from lmsext import server as rest
    handle = rest.serve(port=0, client=client)
    try:
        r = httpx.post(handle.url + "/api/v1/models/load", timeout=60,
                       json={"model": "stories260K", "config": {"context_length": 256, "cpu_thread_pool_size": 1}})
        assert r.status_code == 200, r.text
        config = r.json()["config"]
        assert config["cpu_thread_pool_size"] == 1
        assert config["decode_threads"] == {"max": 1, "adaptive": False, "barrier_wait": WAIT_POLICY}
        bad = httpx.post(handle.url + "/api/v1/models/load", timeout=60,
                         json={"model": "stories260K", "config": {"cpu_thread_pool_size": 0}})
        assert bad.status_code == 400 and "cpu_thread_pool_size" in bad.text
    finally:
        handle.stop()
