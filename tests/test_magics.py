"""The magics on a real InteractiveShell and the real engine: summaries, streaming, history, errors, interrupts."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import socket
import sys
import threading
from pathlib import Path

import llama_cpp
import pytest
from magic_runner import run, run_headless
from IPython.utils.capture import capture_output

import lmsext
from lmsext import synth
from lmsext.results import LoadResult, PredictionResult
from lmsext import magics as magics_module
from lmsext import session as session_module
from lmsext.magics.stream_view import StreamView

REPO = Path(__file__).resolve().parents[1]
RED = '<span style="color:red">'
LINE_MAGICS = ("lm_load", "lm_chat", "lm_unload", "lm_ps", "lm_ls", "lm_config", "lm_serve")
CELL_MAGICS = ("lm_respond", "lm_complete")
LOAD_FLAGS = ("--identifier", "--new", "--context-length", "--gpu", "--eval-batch-size", "--flash-attention",
              "--no-flash-attention", "--num-experts", "--offload-kv-cache-to-gpu", "--no-offload-kv-cache-to-gpu",
              "--seed", "--k-cache", "--v-cache", "--mmap", "--no-mmap", "--parallel", "--unified-kv-cache",
              "--no-unified-kv-cache", "--config")


@pytest.fixture(autouse=True)
def clean(ip, unload_all, monkeypatch):
    """Fresh session and default options for every test; everything unloaded afterwards."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(session_module, "_session", None)
    m = magics_module.get_magics(ip)
    for name in ("default_model", "stream_update_interval", "default_prediction_config", "display_mode", "markdown"):
        m.traits()[name].set(m, m.traits()[name].default())
    ip.user_ns.pop("_lm", None)
    yield
    ip.config.pop("LMMagics", None)


@pytest.fixture
def lm(ip):
    return magics_module.get_magics(ip)


@pytest.fixture
def rich(lm):
    lm.display_mode = "rich"
    return lm


@pytest.fixture(scope="module")
def head32(tmp_path_factory):
    """A generated model whose attention heads (32) fit the quantized KV cache blocks."""
    return synth.write_model(tmp_path_factory.mktemp("m") / "head32.gguf", n_layer=2, n_embd=128, n_head=4)


@pytest.fixture(scope="module")
def moe(tmp_path_factory):
    return synth.moe_model(tmp_path_factory.mktemp("moe"))



def htmls(cap):
    return [o.data["text/html"] for o in cap.outputs if "text/html" in o.data]


def client():
    return lmsext.default_client()


def loaded():
    return [m.identifier for m in client().llm.list_loaded()]


# ------------------------------------------------------------------------------ extension

def test_load_ext_registers_every_magic_and_the_configurable(ip, lm):
    magics = ip.magics_manager.magics
    assert all(name in magics["line"] for name in LINE_MAGICS)
    assert all(name in magics["cell"] for name in CELL_MAGICS)
    assert lm in ip.configurables
    ip.run_line_magic("config", "LMMagics.stream_update_interval = 0.2")
    assert lm.stream_update_interval == 0.2
    ip.run_line_magic("config", "LMMagics.default_prediction_config = {'temperature': 0.1}")
    assert lm.default_prediction_config == {"temperature": 0.1}


def test_unload_and_reload_extension(ip):
    ip.run_line_magic("unload_ext", "lmsext")
    assert "lm_load" not in ip.magics_manager.magics["line"]
    assert magics_module.get_magics(ip) is None
    ip.run_line_magic("load_ext", "lmsext")
    assert "lm_respond" in ip.magics_manager.magics["cell"]


def test_lm_load_help_lists_every_flag(ip):
    with capture_output() as cap:
        ip.run_cell("%lm_load?")
    for flag in LOAD_FLAGS:
        assert flag in cap.stdout, flag
    with capture_output() as cap:
        ip.run_cell("%%lm_respond?")
    for flag in ("--temperature", "--max-tokens", "--top-k", "--top-p", "--min-p", "--repeat-penalty", "--seed",
                 "--stop", "--system", "--chat", "--no-history", "--structured", "--out", "--model"):
        assert flag in cap.stdout, flag


# ------------------------------------------------------------------------------ %lm_load

@pytest.mark.parametrize("flags, check", [
    ("--context-length 1000", lambda lr: lr.config["context_length"] == 1024
     and lr.llama_params["context"]["n_ctx"] == 1024 and lr.requested["context_length"] == 1000
     and any("1000 → 1024" in n for n in lr.notes)),
    ("--context-length 512 --eval-batch-size 64", lambda lr: lr.config["eval_batch_size"] == 64
     and lr.llama_params["context"]["n_batch"] == 64),
    ("--seed 42", lambda lr: lr.config["seed"] == 42),
    ("--no-mmap", lambda lr: lr.config["try_mmap"] is False),
    ("--mmap", lambda lr: lr.config["try_mmap"] is True and lr.requested["try_mmap"] is True),
    ("--flash-attention", lambda lr: lr.config["flash_attention"] is True
     and lr.llama_params["context"]["flash_attn_type"] == 1),
    ("--no-flash-attention", lambda lr: lr.config["flash_attention"] is False
     and lr.requested["flash_attention"] is False),
    ("--gpu off", lambda lr: lr.config["gpu"]["layers"] == 0 and lr.llama_params["model"]["n_gpu_layers"] == 0),
    ("--gpu 0.5", lambda lr: lr.llama_params["model"]["n_gpu_layers"] == 3 and (
        lr.config["gpu"]["layers"] == 3 if lr.config["gpu"]["devices"]  # what the build reports
        else lr.config["gpu"]["layers"] == 0 and any("0 of 6 layers offloaded" in n for n in lr.notes))),
    ("--no-offload-kv-cache-to-gpu", lambda lr: lr.config["offload_kv_cache_to_gpu"] is False
     and lr.llama_params["context"]["offload_kqv"] is False),
    ("--offload-kv-cache-to-gpu", lambda lr: lr.requested["offload_kv_cache_to_gpu"] is True
     and lr.llama_params["context"]["offload_kqv"] is True),
    ("--config '{\"contextLength\": 512, \"evalBatchSize\": 128}' --context-length 768",
     lambda lr: lr.config["context_length"] == 768 and lr.config["eval_batch_size"] == 128),
    ("--identifier tiny", lambda lr: lr.model_instance_id == "tiny"),
])
def test_each_load_flag_reaches_the_engine(ip, flags, check):
    lr, cap = run(ip, f"%lm_load stories260K --new {flags}")
    assert isinstance(lr, LoadResult) and check(lr), (flags, lr.to_dict())
    (html,) = htmls(cap)
    assert "lmsext-load-summary" in html and "context_length" in html
    for note in lr.notes:
        assert note.split(":")[0].replace(">", "&gt;") in html


def test_quantized_kv_cache_flags_map_to_lm_studio_keys(ip, head32):
    lr, cap = run(ip, f"%lm_load {head32} --k-cache q8_0 --v-cache q8_0 --flash-attention --context-length 256")
    assert lr.requested["llama_k_cache_quantization_type"] == "q8_0"
    assert lr.config["llama_k_cache_quantization_type"] == "q8_0" == lr.config["llama_v_cache_quantization_type"]
    assert lr.llama_params["context"]["type_k"] == 8 == lr.llama_params["context"]["type_v"]  # GGML_TYPE_Q8_0
    assert "q8_0" in htmls(cap)[0]


def test_num_experts_on_a_moe_model(ip, moe):
    lr, cap = run(ip, f"%lm_load {moe} --num-experts 1 --context-length 256")
    assert lr.config["num_experts"] == 1 and list(lr.llama_params["kv_overrides"].values()) == [1]
    text = cap.outputs[0].data["text/plain"]
    assert "experts          4 (2 used per token by default)" in text


def test_config_from_a_notebook_variable(ip):
    ip.user_ns["cfg"] = {"contextLength": 512, "seed": 9}
    lr, _ = run(ip, "%lm_load stories260K --config {cfg} --seed 10")
    assert lr.config["context_length"] == 512 and lr.config["seed"] == 10


def test_summary_shows_model_info_effective_config_notes_memory_and_time(ip):
    lr, cap = run(ip, "%lm_load stories260K --context-length 1000 --gpu 0.5")
    (out,) = cap.outputs
    text, html = out.data["text/plain"], out.data["text/html"]
    assert "application/json" not in out.data  # JupyterLab would render the JSON instead of the table
    for expected in ("architecture     llama", "parameters       293K", "quantization     F32",
                     "file size        1.13 MiB", "layers           5", "trained context  2048 tokens",
                     "experts          none (dense)", "Memory     weights 1.12 MiB · KV cache", "Load time"):
        assert expected in text, expected
    rows = [line for line in text.splitlines() if re.match(r" [!* ]\w+_\w+|  setting", line)]
    assert len({line.index(line.split()[1]) for line in rows if len(line.split()) > 1}) == 1  # aligned column
    rest_rows = [line.split()[0].lstrip("*!") for line in rows[1:6]]
    assert rest_rows == ["context_length", "eval_batch_size", "flash_attention", "num_experts",
                         "offload_kv_cache_to_gpu"]
    for expected in ("<table", "<b>context_length</b>", "1000 → 1024", "n_ctx", "llama.cpp parameters",
                     "Load time"):
        assert expected in html, expected
    if not llama_cpp.llama_supports_gpu_offload():  # what this build reports
        assert "gpu 0.5 requested → 0 of 6 layers offloaded: this build of llama.cpp has no GPU backend" in text
    assert lr._repr_json_()["config"]["context_length"] == 1024  # JSON through _repr_json_
    assert str(lr) == text


def test_jit_reuse_says_the_config_was_ignored_and_new_loads_another(ip):
    first, _ = run(ip, "%lm_load stories260K --context-length 512")
    again, cap = run(ip, "%lm_load stories260K --context-length 1024")
    assert again.reused and again.model_instance_id == first.model_instance_id
    assert again.config["context_length"] == 512 and loaded() == ["stories260K"]
    assert "config was ignored" in cap.outputs[0].data["text/plain"] and "--new" in again.notes[-1]
    new, _ = run(ip, "%lm_load stories260K --new --context-length 1024")
    assert new.model_instance_id == "stories260K:2" and new.config["context_length"] == 1024
    assert loaded() == ["stories260K", "stories260K:2"]
    assert session_module.get_session().model == "stories260K:2"


def test_value_is_the_load_result_and_never_displayed_twice(ip):
    with capture_output() as cap:
        ip.run_cell("r = %lm_load stories260K --context-length 256", store_history=True)
    assert isinstance(ip.user_ns["r"], LoadResult) and len(cap.outputs) == 1
    with capture_output() as cap:
        ip.run_cell("%lm_load stories260K", store_history=True)
    assert len(cap.outputs) == 1 and "Out[" not in cap.stdout


# ------------------------------------------------------------------------------ streaming

def test_respond_streams_the_text_then_the_stats(ip, rich):
    """Plain displays (no widgets): the text on stdout, under a live stats line; the stats line after it.
    Message by message (only deltas, the throttle): tests/test_streaming.py."""
    run(ip, "%lm_load stories260K --context-length 512")
    rich.stream_update_interval = 0.0
    _, cap = run(ip, "%%lm_respond --max-tokens 200 --temperature 0", "Tell me a story")
    result = ip.user_ns["_lm"]
    assert isinstance(result, PredictionResult) and result.stats.predicted_tokens_count > 20
    assert cap.stdout == result.content  # the text, once
    warning, live, *updates, stats = cap.outputs
    assert warning.data["text/plain"].startswith("stories260K has no chat template (a base model): %%lm_respond "
                                                 "formats the chat with lmsext's plain 'lmsext-plain' template")
    assert not live.update and live.data["text/plain"] == "… generating"
    assert all(o.update and o.transient == live.transient for o in updates)  # the live line, updated in place
    assert updates[-1].data == {"text/plain": ""}  # taken down at the end
    assert not stats.update and "lmsext-stats" in stats.data["text/html"]
    plain = stats.data["text/plain"]
    assert plain.startswith(f"[{result.stats.predicted_tokens_count} tokens") and "tok/s" in plain
    assert f"stop: {result.stats.stop_reason}" in plain and "first token" in plain
    _, cap = run(ip, "%%lm_respond --max-tokens 5 --temperature 0", "And then?")
    assert "no chat template" not in str([o.data for o in cap.outputs])  # the warning: once per instance


def test_terminal_mode_writes_tokens_to_stdout_as_they_arrive(ip, lm, monkeypatch):
    assert lm.mode == "text"  # a shell without a kernel
    run(ip, "%lm_load stories260K --context-length 512")
    writes = []

    class Out:
        def write(self, s):
            writes.append(s)

        def flush(self):
            pass

    monkeypatch.setattr(sys, "stdout", Out())
    ip.run_cell_magic("lm_complete", "--max-tokens 30 --temperature 0", "Once upon a time")
    monkeypatch.undo()
    result = ip.user_ns["_lm"]
    assert len(writes) > 10
    out = "".join(writes)
    assert out.startswith("\x1b[2mOnce upon a time\x1b[0m" + result.content)  # the prompt dimmed, then the completion
    assert "[30 tokens ·" in out and "maxPredictedTokensReached" in out


# ------------------------------------------------------------------------------ chat, interpolation, flags

def test_history_continues_across_cells_and_chats_are_separate(ip):
    run(ip, "%lm_load stories260K --context-length 1024")
    run(ip, "%%lm_respond --max-tokens 8 --temperature 0", "Hello there")
    first = ip.user_ns["_lm"]
    run(ip, "%%lm_respond --max-tokens 8 --temperature 0", "And then?")
    second = ip.user_ns["_lm"]
    assert "Hello there" in second.prompt and first.content in second.prompt and "And then?" in second.prompt
    chat = session_module.get_session().chats["default"]
    assert [m["role"] for m in chat.messages] == ["user", "assistant", "user", "assistant"]
    run(ip, "%%lm_respond --max-tokens 8 --temperature 0 --no-history", "Fresh start")
    assert "Hello there" not in ip.user_ns["_lm"].prompt and len(session_module.get_session().chats["default"]) == 4
    run(ip, "%%lm_respond --max-tokens 8 --temperature 0 --chat other --system 'You are terse.'", "Hi")
    other = session_module.get_session().chats["other"]
    assert other.system_prompt == "You are terse." and "Hello there" not in ip.user_ns["_lm"].prompt
    assert "You are terse." in ip.user_ns["_lm"].prompt


def test_interpolation_from_the_user_namespace_and_brace_escapes(ip):
    run(ip, "%lm_load stories260K --context-length 512")
    ip.user_ns.update(name="Lily", pet={"kind": "dog"}, mood="happy")
    run(ip, "%%lm_respond --max-tokens 5 --no-history --system 'Be {mood}.'",
        "{name} has a {pet[kind]} and writes {{braces}}")
    prompt = ip.user_ns["_lm"].prompt
    assert "Lily has a dog and writes {braces}" in prompt and "Be happy." in prompt
    run(ip, "%%lm_complete --max-tokens 3", "Once {name}")
    assert ip.user_ns["_lm"].prompt == "Once Lily"


def test_prediction_flags_reach_the_engine_and_out_stores_the_result(ip):
    run(ip, "%lm_load stories260K --context-length 512")
    run(ip, "%%lm_complete --max-tokens 7 --temperature 0.5 --top-k 5 --top-p 0.9 --min-p 0.05 "
            "--repeat-penalty 1.1 --seed 3 --stop '\\n\\n' --stop zzz --out res", "Once upon a time")
    res = ip.user_ns["res"]
    assert res is ip.user_ns["_lm"]
    cfg = res.prediction_config
    assert cfg == {"maxTokens": 7, "temperature": 0.5, "stopStrings": ["\n\n", "zzz"], "topKSampling": 5,
                   "repeatPenalty": 1.1, "minPSampling": 0.05, "topPSampling": 0.9, "seed": 3}
    assert res.stats.seed == 3 and res.stats.predicted_tokens_count <= 7


def test_stop_string_ends_the_completion(ip):
    run(ip, "%lm_load stories260K --context-length 512")
    run(ip, "%%lm_complete --max-tokens 100 --temperature 0 --stop .", "Once upon a time")
    r = ip.user_ns["_lm"]
    assert r.stats.stop_reason == "stopStringFound" and r.stats.stop_string == "." and "." not in r.content


def test_merge_order_session_then_magic_default_then_flags(ip, lm):
    run(ip, "%lm_load stories260K --context-length 512")
    run(ip, "%lm_config predict temperature=0.3 maxTokens=4 topKSampling=7")
    lm.default_prediction_config = {"maxTokens": 5, "seed": 11}
    run(ip, "%%lm_complete --temperature 0", "Once")
    cfg = ip.user_ns["_lm"].prediction_config
    assert cfg["temperature"] == 0 and cfg["maxTokens"] == 5 and cfg["topKSampling"] == 7 and cfg["seed"] == 11


def test_structured_output_from_a_variable(ip):
    run(ip, "%lm_load stories260K --context-length 512")
    ip.user_ns["yes_no"] = {"type": "gbnf", "gbnfGrammar": 'root ::= "yes" | "no"'}
    run(ip, "%%lm_respond --structured yes_no --max-tokens 10 --no-history", "Anything?")
    assert ip.user_ns["_lm"].content in ("yes", "no")


def test_model_flag_and_default_model_load_just_in_time(ip, lm):
    _, cap = run(ip, "%%lm_complete --max-tokens 2", "Once")  # nothing loaded: the embedded default model, said once
    text = "".join(o.data.get("text/plain", "") for o in cap.outputs)
    assert RED not in "".join(htmls(cap)) and "using the embedded default model stories260K" in text
    assert loaded() == ["stories260K"] and ip.user_ns["_lm"].stats.predicted_tokens_count == 2
    run(ip, "%lm_unload --all")
    lm.default_model = "stories260K"
    _, cap = run(ip, "%%lm_complete --max-tokens 2", "Once")
    assert "just in time" in cap.outputs[0].data["text/plain"] and loaded() == ["stories260K"]
    run(ip, "%lm_load stories260K --new --identifier second --context-length 256")
    run(ip, "%%lm_complete --max-tokens 2 --model stories260K", "Once")
    assert ip.user_ns["_lm"].model_instance_id == "stories260K"
    run(ip, "%%lm_complete --max-tokens 2", "Once")
    assert ip.user_ns["_lm"].model_instance_id == "second"  # the last %lm_load'ed


# ------------------------------------------------------------------------------ interrupts

def _interrupt_after(monkeypatch, n, how):
    original = StreamView.feed
    calls = []

    def feed(self, text):
        calls.append(text)
        if len(calls) == n:
            how()
        original(self, text)

    monkeypatch.setattr(StreamView, "feed", feed)
    return calls


def _raise():
    raise KeyboardInterrupt


@pytest.mark.parametrize("how", [_raise, lambda: signal.raise_signal(signal.SIGINT)], ids=["raise", "sigint"])
def test_interrupt_in_the_display_code_stops_with_partial_text(ip, rich, monkeypatch, how):
    run(ip, "%lm_load stories260K --context-length 512")
    rich.stream_update_interval = 0.0
    _interrupt_after(monkeypatch, 5, how)
    _, cap = run(ip, "%%lm_respond --max-tokens 200 --temperature 0", "Tell me a story")
    result = ip.user_ns["_lm"]
    assert result.stats.stop_reason == "userStopped" and 0 < result.stats.predicted_tokens_count < 200
    assert cap.stdout == result.content and "stop: userStopped" in cap.outputs[-1].data["text/plain"]
    chat = session_module.get_session().chats["default"]
    assert chat.messages[-1]["content"] == result.content  # what was shown is what the chat remembers
    monkeypatch.undo()
    run(ip, "%%lm_respond --max-tokens 10 --temperature 0", "Go on")
    assert ip.user_ns["_lm"].stats.stop_reason in ("maxPredictedTokensReached", "eosFound")


def test_kernel_interrupt_during_an_endless_generation(ip, monkeypatch):
    run(ip, "%lm_load stories260K --context-length 256")
    run(ip, "%lm_config predict maxTokens=False contextOverflowPolicy=rollingWindow")
    original = StreamView.feed
    started = []

    def feed(self, text):
        if not started:  # generation is running (and never ends by itself): interrupt it from outside
            started.append(threading.Timer(0.05, lambda: os.kill(os.getpid(), signal.SIGINT)))
            started[0].start()
        original(self, text)

    monkeypatch.setattr(StreamView, "feed", feed)
    monkeypatch.setattr(sys, "stdout", io.StringIO())
    ip.run_cell_magic("lm_complete", "", "Once upon a time")
    started[0].join()
    monkeypatch.undo()
    r = ip.user_ns["_lm"]
    assert r.stats.stop_reason == "userStopped" and r.stats.predicted_tokens_count > 0
    run(ip, "%%lm_complete --max-tokens 3", "Once")
    assert ip.user_ns["_lm"].stats.predicted_tokens_count == 3


# ------------------------------------------------------------------------------ user errors

ERRORS = [
    ("%lm_load stories260K --context-length abc", "invalid int value"),
    ("%lm_load stories260K --bogus", "unrecognized arguments: --bogus"),
    ("%lm_load nope-model", "model 'nope-model' not found"),
    ("%lm_load stories260K --new --context-length 0", "--context-length 0: must be an integer >= 1"),
    ("%lm_load stories260K --new --gpu 2", "--gpu 2.0: must be"),
    ("%lm_load stories260K --new --gpu half", "--gpu 'half'"),
    ("%lm_load stories260K --new --k-cache q9", "--k-cache 'q9': must be one of"),
    ("%lm_load stories260K --new --num-experts 2", "dense model"),
    ("%lm_load stories260K --new --config '{bad'", "--config: not a JSON object"),
    ("%lm_load stories260K --new --config '{\"contextLenght\": 5}'", "did you mean 'contextLength'"),
    ("%lm_load stories260K --new --config {missing}", "no variable 'missing'"),
    ("%lm_load stories260K --new --identifier stories260K", "already taken"),
    ("%lm_load stories260K --new --system 'unbalanced", "cannot split the arguments"),
    ("%%lm_respond --temperature 5", "--temperature 5.0: must be a number from 0 to 2"),
    ("%%lm_respond --model nope-model", "model 'nope-model' not found"),
    ("%%lm_respond --chat a --no-history", "exclude each other"),
    ("%%lm_respond --structured missing", "no variable 'missing'"),
    ("%%lm_respond --out 1x", "must be a variable name"),
    ("%%lm_complete --top-p 0", "--top-p 0.0: must be a number > 0"),
    ("%%lm_complete --stop ''", "--stop '': must be a non-empty string"),
    ("%lm_config predict temprature=1", "did you mean 'temperature'"),
    ("%lm_config predict temperature=9", "temperature=9: must be a number from 0 to 2"),
    ("%lm_config seed=3", "both a load and a prediction setting"),
    ("%lm_config predict temperature", "expected key=value"),
    ("%lm_unload nope", "no loaded model 'nope'"),
    ("%lm_chat save", "save needs a PATH"),
    ("%lm_chat bogus", "invalid choice"),
    ("%lm_ps extra", "takes no arguments"),
]


@pytest.mark.parametrize("line, message", ERRORS, ids=[e[0] for e in ERRORS])
def test_user_errors_print_one_red_line_and_change_nothing(ip, line, message):
    run(ip, "%lm_load stories260K --context-length 512 --seed 5")
    run(ip, "%%lm_respond --max-tokens 3", "Hello")
    session = session_module.get_session()
    before = (loaded(), session.model, session.load_config, session.prediction_config,
              [c.messages for c in session.chats.values()])
    ip.user_ns["_lm"] = "previous"
    value, cap = run(ip, line, "Hello {name}" if "{name}" in line else "Hello")
    assert value is None and cap.stderr == "" and cap.stdout == ""
    (out,) = cap.outputs
    html, text = out.data["text/html"], out.data["text/plain"]
    assert html.startswith(RED) and "\n" not in html and message in text, text
    assert text.startswith("\x1b[31m") and "Traceback" not in text
    after = (loaded(), session.model, session.load_config, session.prediction_config,
             [c.messages for c in session.chats.values()])
    assert after == before and ip.user_ns["_lm"] == "previous"
    model = client().llm.get("stories260K")
    assert model.loaded and model.load_result.config["seed"] == 5
    run(ip, "%%lm_respond --max-tokens 3", "Still there?")
    assert ip.user_ns["_lm"].stats.predicted_tokens_count >= 1


def test_empty_cell_and_unknown_variable_in_the_cell(ip):
    run(ip, "%lm_load stories260K --context-length 512")
    _, cap = run(ip, "%%lm_respond", "   \n")
    assert "the cell is empty" in htmls(cap)[0]
    _, cap = run(ip, "%%lm_respond", "Hi {nobody}")
    assert "no variable 'nobody'" in cap.outputs[0].data["text/plain"] and "default" not in session_module.get_session().chats


def test_engine_error_mid_stream_is_one_red_line_and_the_model_stays_usable(ip, rich):
    run(ip, "%lm_load stories260K --context-length 256")
    run(ip, "%lm_config predict contextOverflowPolicy=stopAtLimit")
    _, cap = run(ip, "%%lm_complete --max-tokens 5", "word " * 400)
    placeholder, taken_down, error = cap.outputs
    assert taken_down.update and taken_down.data == {"text/plain": ""}
    assert error.data["text/html"].startswith(RED) and "the prompt is" in error.data["text/plain"]
    run(ip, "%%lm_complete --max-tokens 3", "Once")
    assert ip.user_ns["_lm"].stats.predicted_tokens_count == 3


def test_markdown_option_renders_the_final_frame_as_markdown(ip, rich):
    run(ip, "%lm_load stories260K --context-length 256")
    rich.markdown = True
    _, cap = run(ip, "%%lm_complete --max-tokens 5 --temperature 0", "Once")
    final = cap.outputs[-1].data
    assert final["text/markdown"].startswith(ip.user_ns["_lm"].content) and "stop: maxPredictedTokensReached" in final[
        "text/markdown"]


# ------------------------------------------------------------------------------ %lm_config, %lm_chat, %lm_ps …

def test_lm_config_sets_shows_unsets_and_notifies(ip):
    session = session_module.get_session()
    seen = []
    session.observe(lambda change: seen.append(change["new"]), names="prediction_config")
    _, cap = run(ip, "%lm_config predict temperature=0.3 maxTokens=40 stop=['a b', 'c'] "
                     "contextOverflowPolicy=rollingWindow")
    cfg = session.prediction_config
    assert cfg.temperature == 0.3 and cfg.max_tokens == 40 and cfg.stop_strings == ["a b", "c"]
    assert cfg.context_overflow_policy == "rollingWindow" and seen == [cfg]
    text = cap.outputs[0].data["text/plain"]
    assert "temperature" in text and "effective for %%lm_respond" in text
    run(ip, "%lm_config predict temperature=None")
    assert "temperature" not in session.prediction_config.explicit()
    run(ip, "%lm_config contextLength=512 flashAttention=true")
    assert session.load_config.context_length == 512 and session.load_config.flash_attention is True
    lr, _ = run(ip, "%lm_load stories260K")
    assert lr.config["context_length"] == 512 and lr.config["flash_attention"] is True
    _, cap = run(ip, "%lm_config")
    assert "context_length" in cap.outputs[0].data["text/plain"] and "max_tokens" in cap.outputs[0].data["text/plain"]
    run(ip, "%lm_config predict --reset")
    assert session.prediction_config.explicit() == {} and session.load_config.context_length == 512
    run(ip, "%lm_config --reset")
    assert session.load_config.explicit() == {}


def test_lm_chat_show_save_reset(ip, tmp_path):
    run(ip, "%lm_load stories260K --context-length 512")
    run(ip, "%%lm_respond --max-tokens 4 --chat story", "Hi")
    _, cap = run(ip, "%lm_chat show --chat story")
    assert "chat 'story': 2 message(s)" in cap.outputs[0].data["text/plain"] and "Hi" in htmls(cap)[0]
    path = tmp_path / "chat.json"
    run(ip, f"%lm_chat save {path} --chat story")
    saved = json.loads(path.read_text())
    assert [m["role"] for m in saved["messages"]] == ["user", "assistant"]
    run(ip, "%lm_chat reset --chat story")
    assert "story" not in session_module.get_session().chats
    _, cap = run(ip, "%lm_chat show --chat story")
    assert "0 message(s)" in cap.outputs[0].data["text/plain"]


def test_lm_ps_lm_ls_and_lm_unload(ip):
    run(ip, "%lm_load stories260K --context-length 512")
    run(ip, "%lm_load stories260K --new --identifier b --context-length 256 --seed 4")
    _, cap = run(ip, "%lm_ps")
    text = cap.outputs[0].data["text/plain"]
    assert "● stories260K — context 512 · " in text and "● b (default) — stories260K · context 256 · " in text
    assert "seed=4" in text and htmls(cap)[0].count("<details") == 2
    _, cap = run(ip, "%lm_ls")
    text = cap.outputs[0].data["text/plain"]
    assert re.search(r"stories260K\s+1.13 MiB\s+llama\s+293K\s+F32\s+stories260K, b", text)
    _, cap = run(ip, "%lm_unload")
    assert loaded() == ["stories260K"] and "unloaded b" in cap.outputs[0].data["text/plain"]
    assert session_module.get_session().model is None
    run(ip, "%lm_load stories260K --new --identifier c --context-length 256")
    run(ip, "%lm_unload stories260K")
    assert loaded() == ["c"]
    run(ip, "%lm_unload --all")
    assert loaded() == []
    _, cap = run(ip, "%lm_ps")
    assert "no model is loaded" in cap.outputs[0].data["text/plain"]


def test_models_path_option_adds_a_model_folder(ip, lm, tmp_path, head32):
    folder = tmp_path / "models"
    folder.mkdir()
    (folder / "extra.gguf").write_bytes(Path(head32).read_bytes())
    original = os.environ.get("LMSEXT_MODELS_PATH")
    try:
        ip.run_line_magic("config", f"LMMagics.models_path = {str(folder)!r}")
        _, cap = run(ip, "%lm_ls")
        assert "extra" in cap.outputs[0].data["text/plain"]
        lr, _ = run(ip, "%lm_load extra --context-length 256")
        assert lr.model_key == "extra"
    finally:
        lm.models_path = ""
    assert os.environ.get("LMSEXT_MODELS_PATH") == original


# ------------------------------------------------------------------------------ %lm_serve

def test_lm_serve_start_status_stop(ip):
    from lmsext import server
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    handle, cap = run(ip, f"%lm_serve --port {port}")
    try:
        assert f":{port}" in cap.outputs[0].data["text/plain"] and server.current_server() is not None
        _, cap = run(ip, "%lm_serve --status")
        assert "serving at" in cap.outputs[0].data["text/plain"]
    finally:
        run(ip, "%lm_serve --stop")
    assert server.current_server() is None


# ------------------------------------------------------------------------------ headless notebook

def test_headless_notebook_keeps_summary_final_text_and_stats(tmp_path, stories_path, monkeypatch):
    saved = run_headless(tmp_path, monkeypatch, "%load_ext lmsext", "%lm_load stories260K --context-length 512",
                         "%%lm_respond --max-tokens 20 --temperature 0\nTell me a story")
    load_outputs = saved.cells[1].outputs
    assert len(load_outputs) == 1 and load_outputs[0].output_type == "display_data"  # shown once
    assert "lmsext-load-summary" in load_outputs[0].data["text/html"]
    warning, out = saved.cells[2].outputs  # the base-model warning (stories260K has no chat template), the reply
    assert "has no chat template" in warning.data["text/plain"]
    text = out.data["text/plain"]
    assert re.search(r"\[20 tokens · [\d.]+ tok/s · first token .* · stop: maxPredictedTokensReached "
                     r"\(hit the token limit\)\]", text)
    body = text.split("\n\n[")[0]
    assert len(body) > 10 and "…" != body and "lmsext-stats" in out.data["text/html"]
