"""The bad-input table: every row is one distinct bad input to the Python API, the magics or the widgets.

For each row: the error is ONE line that names the problem (a magic shows it as one red line), the
model loaded before ("victim", stories260K) is still loaded and gives the same temperature-0 reply,
and the process — the kernel — is alive (crash-prone inputs such as corrupt GGUF files are also
loaded in child processes by tests/test_gguf_fuzz.py). docs/bad-inputs.md lists the table; a test
checks that every row is there. ``python tests/test_bad_inputs.py`` prints the table in Markdown
with the messages lmsext really gives.
"""

from __future__ import annotations

import html
import os
import re
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

import pytest

import lmsext
from lmsext import synth
from lmsext.errors import (ConfigError, InsufficientMemoryError, LmsextError, ModelBusyError, ModelLoadError,
                           ModelNotFoundError, ModelNotLoadedError, PredictionError)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gguf_mutations import rewrite  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "bad-inputs.md"
GREEDY = {"temperature": 0, "maxTokens": 8}
RED = '<span style="color:red">'


@dataclass(frozen=True)
class Bad:
    """One row: ``id``, where the input goes, what is done, the error expected (type, regex on the message)."""

    id: str
    surface: str  # "api", "magic" or "widget"
    what: str  # the input, as a user would write it
    run: Callable[[Any], Any] | str  # api/widget: fn(ctx); magic: "%line" or "%%cell\nbody"
    error: type[BaseException] | tuple[type[BaseException], ...] | None  # None: a defined result, no error
    match: str


def api(id: str, what: str, run: Callable[[Any], Any], error: Any, match: str) -> Bad:
    return Bad(id, "api", what, run, error, match)


def magic(id: str, line: str, match: str) -> Bad:
    return Bad(id, "magic", line, line, LmsextError, match)


def widget(id: str, what: str, run: Callable[[Any], Any], error: Any, match: str) -> Bad:
    return Bad(id, "widget", what, run, error, match)


def _busy(ctx: Any) -> None:
    stream = ctx.victim.complete_stream("Once upon a time", config={"maxTokens": 200})
    next(iter(stream))
    try:
        ctx.victim.complete("Again", config=GREEDY)
    finally:
        stream.close()


def _unloaded_handle(ctx: Any) -> None:
    other = ctx.client.llm.load("stories260K", config={"contextLength": 256}, identifier="bad-inputs-temp")
    other.unload()
    other.respond("Hello")


def _surrogate(ctx: Any) -> None:
    r = ctx.victim.complete("Once upon a \ud800 time", config=GREEDY)
    assert "\ufffd" in r.prompt and r.stats.predicted_tokens_count == 8  # a defined replacement, no error


def _panel(ctx: Any, **kw: Any):
    from lmsext.session import Session
    from lmsext.widgets import PredictionPanel
    return PredictionPanel(session=Session(), client=ctx.client, **kw)


def _panel_bad_seed(ctx: Any) -> None:
    panel = _panel(ctx, model=ctx.victim)
    try:
        panel.seed.value = "abc"
        assert panel.session.prediction_config.seed is None and panel.seed.value in ("", "abc")
        raise LmsextError(html.unescape(re.sub(r"<[^>]+>", "", panel.status.value)))  # what the panel shows
    finally:
        panel.close()


def _panel_send(ctx: Any, prompt: str, model: Any) -> None:
    panel = _panel(ctx, model=model)
    try:
        panel.send(prompt)
    finally:
        panel.close()


def _panel_busy(ctx: Any) -> None:
    panel = _panel(ctx, model=ctx.victim)
    panel.session.update("predict", {"maxTokens": False, "contextOverflowPolicy": "rollingWindow"})
    try:
        panel.send("Once upon a time")
        panel.send("Again")
    finally:
        panel.stop()
        panel.join(10)
        panel.close()


def _load_panel(ctx: Any, model: Any) -> None:
    from lmsext.widgets import LoadPanel
    LoadPanel(model, client=ctx.client)


TABLE: list[Bad] = [
    # ---- model files and names
    api("unknown-model-key", 'client.llm.load("nope-model")', lambda c: c.client.llm.load("nope-model"),
        ModelNotFoundError, r"model 'nope-model' not found in"),
    api("missing-file", "load('/tmp/…/missing.gguf')", lambda c: c.client.llm.load(str(c.files.missing)),
        ModelNotFoundError, r"no such file: .*missing\.gguf"),
    api("directory", "load('/tmp/…/folder.gguf/')", lambda c: c.client.llm.load(str(c.files.folder)),
        ModelLoadError, r"is a directory, not a GGUF model file"),
    api("empty-file", "load('empty.gguf')  # 0 bytes", lambda c: c.client.llm.load(str(c.files.empty)),
        ModelLoadError, r"empty\.gguf is empty or truncated \(0 bytes\)"),
    api("text-file", "load('notes.gguf')  # a text file", lambda c: c.client.llm.load(str(c.files.text)),
        ModelLoadError, r"notes\.gguf is not a GGUF file \(starts with b'hell'"),
    api("truncated-gguf", "load('truncated.gguf')  # first 5,000 bytes of stories260K",
        lambda c: c.client.llm.load(str(c.files.truncated)), ModelLoadError,
        r"truncated\.gguf is not a valid GGUF file: .* file ends at 5,000 \(truncated or corrupt\)"),
    api("unsupported-architecture", "load('notanarch.gguf')  # general.architecture = 'notanarch'",
        lambda c: c.client.llm.load(str(c.files.notanarch)), ModelLoadError,
        r"notanarch\.gguf: unsupported model architecture 'notanarch'"),
    api("corrupt-metadata", "load('zero-layers.gguf')  # llama.block_count = 0 (llama.cpp would abort)",
        lambda c: c.client.llm.load(str(c.files.zero_layers)), ModelLoadError,
        r"zero-layers\.gguf is not a valid GGUF file: llama\.block_count is 0"),
    api("fifo", "load('pipe.gguf')  # a named pipe (open() would block forever)",
        lambda c: c.client.llm.load(str(c.files.fifo)), ModelLoadError, r"pipe\.gguf is not a regular file"),
    api("unreadable-file", "load('unreadable.gguf')  # read() fails", lambda c: c.client.llm.load(str(c.files.unreadable)),
        ModelLoadError, r"cannot read .*unreadable\.gguf: (Permission denied|Input/output error)"),
    api("broken-symlink", "load('gone.gguf')  # a dangling symlink", lambda c: c.client.llm.load(str(c.files.gone)),
        ModelNotFoundError, r"no such file: .*gone\.gguf"),
    api("model-not-a-string", "load(123)", lambda c: c.client.llm.load(123), ModelNotFoundError,
        r"model must be a non-empty name, key or path, not 123"),
    api("model-empty-string", 'load("  ")', lambda c: c.client.llm.load("  "), ModelNotFoundError,
        r"model must be a non-empty name"),
    api("estimate-unknown-model", 'client.llm.estimate("nope-model")', lambda c: c.client.llm.estimate("nope-model"),
        ModelNotFoundError, r"model 'nope-model' not found"),
    # ---- load settings
    api("load-config-typo", 'load(…, config={"contextLenght": 512})',
        lambda c: c.client.llm.load("stories260K", config={"contextLenght": 512}), ConfigError,
        r"unknown load setting 'contextLenght' — did you mean 'contextLength'\?"),
    api("load-config-unknown-key", 'load(…, config={"turbo": True})',
        lambda c: c.client.llm.load("stories260K", config={"turbo": True}), ConfigError, r"unknown load setting 'turbo'"),
    api("load-config-prediction-key", 'load(…, config={"temperature": 0.5})',
        lambda c: c.client.llm.load("stories260K", config={"temperature": 0.5}), ConfigError,
        r"'temperature' is a prediction setting, not a load setting"),
    api("load-config-not-a-dict", "load(…, config=[1, 2])", lambda c: c.client.llm.load("stories260K", config=[1, 2]),
        ConfigError, r"load settings must be a dict"),
    api("context-length-string", 'config={"contextLength": "4096"}',
        lambda c: c.client.llm.load("stories260K", config={"contextLength": "4096"}), ConfigError,
        r"contextLength='4096': must be an integer >= 1"),
    api("context-length-negative", 'config={"contextLength": -5}',
        lambda c: c.client.llm.load("stories260K", config={"contextLength": -5}), ConfigError,
        r"contextLength=-5: must be an integer >= 1"),
    api("context-length-bool", 'config={"contextLength": True}',
        lambda c: c.client.llm.load("stories260K", config={"contextLength": True}), ConfigError,
        r"contextLength=True: must be an integer >= 1"),
    api("context-length-beyond-int32", 'config={"contextLength": 2**40}',
        lambda c: c.client.llm.load("stories260K", config={"contextLength": 2**40}), ConfigError,
        r"contextLength=1099511627776: must be at most 2,147,483,647"),
    api("context-beyond-memory", 'config={"contextLength": 30_000_000}  # ~1 TB of compute buffers',
        lambda c: c.client.llm.load("stories260K", config={"contextLength": 30_000_000}), InsufficientMemoryError,
        r"not loading stories260K\.gguf: it needs about .* but only .* is available"),
    api("eval-batch-size-zero", 'config={"evalBatchSize": 0}',
        lambda c: c.client.llm.load("stories260K", config={"evalBatchSize": 0}), ConfigError,
        r"evalBatchSize=0: must be an integer >= 1"),
    api("gpu-ratio-out-of-range", 'config={"gpu": {"ratio": 2}}',
        lambda c: c.client.llm.load("stories260K", config={"gpu": {"ratio": 2}}), ConfigError, r"gpu\.ratio=2: must be"),
    api("rope-base-negative", 'config={"ropeFrequencyBase": -1.0}',
        lambda c: c.client.llm.load("stories260K", config={"ropeFrequencyBase": -1.0}), ConfigError,
        r"ropeFrequencyBase=-1\.0: must be a number > 0"),
    api("load-seed-negative", 'load(…, config={"seed": -1})', lambda c: c.client.llm.load("stories260K", config={"seed": -1}),
        ConfigError, r"seed=-1: must be an integer from 0 to 4294967295"),
    api("cache-type-unknown", 'config={"llamaKCacheQuantizationType": "q9"}',
        lambda c: c.client.llm.load("stories260K", config={"llamaKCacheQuantizationType": "q9"}), ConfigError,
        r"llamaKCacheQuantizationType='q9': must be one of"),
    api("quantized-v-without-flash", 'config={"llamaVCacheQuantizationType": "q8_0"}  # flashAttention off',
        lambda c: c.client.llm.load("stories260K", config={"llamaVCacheQuantizationType": "q8_0"}), ConfigError,
        r"needs flash attention"),
    api("quantized-k-head-size", 'config={"llamaKCacheQuantizationType": "q4_0"}  # head size 8',
        lambda c: c.client.llm.load("stories260K", config={"llamaKCacheQuantizationType": "q4_0"}), ConfigError,
        r"head size 8 is not a multiple of the 32-element quantization block"),
    api("num-experts-dense", 'config={"numExperts": 2}  # dense model',
        lambda c: c.client.llm.load("stories260K", config={"numExperts": 2}), ConfigError, r"dense model with no experts"),
    api("num-experts-too-many", 'load(moe, config={"numExperts": 9})  # 4 experts',
        lambda c: c.client.llm.load(str(c.files.moe), config={"numExperts": 9}), ConfigError,
        r"numExperts=9: this model has 4 experts; choose 1\.\.4"),
    api("identifier-empty", 'load(…, identifier="")', lambda c: c.client.llm.load("stories260K", identifier=""),
        ConfigError, r"identifier='': must be a non-empty string"),
    api("identifier-taken", 'load(…, identifier="victim")',
        lambda c: c.client.llm.load("stories260K", identifier="victim"), ConfigError, r"identifier 'victim' is already taken"),
    # ---- prompts and chats
    api("history-not-a-chat", "model.respond(123)", lambda c: c.victim.respond(123), ConfigError,
        r"a chat history is a Chat, a string, .* not int"),
    api("chat-unknown-role", 'respond([{"role": "robot", "content": "hi"}])',
        lambda c: c.victim.respond([{"role": "robot", "content": "hi"}]), ConfigError,
        r"chat role 'robot' is not one of system, user, assistant"),
    api("chat-message-missing-content", 'respond([{"role": "user"}])', lambda c: c.victim.respond([{"role": "user"}]),
        ConfigError, r"each chat message needs 'role' and 'content'"),
    api("chat-content-not-text", 'respond([{"role": "user", "content": 5}])',
        lambda c: c.victim.respond([{"role": "user", "content": 5}]), ConfigError, r"content must be text, got int"),
    api("chat-dict-without-messages", 'respond({"msgs": []})', lambda c: c.victim.respond({"msgs": []}), ConfigError,
        r"a chat history dict needs a 'messages' list"),
    api("prompt-not-a-string", "model.complete(None)", lambda c: c.victim.complete(None), ConfigError,
        r"complete\(\) takes a prompt string, got NoneType"),
    api("tokenize-not-a-string", "model.tokenize(b'bytes')", lambda c: c.victim.tokenize(b"bytes"), ConfigError,
        r"tokenize\(\) takes a string, got bytes"),
    api("prompt-lone-surrogate", 'complete("Once upon a \\ud800 time")  # not encodable as UTF-8', _surrogate, None,
        r"replaced by U\+FFFD"),
    api("prompt-beyond-context-stop-at-limit", 'complete("word " * 2000, config={"contextOverflowPolicy": "stopAtLimit"})',
        lambda c: c.victim.complete("word " * 2000, config={**GREEDY, "contextOverflowPolicy": "stopAtLimit"}),
        PredictionError, r"the prompt is \d+ tokens but the context holds 512"),
    # ---- prediction settings
    api("prediction-config-typo", 'config={"temprature": 0.5}', lambda c: c.victim.complete("Hi", config={"temprature": 0.5}),
        ConfigError, r"unknown prediction setting 'temprature' — did you mean 'temperature'\?"),
    api("temperature-out-of-range", 'config={"temperature": 5}', lambda c: c.victim.complete("Hi", config={"temperature": 5}),
        ConfigError, r"temperature=5: must be a number from 0 to 2"),
    api("temperature-nan", 'config={"temperature": float("nan")}',
        lambda c: c.victim.complete("Hi", config={"temperature": float("nan")}), ConfigError,
        r"temperature=nan: must be a number from 0 to 2"),
    api("temperature-string", 'config={"temperature": "hot"}', lambda c: c.victim.complete("Hi", config={"temperature": "hot"}),
        ConfigError, r"temperature='hot': must be a number"),
    api("max-tokens-zero", 'config={"maxTokens": 0}', lambda c: c.victim.complete("Hi", config={"maxTokens": 0}),
        ConfigError, r"maxTokens=0: must be an integer >= 1"),
    api("max-tokens-huge", 'config={"maxTokens": 10**12}', lambda c: c.victim.complete("Hi", config={"maxTokens": 10**12}),
        ConfigError, r"maxTokens=1000000000000: must be at most 2,147,483,647"),
    api("top-k-negative", 'config={"topKSampling": -1}', lambda c: c.victim.complete("Hi", config={"topKSampling": -1}),
        ConfigError, r"topKSampling=-1: must be an integer >= 0"),
    api("top-p-zero", 'config={"topPSampling": 0}', lambda c: c.victim.complete("Hi", config={"topPSampling": 0}),
        ConfigError, r"topPSampling=0: must be a number > 0"),
    api("xtc-threshold-out-of-range", 'config={"xtcThreshold": 0.9}',
        lambda c: c.victim.complete("Hi", config={"xtcThreshold": 0.9}), ConfigError, r"xtcThreshold=0\.9: must be"),
    api("seed-negative", 'config={"seed": -1}', lambda c: c.victim.complete("Hi", config={"seed": -1}), ConfigError,
        r"seed=-1: must be an integer from 0 to 4294967295"),
    api("seed-too-big", 'config={"seed": 2**64}', lambda c: c.victim.complete("Hi", config={"seed": 2**64}), ConfigError,
        r"seed=18446744073709551616: must be an integer from 0 to 4294967295"),
    api("stop-string-empty", 'config={"stopStrings": [""]}', lambda c: c.victim.complete("Hi", config={"stopStrings": [""]}),
        ConfigError, r"stopStrings\[0\]='': must be a non-empty string"),
    api("stop-strings-number", 'config={"stopStrings": 5}', lambda c: c.victim.complete("Hi", config={"stopStrings": 5}),
        ConfigError, r"stopStrings=5: must be a non-empty string or a list"),
    api("overflow-policy-unknown", 'config={"contextOverflowPolicy": "truncate"}',
        lambda c: c.victim.complete("Hi", config={"contextOverflowPolicy": "truncate"}), ConfigError,
        r"contextOverflowPolicy='truncate': must be one of 'stopAtLimit', 'truncateMiddle', 'rollingWindow'"),
    api("cpu-threads-zero", 'config={"cpuThreads": 0}', lambda c: c.victim.complete("Hi", config={"cpuThreads": 0}),
        ConfigError, r"cpuThreads=0: must be an integer >= 1"),
    api("cpu-threads-huge", 'config={"cpuThreads": 100000}  # crashed ggml\'s thread pool',
        lambda c: c.victim.complete("Hi", config={"cpuThreads": 100000}), ConfigError, r"cpuThreads=100000: must be at most 512"),
    api("log-probs-too-many", 'config={"logProbs": 1000}', lambda c: c.victim.complete("Hi", config={"logProbs": 1000}),
        ConfigError, r"logProbs=1000: must be an integer from 0 to 20"),
    api("draft-model", 'config={"draftModel": "stories260K"}',
        lambda c: c.victim.complete("Hi", config={"draftModel": "stories260K"}), ConfigError,
        r"draftModel: speculative decoding is not supported"),
    api("json-schema-invalid", 'config={"structured": {"type": "json", "jsonSchema": {"type": "objekt"}}}',
        lambda c: c.victim.complete("Hi", config={"structured": {"type": "json", "jsonSchema": {"type": "objekt"}}}),
        ConfigError, r"structured.*objekt"),
    api("json-schema-not-a-dict", 'config={"structured": {"type": "json", "jsonSchema": "object"}}',
        lambda c: c.victim.complete("Hi", config={"structured": {"type": "json", "jsonSchema": "object"}}), ConfigError,
        r"structured"),
    api("structured-type-unknown", 'config={"structured": {"type": "xml"}}',
        lambda c: c.victim.complete("Hi", config={"structured": {"type": "xml"}}), ConfigError,
        r"^structured\.type='xml' is not supported: structured must be \{'type': 'json', 'jsonSchema': \{\.\.\.\}\}, "
        r"\{'type': 'gbnf', 'gbnfGrammar': '\.\.\.'\}, \{'type': 'none'\}, a JSON schema dict, a pydantic model class"),
    api("json-schema-empty-integer-range", 'structured json {"type": "integer", "minimum": 10, "maximum": 5}',
        lambda c: c.victim.complete("Hi", config={"structured": {"type": "json", "jsonSchema": {
            "type": "integer", "minimum": 10, "maximum": 5}}}), ConfigError,
        r"^structured\.jsonSchema: no integer satisfies minimum=10, maximum=5$"),
    api("json-schema-huge-repetition", 'structured json {"type": "array", "maxItems": 10**8}  # GBs of grammar',
        lambda c: c.victim.complete("Hi", config={"structured": {"type": "json", "jsonSchema": {
            "type": "array", "items": {"type": "integer"}, "maxItems": 10**8}}}), ConfigError,
        r"^structured\.jsonSchema\.maxItems=100000000: must be an integer from 0 to 100,000$"),
    api("grammar-syntax-error", "structured gbnf 'root ::= ('",
        lambda c: c.victim.complete("Hi", config={"structured": {"type": "gbnf", "gbnfGrammar": 'root ::= ('}}),
        ConfigError, r"structured: invalid grammar"),
    api("grammar-kills-llama-cpp", "structured gbnf 'root ::= \"a\"{2,1}'  # OOM in llama.cpp's parser",
        lambda c: c.victim.complete("Hi", config={"structured": {"type": "gbnf", "gbnfGrammar": 'root ::= "a"{2,1}'}}),
        ConfigError, r"^structured: the grammar needs more than \d+ MiB to parse — probably a repetition like "
                     r"\"a\"\{2,1\} \(max below min\) or a huge bound; it was not used$"),
    api("grammar-crashes-llama-cpp", "structured gbnf 'root ::= ' + '(' * 200_000 + '\"a\"' + ')' * 200_000"
        "  # overflows llama.cpp's stack",
        lambda c: c.victim.complete("Hi", config={"structured": {"type": "gbnf", "gbnfGrammar": (
            "root ::= " + "(" * 200_000 + '"a"' + ")" * 200_000)}}), ConfigError,
        r"^structured: llama\.cpp crashed parsing this grammar \(SIGSEGV, segmentation fault\); it was not used$"),
    # ---- handles and state
    api("unloaded-handle", "model.unload(); model.respond('Hello')", _unloaded_handle, ModelNotLoadedError,
        r"was unloaded; load it again to use it"),
    api("unload-unknown-identifier", 'client.llm.unload("nope")', lambda c: c.client.llm.unload("nope"),
        ModelNotLoadedError, r"no loaded model 'nope' \(loaded: victim\)"),
    api("get-unknown-identifier", 'client.llm.get("nope")', lambda c: c.client.llm.get("nope"), ModelNotLoadedError,
        r"no loaded model 'nope'"),
    api("prediction-while-busy", "model.complete(…) while a stream of the same model runs", _busy, ModelBusyError,
        r"model stories260K\.gguf is busy with another prediction"),
    # ---- magics (one red line; the session is unchanged)
    magic("magic-unknown-model", "%lm_load nope-model", r"%lm_load: model 'nope-model' not found"),
    magic("magic-empty-file", "%lm_load {empty_path}", r"%lm_load: .*empty\.gguf is empty or truncated"),
    magic("magic-unsupported-architecture", "%lm_load {notanarch_path}", r"unsupported model architecture 'notanarch'"),
    magic("magic-negative-context", "%lm_load stories260K --new --context-length -5",
          r"%lm_load: --context-length -5: must be an integer >= 1"),
    magic("magic-context-beyond-memory", "%lm_load stories260K --new --context-length 30000000",
          r"%lm_load: not loading stories260K\.gguf: it needs about"),
    magic("magic-estimate-bad-config", "%lm_load stories260K --estimate-only --eval-batch-size 0",
          r"%lm_load: --eval-batch-size 0: must be an integer >= 1"),
    magic("magic-experts-zero", "%lm_load stories260K --new --num-experts 0", r"--num-experts 0: must be an integer >= 1"),
    magic("magic-max-tokens-zero", "%%lm_complete --max-tokens 0\nOnce", r"%%lm_complete: --max-tokens 0: must be"),
    magic("magic-seed-negative", "%%lm_complete --seed -1\nOnce", r"--seed -1: must be an integer from 0 to 4294967295"),
    magic("magic-temperature-nan", "%%lm_respond --temperature nan\nHi", r"--temperature nan: must be a number from 0 to 2"),
    magic("magic-max-tokens-huge", "%%lm_complete --max-tokens 100000000000\nOnce",
          r"maxTokens=100000000000: must be at most 2,147,483,647"),
    magic("magic-bad-schema", "%%lm_respond --structured bad_schema\nHi",
          r"%%lm_respond: --structured 'objekt': must be one of 'array', 'boolean'"),
    magic("magic-unknown-instance", "%%lm_complete --model nope-model\nOnce", r"model 'nope-model' not found"),
    magic("magic-overflow-policy-typo", "%lm_config predict contextOverflowPolicy=rolling",
          r"contextOverflowPolicy='rolling': must be one of"),
    magic("magic-unload-unknown", "%lm_unload nope", r"%lm_unload: no loaded model 'nope'"),
    # ---- widgets
    widget("panel-seed-not-a-number", 'PredictionPanel: type "abc" in the seed box', _panel_bad_seed, LmsextError,
           r"seed 'abc': must be an integer"),
    widget("panel-empty-prompt", 'PredictionPanel.send("   ")', lambda c: _panel_send(c, "   ", c.victim), LmsextError,
           r"the prompt is empty"),
    widget("panel-unknown-model", 'PredictionPanel(model="nope").send("Hi")', lambda c: _panel_send(c, "Hi", "nope"),
           ModelNotLoadedError, r"no loaded model 'nope'"),
    widget("panel-send-while-busy", "PredictionPanel: Send while a prediction runs", _panel_busy, LmsextError,
           r"a prediction is already running"),
    widget("panel-chat-not-a-name", 'PredictionPanel(chat="")', lambda c: _panel(c, chat="").close(), TypeError,
           r"PredictionPanel\(chat=\.\.\.\): a chat name \(non-empty string\), not ''"),
    widget("load-panel-unknown-model", 'LoadPanel("nope-model")', lambda c: _load_panel(c, "nope-model"),
           ModelNotFoundError, r"model 'nope-model' not found"),
    widget("load-panel-not-a-model", "LoadPanel(123)", lambda c: _load_panel(c, 123), TypeError,
           r"LoadPanel\(model\): a model key, a path, a DownloadedModel or an LLM, not int"),
]


# ------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def files(tmp_path_factory, stories_path):
    d = tmp_path_factory.mktemp("bad")
    (d / "empty.gguf").write_bytes(b"")
    (d / "notes.gguf").write_text("hello, this is not a model")
    (d / "truncated.gguf").write_bytes(stories_path.read_bytes()[:5000])
    (d / "folder.gguf").mkdir()
    os.mkfifo(d / "pipe.gguf")
    (d / "gone.gguf").symlink_to(d / "never-existed.gguf")
    unreadable = d / "unreadable.gguf"
    if os.geteuid() == 0:  # root reads anything: a file whose read() fails instead
        unreadable.symlink_to("/proc/self/mem")
    else:
        unreadable.write_bytes(stories_path.read_bytes())
        unreadable.chmod(0)
    return SimpleNamespace(
        empty=d / "empty.gguf", text=d / "notes.gguf", truncated=d / "truncated.gguf", folder=d / "folder.gguf",
        fifo=d / "pipe.gguf", gone=d / "gone.gguf", unreadable=unreadable, missing=d / "missing.gguf",
        notanarch=rewrite(stories_path, d / "notanarch.gguf", kv={"general.architecture": "notanarch"}),
        zero_layers=rewrite(stories_path, d / "zero-layers.gguf", kv={"llama.block_count": 0}),
        moe=synth.moe_model(d))


@pytest.fixture(scope="module")
def ctx(files):
    client = lmsext.default_client()
    client.llm.unload_all()
    victim = client.llm.load("stories260K", config={"contextLength": 512, "seed": 5}, identifier="victim")
    reference = victim.complete("Once upon a time", config=GREEDY).content
    yield SimpleNamespace(client=client, victim=victim, files=files, reference=reference)
    client.llm.unload_all()


@pytest.fixture(scope="module")
def ip(ctx, shell):
    shell.run_line_magic("load_ext", "lmsext")
    from lmsext.ui import magics as magics_module
    m = magics_module.get_magics(shell)
    old = {name: getattr(m, name) for name in ("display_mode", "widgets") if hasattr(m, name)}
    m.display_mode = "rich"
    if "widgets" in old:
        m.widgets = "off"
    shell.user_ns.update(empty_path=str(ctx.files.empty), notanarch_path=str(ctx.files.notanarch),
                         bad_schema={"type": "json", "jsonSchema": {"type": "objekt"}})
    yield shell
    for name, value in old.items():
        setattr(m, name, value)


def _still_fine(ctx: Any) -> None:
    """The victim is loaded, answers exactly as before; rows leave no other instance behind."""
    loaded = [llm.identifier for llm in ctx.client.llm.list_loaded()]
    for extra in [i for i in loaded if i != "victim"]:
        ctx.client.llm.unload(extra)
    assert "victim" in loaded and ctx.victim.loaded
    assert ctx.victim.complete("Once upon a time", config=GREEDY).content == ctx.reference


def _one_line(message: str) -> None:
    assert message and "\n" not in message and "Traceback" not in message and len(message) < 500, message


def _run_magic(ip: Any, line: str) -> tuple[Any, Any]:
    from IPython.utils.capture import capture_output
    line, _, cell = line.partition("\n")
    with capture_output() as cap:
        if line.startswith("%%"):
            name, _, args = line[2:].partition(" ")
            value = ip.run_cell_magic(name, args, cell)
        else:
            name, _, args = line[1:].partition(" ")
            value = ip.run_line_magic(name, args.format(**ip.user_ns))
    return value, cap


# ------------------------------------------------------------------------------ tests


def test_the_table_has_at_least_fifty_distinct_bad_inputs():
    ids = [row.id for row in TABLE]
    assert len(ids) == len(set(ids)) and len(set(row.what for row in TABLE)) == len(TABLE)
    assert len(TABLE) >= 50
    assert {row.surface for row in TABLE} == {"api", "magic", "widget"}


@pytest.mark.parametrize("row", [r for r in TABLE if r.surface != "magic"], ids=lambda r: r.id)
def test_bad_input_gets_one_clear_line_and_changes_nothing(row, ctx):
    if row.error is None:
        row.run(ctx)
    else:
        with pytest.raises(row.error) as info:
            row.run(ctx)
        message = str(info.value)
        _one_line(message)
        assert re.search(row.match, message), message
    _still_fine(ctx)


@pytest.mark.parametrize("row", [r for r in TABLE if r.surface == "magic"], ids=lambda r: r.id)
def test_bad_magic_input_is_one_red_line_and_changes_nothing(row, ctx, ip):
    from lmsext import session as session_module
    session = session_module.get_session()
    before = (session.model, session.load_config, session.prediction_config,
              {k: c.messages for k, c in session.chats.items()})
    value, cap = _run_magic(ip, row.run)
    assert value is None and cap.stdout == "" and cap.stderr == ""
    (out,) = [o for o in cap.outputs if "text/html" in o.data and o.data["text/html"].startswith(RED)]
    text = out.data["text/plain"]
    _one_line(out.data["text/html"])
    assert re.search(row.match, text), text
    after = (session.model, session.load_config, session.prediction_config,
             {k: c.messages for k, c in session.chats.items()})
    assert after == before
    _still_fine(ctx)


def test_docs_list_every_row():
    doc = DOC.read_text(encoding="utf-8")
    missing = [row.id for row in TABLE if f"`{row.id}`" not in doc]
    assert not missing, f"docs/bad-inputs.md lacks: {missing}"


def markdown_table(messages: dict[str, str]) -> str:
    """The table in Markdown, with the message lmsext gave for each row (``messages``: id → message)."""
    out = ["| # | id | surface | input | error |", "|---|---|---|---|---|"]
    for i, row in enumerate(TABLE, 1):
        kind = "no error: defined replacement" if row.error is None else (
            "red line" if row.surface == "magic" else getattr(row.error, "__name__", "error"))
        msg = re.sub(r"/tmp/\S*/", "/tmp/…/", messages.get(row.id, "")).replace("|", "\\|")
        what = row.what.replace("|", "\\|").replace("\n", " ⏎ ")
        out.append(f"| {i} | `{row.id}` | {row.surface} | `{what}` | {kind}: {msg} |")
    return "\n".join(out)


if __name__ == "__main__":  # print the table with real messages (for docs/bad-inputs.md)
    print("run: python -m pytest tests/test_bad_inputs.py -q -s -k print_table", file=sys.stderr)


def test_print_table(ctx, ip, capsys, request):
    """docs/bad-inputs.md lists every row; with ``-s`` and LMSEXT_PRINT_TABLE=1 also prints the Markdown table
    with the real messages (to refresh the doc)."""
    doc = (REPO / "docs" / "bad-inputs.md").read_text()
    assert [row.id for row in TABLE if f"`{row.id}`" not in doc] == []
    if not os.environ.get("LMSEXT_PRINT_TABLE"):
        return
    messages: dict[str, str] = {}
    for row in TABLE:
        try:
            if row.surface == "magic":
                _, cap = _run_magic(ip, row.run)
                messages[row.id] = re.sub(r"\x1b\[\d+m", "", next(
                    o.data["text/plain"] for o in cap.outputs if o.data.get("text/html", "").startswith(RED)))
            else:
                row.run(ctx)
                messages[row.id] = "lone surrogates are replaced by U+FFFD"
        except BaseException as exc:  # noqa: BLE001 - collecting messages
            messages[row.id] = str(exc)
        _still_fine(ctx)
    with capsys.disabled():
        print("\n" + markdown_table(messages))
