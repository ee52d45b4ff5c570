"""The bad-input table: every row is one distinct bad input to the Python API, the magics, the widgets or the
REST server.

For each row: the error is ONE line that names the problem (a magic shows it as one red line), the
model loaded before ("victim", stories260K) is still loaded and gives the same temperature-0 reply,
and the process — the kernel — is alive (crash-prone inputs such as corrupt GGUF files are also loaded
in child processes by tests/test_gguf_fuzz.py). A REST row gets the status expected and one JSON error
line holding no server path and no byte of a file, and the server still runs. docs/bad-inputs.md lists the table; a test
checks that every row is there. ``python tests/test_bad_inputs.py`` prints the table in Markdown
with the messages lmsext really gives.
"""

from __future__ import annotations

import html
import json
import os
import re
import sys
import threading
import time
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


# ------------------------------------------------------------------------------ issue 13 (API and magics) helpers

def _nested(depth: int, leaf: Any = None) -> Any:
    """A JSON schema ``depth`` arrays deep."""
    schema = leaf or {"type": "string"}
    for _ in range(depth):
        schema = {"type": "array", "items": schema}
    return schema


def _self_containing_schema() -> dict:
    schema: dict = {"type": "object", "properties": {}}
    schema["properties"]["again"] = schema
    return schema


def _self_containing_load_config() -> dict:
    config: dict = {"gpu": {"ratio": 0}}
    config["gpu"]["again"] = config
    return config


def _json(c: Any, schema: Any) -> Any:
    return c.victim.complete("Hi", config={"maxTokens": 4, "structured": {"type": "json", "jsonSchema": schema}})


def _unload_during(ctx: Any, work: Callable[[Any], Any]) -> None:
    """A second instance unloaded 0.2 s into ``work`` on another thread: the work ends cleanly (it finishes
    or raises ModelNotLoadedError), never inside freed memory."""
    other = ctx.client.llm.load("stories260K", config={"contextLength": 256}, identifier="bad-inputs-temp")
    outcome: list[str] = []

    def run() -> None:
        try:
            work(other)
            outcome.append("finished")
        except ModelNotLoadedError:
            outcome.append("not loaded")

    thread = threading.Thread(target=run)
    thread.start()
    time.sleep(0.2)
    other.unload()
    thread.join(120)
    assert outcome in (["finished"], ["not loaded"]), outcome


def _numpy_config(ctx: Any, **config: Any) -> None:
    r = ctx.victim.complete("Once upon a time", config={"temperature": 0, **config})
    assert r.stats.predicted_tokens_count == int(config.get("maxTokens", 8)), r.stats


def _fifty_thousand_stops(ctx: Any) -> None:
    word = ctx.reference[3:8]
    r = ctx.victim.complete("Once upon a time", config={**GREEDY, "stopStrings": [f"never-{i}" for i in range(
        49_999)] + [word]})
    assert r.stats.stop_reason == "stopStringFound" and r.content == ctx.reference[:ctx.reference.index(word)]


def _load_interrupted(ctx: Any) -> None:
    """A Ctrl-C landing in the progress callback (off the main thread the SIGINT guard cannot take it)."""
    def progress(fraction: float) -> None:
        raise KeyboardInterrupt

    ctx.client.llm.load("stories260K", identifier="bad-inputs-temp", on_load_progress=progress)


class _FormatRaises:
    """A notebook variable whose ``__format__`` raises (with a two-line message)."""

    def __format__(self, spec: str) -> str:
        raise RuntimeError("no text for you\nsecond line")


class _AttributeRaises:
    """A notebook variable whose attributes raise something other than AttributeError."""

    @property
    def schema(self) -> dict:
        raise RuntimeError("no schema here")


def _unload_in_callback(ctx: Any) -> None:
    other = ctx.client.llm.load("stories260K", config={"contextLength": 256}, identifier="bad-inputs-temp")
    r = other.complete("Once upon a time", config={"maxTokens": 50},
                       on_prediction_fragment=lambda f: other.loaded and other.unload())
    assert r.stats.stop_reason == "userStopped" and not other.loaded


def _issue13_magic(id: str, what: str, line: str, match: str) -> Bad:
    """A magic row whose line is too long to show as is (``what`` describes it)."""
    return Bad(id, "magic", what, line, LmsextError, match)


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
        ModelLoadError, r"notes\.gguf is not a GGUF file \(it does not start with b'GGUF'\)$"),
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
    api("prompt-template-unknown-name", 'config={"promptTemplate": "chatm"}',
        lambda c: c.victim.respond("Hi", config={"promptTemplate": "chatm"}), ConfigError,
        r"promptTemplate='chatm': no built-in template of that name \(built-in: chatml, llama3, alpaca, plain\)"),
    api("prompt-template-manual-without-strings", 'config={"promptTemplate": {"type": "manual"}}',
        lambda c: c.victim.respond("Hi", config={"promptTemplate": {"type": "manual"}}), ConfigError,
        r"promptTemplate type 'manual' needs manualPromptTemplate"),
    api("prompt-template-jinja-raises", 'promptTemplate jinja "{{ raise_exception(\'no tools\') }}"',
        lambda c: c.victim.respond("Hi", config={"promptTemplate": {"type": "jinja", "jinjaPromptTemplate": {
            "template": "{{ raise_exception('no tools') }}"}}}), ConfigError,
        r"^promptTemplate's Jinja template failed: no tools$"),
    api("prompt-template-jinja-loops-forever", 'promptTemplate jinja "{% for i in range(10**9) %}"',
        lambda c: c.victim.respond("Hi", config={"promptTemplate": {"type": "jinja", "jinjaPromptTemplate": {
            "template": "{% for i in range(10**9) %}{% endfor %}"}}}), ConfigError,
        r"^promptTemplate's Jinja template failed: OverflowError"),
    api("reasoning-parsing-empty-tag", 'config={"reasoningParsing": {"startString": ""}}',
        lambda c: c.victim.respond("Hi", config={"reasoningParsing": {"startString": ""}}), ConfigError,
        r"^reasoningParsing\.startString='': must be a non-empty string$"),
    api("enable-thinking-not-bool", 'config={"enableThinking": "yes"}',
        lambda c: c.victim.respond("Hi", config={"enableThinking": "yes"}), ConfigError,
        r"^enableThinking='yes': must be True or False$"),
    api("draft-model-other-vocabulary", 'config={"draftModel": str(synth.random_model())}  # another tokenizer',
        lambda c: c.victim.complete("Hi", config={"draftModel": str(synth.random_model())}), ConfigError,
        r"draftModel '.*random-.*\.gguf': its vocabulary has \d+ tokens, the model's 512; a draft must share"),
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
    # ---- issue 13: API (nesting, huge numbers, device indexes, identifiers, names, NumPy, stop strings, unloads)
    api("json-schema-2000-levels", "structured json: an array of arrays … 2,000 levels deep",
        lambda c: _json(c, _nested(2000)), ConfigError,
        r"^structured\.jsonSchema\.items\.items…: nested more than 100 levels deep$"),
    api("json-schema-contains-itself", 'structured json: schema["properties"]["again"] = schema',
        lambda c: _json(c, _self_containing_schema()), ConfigError,
        r"^structured\.jsonSchema\.properties\.again: contains itself"),
    api("json-schema-bare-2000-levels", "config={'structured': <a 2,000-level schema dict>}",
        lambda c: c.victim.complete("Hi", config={"structured": _nested(2000)}), ConfigError,
        r"^structured\.items\.items\.items…: nested more than 100 levels deep$"),
    api("json-schema-ref-to-root", 'structured json {"properties": {"a": {"$ref": "#"}}}',
        lambda c: _json(c, {"type": "object", "properties": {"a": {"$ref": "#"}}}), ConfigError,
        r"\$ref '#' is not supported: use a local reference such as '#/\$defs/NAME'"),
    api("json-schema-ref-missing", 'structured json {"properties": {"a": {"$ref": "#/$defs/nope"}}}',
        lambda c: _json(c, {"type": "object", "properties": {"a": {"$ref": "#/$defs/nope"}}}), ConfigError,
        r"^structured: the JSON schema cannot be turned into a grammar: \$ref '#/\$defs/nope' points to nothing: "
        r"the schema has no '\$defs'$"),
    api("json-schema-ref-url", 'structured json {"$ref": "http://example.com/s.json"}',
        lambda c: _json(c, {"$ref": "http://example.com/s.json"}), ConfigError,
        r"\$ref 'http://example\.com/s\.json' is not supported"),
    api("json-schema-bad-pattern", 'structured json {"type": "string", "pattern": "(("}',
        lambda c: _json(c, {"type": "string", "pattern": "(("}), ConfigError,
        r"cannot be turned into a grammar: Pattern must start with"),
    api("prediction-config-2000-levels", 'config={"stopStrings": [[[…]]]}  # 2,000 levels',
        lambda c: c.victim.complete("Hi", config={"stopStrings": _nested(2000, ["x"])}), ConfigError,
        r"^stopStrings\.type…: nested more than 100 levels deep$|^stopStrings.*nested more than 100 levels"),
    api("load-config-contains-itself", 'config["gpu"]["again"] = config',
        lambda c: c.client.llm.load("stories260K", config=_self_containing_load_config()), ConfigError,
        r"^gpu\.again: contains itself"),
    api("seed-5000-digits", 'config={"seed": 10**5000}', lambda c: c.victim.complete("Hi", config={"seed": 10**5000}),
        ConfigError, r"^seed=<an integer of about 5,001 digits>: must be an integer from 0 to 4294967295$"),
    api("main-gpu-2-70", 'load(…, config={"gpu": {"mainGpu": 2**70}})  # was reported applied, C got 0',
        lambda c: c.client.llm.load("stories260K", config={"gpu": {"mainGpu": 2**70}}), ConfigError,
        r"^gpu\.mainGpu=1180591620717411303424: must be a GPU index from 0 to \d+ \(llama\.cpp addresses"),
    api("main-gpu-2-31", 'load(…, config={"gpu": {"mainGpu": 2**31}})  # wrapped negative in the C int',
        lambda c: c.client.llm.load("stories260K", config={"gpu": {"mainGpu": 2**31}}), ConfigError,
        r"^gpu\.mainGpu=2147483648: must be a GPU index"),
    api("disabled-gpus-huge", 'load(…, config={"gpu": {"disabledGpus": [10**30]}})',
        lambda c: c.client.llm.load("stories260K", config={"gpu": {"disabledGpus": [10**30]}}), ConfigError,
        r"^gpu\.disabledGpus\[0\]=1000000000000000000000000000000: must be a GPU index"),
    api("estimate-main-gpu-huge", 'client.llm.estimate("stories260K", config={"gpu": {"mainGpu": 2**31}})',
        lambda c: c.client.llm.estimate("stories260K", config={"gpu": {"mainGpu": 2**31}}), ConfigError,
        r"^gpu\.mainGpu=2147483648: must be a GPU index"),
    api("identifier-with-spaces", 'load(…, identifier="my model")',
        lambda c: c.client.llm.load("stories260K", identifier="my model"), ConfigError,
        r"^identifier='my model': no spaces or control characters allowed$"),
    api("identifier-newline", 'load(…, identifier="a\\nb")', lambda c: c.client.llm.load("stories260K", identifier="a\nb"),
        ConfigError, r"^identifier='a\\nb': no spaces or control characters allowed$"),
    api("identifier-100-kb", 'load(…, identifier="x" * 100_000)',
        lambda c: c.client.llm.load("stories260K", identifier="x" * 100_000), ConfigError,
        r"^identifier: 100,000 characters; at most 256$"),
    api("model-key-a-list", 'client.llm.model(["x"])  # was TypeError: unhashable type', lambda c: c.client.llm.model(["x"]),
        ModelNotFoundError, r"^model must be a non-empty name, key or path, not \['x'\]$"),
    api("get-key-a-dict", 'client.llm.get({"a": 1})', lambda c: c.client.llm.get({"a": 1}), ModelNotFoundError,
        r"^model must be a non-empty name, key or path, not \{'a': 1\}$"),
    api("unload-key-a-list", 'client.llm.unload(["victim"])', lambda c: c.client.llm.unload(["victim"]),
        ModelNotFoundError, r"^model must be a non-empty name, key or path, not \['victim'\]$"),
    api("numpy-int-max-tokens", 'config={"maxTokens": np.int64(5)}  # NumPy floats passed, integers did not',
        lambda c: _numpy_config(c, maxTokens=__import__("numpy").int64(5)), None,
        "no error: a NumPy integer is an integer (stored as int)"),
    api("numpy-float32-temperature", 'config={"temperature": np.float32(0.0), "maxTokens": np.int32(3)}',
        lambda c: _numpy_config(c, temperature=__import__("numpy").float32(0.0), maxTokens=__import__("numpy").int32(3)),
        None, "no error: NumPy numbers are numbers"),
    api("numpy-bool-max-tokens", 'config={"maxTokens": np.bool_(True)}',
        lambda c: c.victim.complete("Hi", config={"maxTokens": __import__("numpy").bool_(True)}), ConfigError,
        r"^maxTokens=np\.True_: must be an integer >= 1"),
    api("numpy-array-temperature", 'config={"temperature": np.array([0.5])}',
        lambda c: c.victim.complete("Hi", config={"temperature": __import__("numpy").array([0.5])}), ConfigError,
        r"^temperature=array\(\[0\.5\]\): must be a number from 0 to 2$"),
    api("stop-strings-50-000", 'config={"stopStrings": [<49,999 that never occur>, "<one that does>"]}',
        _fifty_thousand_stops, None, "no error: stops at the one that occurs, at full speed (Aho-Corasick)"),
    api("stop-strings-too-many", 'config={"stopStrings": ["x"] * 100_001}',
        lambda c: c.victim.complete("Hi", config={"stopStrings": ["x"] * 100_001}), ConfigError,
        r"^stopStrings: 100,001 stop strings; at most 100,000$"),
    api("stop-strings-too-long", 'config={"stopStrings": ["y" * 1000] * 1001}',
        lambda c: c.victim.complete("Hi", config={"stopStrings": ["y" * 1000] * 1001}), ConfigError,
        r"^stopStrings: 1,001,000 characters in all; at most 1,000,000$"),
    api("chat-content-parts", 'respond([{"role": "user", "content": [{"type": "text", "text": "hi"}]}])',
        lambda c: c.victim.respond([{"role": "user", "content": [{"type": "text", "text": "hi"}]}]), ConfigError,
        r"^chat message content must be text, got list$"),
    api("unload-during-tokenize", "tokenize('word ' * 3_000_000) on a thread; unload() 0.2 s later  # was SIGSEGV",
        lambda c: _unload_during(c, lambda m: m.tokenize("word " * 3_000_000)), None,
        "no error: the tokenize finishes or raises ModelNotLoadedError; the model is freed after it"),
    api("unload-during-distribution", "next_token_distribution('word ' * 3_000_000) on a thread; unload() 0.2 s later",
        lambda c: _unload_during(c, lambda m: m.next_token_distribution("word " * 3_000_000)), None,
        "no error: it finishes or raises ModelNotLoadedError; the model is freed after it"),
    api("load-interrupted-in-callback", "load(…, on_load_progress=<raises KeyboardInterrupt>)  # was swallowed",
        _load_interrupted, KeyboardInterrupt, r"^the load of stories260K\.gguf was interrupted: nothing was loaded$"),
    api("model-key-100-kb", 'client.llm.load("x" * 100_000)  # was OSError: File name too long',
        lambda c: c.client.llm.load("x" * 100_000), ModelNotFoundError,
        r"^model 'x+\.\.\.: 100,000 characters; a model key, path or identifier has at most 4,096$"),
    api("unload-in-fragment-callback", "complete(…, on_prediction_fragment=lambda f: model.unload())",
        _unload_in_callback, None, "no error: the prediction stops (userStopped) and frees the model as it ends"),
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
    magic("magic-experts-negative", "%lm_load stories260K --new --num-experts -1",  # 0 = the model's default
          r"--num-experts -1: must be an integer >= 0"),
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
    # ---- issue 13: magics (nesting, huge numbers, names IPython depends on, {var} formatting, malformed values)
    _issue13_magic("magic-config-50000-brackets", "%lm_load stories260K --new --config '[[[…'  # 50,000 brackets",
                   "%lm_load stories260K --new --config '" + "[" * 50_000 + "'",
                   r"%lm_load: --config: nested too deeply \(at most 100 levels\)"),
    _issue13_magic("magic-config-500-objects", "%lm_load stories260K --new --config '{\"gpu\": {\"a\": {…'  # 500 levels",
                   "%lm_load stories260K --new --config '{{\"gpu\": " + "{{\"a\": " * 500 + "1" + "}}" * 501 + "'",
                   r"%lm_load: --config: gpu\.a\.a\.a…: nested more than 100 levels deep"),
    _issue13_magic("magic-config-seed-5000-digits", "%lm_load stories260K --new --config '{\"seed\": 999…'  # 5,000 digits",
                   "%lm_load stories260K --new --config '{{\"seed\": " + "9" * 5000 + "}}'",
                   r"%lm_load: --config: a number has more than 4,300 digits"),
    _issue13_magic("magic-lm-config-seed-5000-digits", "%lm_config predict seed=999…  # 5,000 digits",
                   "%lm_config predict seed=" + "9" * 5000, r"%lm_config: seed=a number of 5,000 digits \(at most 4,300\)"),
    magic("magic-config-main-gpu-2-31", "%lm_load stories260K --new --config '{{\"gpu\": {{\"mainGpu\": 2147483648}}}}'",
          r"%lm_load: gpu\.mainGpu=2147483648: must be a GPU index"),
    magic("magic-identifier-with-spaces", "%lm_load stories260K --new --identifier 'my model'",
          r"%lm_load: identifier='my model': no spaces or control characters allowed"),
    magic("magic-out-builtins", "%%lm_respond --out __builtins__ --max-tokens 2\nHi",
          r"%%lm_respond: --out '__builtins__': dunder names are Python's own"),
    magic("magic-out-In", "%%lm_respond --out In --max-tokens 2\nHi",
          r"%%lm_respond: --out 'In': IPython keeps its history or the shell under that name"),
    magic("magic-out-underscore", "%%lm_respond --out _ --max-tokens 2\nHi", r"--out '_': IPython keeps its history"),
    magic("magic-out-input-history", "%%lm_complete --out _i3 --max-tokens 2\nOnce", r"--out '_i3': IPython keeps its history"),
    magic("magic-out-get-ipython", "%%lm_respond --out get_ipython --max-tokens 2\nHi", r"--out 'get_ipython': IPython keeps"),
    magic("magic-out-exit", "%%lm_complete --out exit --max-tokens 2\nOnce", r"--out 'exit': IPython keeps"),
    magic("magic-out-keyword", "%%lm_respond --out class --max-tokens 2\nHi", r"--out 'class': is a Python keyword"),
    magic("magic-out-builtin-name", "%%lm_respond --out print --max-tokens 2\nHi",
          r"--out 'print': would hide Python's builtin print"),
    magic("magic-out-not-a-name", "%%lm_respond --out 2fast --max-tokens 2\nHi", r"--out '2fast': must be a variable name"),
    magic("magic-format-raises", "%%lm_respond --max-tokens 2\nTell me about {bad_format}",
          r"%%lm_respond: cannot fill in \{variables\} in the text: \{bad_format\}: RuntimeError: no text for you "),
    magic("magic-format-spec-raises", "%%lm_complete --max-tokens 2\nOnce {bad_format:>10}",
          r"\{bad_format\}: RuntimeError: no text for you "),
    magic("magic-config-unclosed-list", '%lm_config predict stopStrings=["a"',
          r"%lm_config: stopStrings='\[\"a\"': not a valid value \(an unclosed bracket or quote\?\)"),
    magic("magic-config-unclosed-quote", "%lm_config predict stopStrings='abc",
          r"%lm_config: stopStrings=\"'abc\": not a valid value"),
    magic("magic-structured-contains-itself", "%%lm_respond --structured self_schema\nHi",
          r"%%lm_respond: structured\.properties\.again: contains itself"),
    magic("magic-structured-2000-levels", "%%lm_respond --structured deep_schema\nHi",
          r"%%lm_respond: structured\.items\.items\.items…: nested more than 100 levels deep"),
    _issue13_magic("magic-line-2-mb", "%%lm_respond --stop xxx…  # a 2,000,000-character line (took a minute)",
                   "%%lm_respond --max-tokens 2 --stop " + "x" * 2_000_000 + "\nHi",
                   r"%%lm_respond: the magic's line is 2,000,022 characters; at most 100,000"),
    _issue13_magic("magic-lm-config-10000-pairs", "%lm_config predict a=1 a=1 …  # 10,000 pairs (took minutes)",
                   "%lm_config predict " + "a=1 " * 10_000, r"%lm_config: a is given twice"),
    _issue13_magic("magic-context-length-5000-digits", "%lm_load stories260K --new --context-length 1000…  # 5,000 digits",
                   "%lm_load stories260K --new --context-length 1" + "0" * 5000,
                   r"%lm_load: argument --context-length: invalid int value: '1000+…"),
    magic("magic-attribute-raises", "%%lm_respond --structured raising.schema\nHi",
          r"%%lm_respond: --structured 'raising\.schema': reading \.schema failed: RuntimeError: no schema here"),
    magic("magic-template-not-a-name-or-file", "%%lm_respond --template chatm\nHi",
          r"--template 'chatm': neither a built-in template \(chatml, llama3, alpaca, plain\) nor a file"),
    magic("magic-load-variable-not-a-name", "%lm_load {{big_number}}",
          r"%lm_load: model '\{big_number\}': the variable holds int, not a model key or path"),
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


# ---- REST (the server of lmsext.server; each row is one HTTP request to a server sharing the victim's client)
#      ``error`` is the HTTP status; the body is one JSON error whose message matches ``match``.


def rest(id: str, what: str, status: int, match: str, method: str = "POST", path: str = "/v1/completions",
         body: Any = None, raw: bytes | None = None, headers: dict[str, str] | None = None) -> Bad:
    """A REST row: ``body`` is sent as JSON (``raw`` as is) with ``Content-Type: application/json`` unless
    ``headers`` say otherwise."""
    def run(server: Any) -> Any:
        content = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        sent = {"Content-Type": "application/json", **(headers or {})}
        sent = {k: v for k, v in sent.items() if v is not None}
        return server.http.request(method, path, content=content, headers=sent)
    return Bad(id, "rest", what, run, status, match)


def _deep(n: int) -> bytes:
    return b'{"model": "victim", "prompt": ' + b"[" * n + b"]" * n + b"}"


def _deep_schema(n: int) -> bytes:
    schema = '{"type": "array", "items": ' * n + '{"type": "string"}' + "}" * n
    return ('{"model": "victim", "messages": [{"role": "user", "content": "Hi"}], "response_format": '
            '{"type": "json_schema", "json_schema": {"name": "x", "schema": ' + schema + "}}}").encode()


_CHAT = "/api/v1/chat"
_OAI_CHAT = "/v1/chat/completions"
_HI = [{"role": "user", "content": "Hi"}]

TABLE += [
    rest("rest-no-content-type", "POST /v1/completions, JSON body without Content-Type", 415,
         r"^Content-Type must be application/json \(got none\)$", body={"model": "victim", "prompt": "Once"},
         headers={"Content-Type": None}),
    rest("rest-text-plain", "POST /v1/completions, Content-Type: text/plain (a no-cors page)", 415,
         r"^Content-Type must be application/json \(got 'text/plain'\)$", body={"model": "victim", "prompt": "Once"},
         headers={"Content-Type": "text/plain"}),
    rest("rest-form-urlencoded", "POST /api/v1/models/unload as an HTML form", 415,
         r"Content-Type must be application/json \(got 'application/x-www-form-urlencoded'\)",
         path="/api/v1/models/unload", raw=b"instance_id=victim",
         headers={"Content-Type": "application/x-www-form-urlencoded"}),
    rest("rest-foreign-origin", "POST /api/v1/models/unload with Origin: https://evil.example", 403,
         r"^requests from web pages at 'https://evil\.example' are not allowed", path="/api/v1/models/unload",
         body={"instance_id": "victim"}, headers={"Origin": "https://evil.example"}),
    rest("rest-null-origin", "POST /v1/completions with Origin: null (a sandboxed frame)", 403,
         r"requests from web pages at 'null' are not allowed", body={"model": "victim", "prompt": "Once"},
         headers={"Origin": "null"}),
    rest("rest-origin-lookalike", "Origin: http://localhost.evil.example", 403, r"are not allowed",
         method="GET", path="/v1/models", headers={"Origin": "http://localhost.evil.example"}),
    rest("rest-host-ipv6-suffix", "Host: [::1]evil.com", 403, r"only answers requests addressed to localhost",
         method="GET", path="/v1/models", headers={"Host": "[::1]evil.com"}),
    rest("rest-host-foreign", "Host: evil.example:1234 (DNS rebinding)", 403,
         r"only answers requests addressed to localhost", method="GET", path="/v1/models",
         headers={"Host": "evil.example:1234"}),
    rest("rest-host-userinfo", "Host: localhost@evil.example", 403, r"only answers requests addressed to localhost",
         method="GET", path="/v1/models", headers={"Host": "localhost@evil.example"}),
    rest("rest-surrogate-model", r'{"model": "\ud800", "prompt": "Once"}', 400,
         r"^model holds a lone surrogate \(\\ud800\): not valid Unicode text$",
         raw=b'{"model": "\\ud800", "prompt": "Once"}'),
    rest("rest-surrogate-key", r'{"model": "victim", "\udfff": 1}', 400,
         r"^a field name in the request body holds a lone surrogate \(\\udfff\)",
         raw=b'{"model": "victim", "prompt": "Once", "\\udfff": 1}'),
    rest("rest-surrogate-message", r'messages[0].content = "Hi \udc00"', 400,
         r"^messages\[0\]\.content holds a lone surrogate \(\\udc00\)", path=_OAI_CHAT,
         raw=b'{"model": "victim", "messages": [{"role": "user", "content": "Hi \\udc00"}]}'),
    rest("rest-surrogate-stop", r'"stop": ["\ud83d"] (half an emoji)', 400, r"^stop\[0\] holds a lone surrogate",
         raw=b'{"model": "victim", "prompt": "Once", "stop": ["\\ud83d"]}'),
    rest("rest-deep-body", "a 100,000-deep JSON array as the prompt", 400,
         r"^the request body nests objects and arrays more than 64 levels deep$", raw=_deep(100_000)),
    rest("rest-deep-body-65", "a 65-deep JSON array as the prompt", 400,
         r"nests objects and arrays more than 64 levels deep", raw=_deep(65)),
    rest("rest-deep-schema", "response_format json_schema nested 2,000 levels", 400,
         r"nests objects and arrays more than 64 levels deep", path=_OAI_CHAT, raw=_deep_schema(2000)),
    rest("rest-self-referencing-schema", 'response_format json_schema {"$ref": "#"}', 400,
         r"^response_format: the JSON schema cannot be turned into a grammar: \$ref .#. is not supported: use a local reference",
         path=_OAI_CHAT, body={"model": "victim", "messages": _HI, "response_format": {
             "type": "json_schema", "json_schema": {"name": "x", "schema": {"$ref": "#"}}}}),
    rest("rest-huge-integer", '"seed": <5,000 digits>', 400, r"^the request body holds an integer with more than "
         r"\d+ digits$", raw=b'{"model": "victim", "prompt": "Once", "seed": ' + b"9" * 5000 + b"}"),
    rest("rest-seed-2-to-70", '"seed": 2**70', 400, r"^seed=1180591620717411303424: must be",
         body={"model": "victim", "prompt": "Once", "seed": 2**70}),
    rest("rest-float-overflow", '"temperature": 1e999 (inf)', 400, r"temperature",
         raw=b'{"model": "victim", "prompt": "Once", "temperature": 1e999}'),
    rest("rest-temperature-nan", '"temperature": NaN', 400, r"temperature",
         raw=b'{"model": "victim", "prompt": "Once", "temperature": NaN}'),
    rest("rest-file-url-key", '{"model": "file:///etc/passwd"}', 404,
         r"^model 'file:///etc/passwd' not found on this server", path="/api/v1/models/load",
         body={"model": "file:///etc/passwd"}),
    rest("rest-percent-dotdot-key", '{"model": "%2e%2e/%2e%2e/etc/passwd"}', 404,
         r"^model '%2e%2e/%2e%2e/etc/passwd' not found on this server", path="/api/v1/models/load",
         body={"model": "%2e%2e/%2e%2e/etc/passwd"}),
    rest("rest-key-by-file-stem", '{"model": "anything/passwd"} (a passwd.gguf is in a model folder)', 404,
         r"^model 'anything/passwd' not found on this server", path="/api/v1/models/load",
         body={"model": "anything/passwd"}),
    rest("rest-passwd-symlink", '{"model": "passwd"} (passwd.gguf -> /etc/passwd in a model folder)', 500,
         r"^passwd\.gguf is not a GGUF file \(it does not start with b'GGUF'\)$", path="/api/v1/models/load",
         body={"model": "passwd"}),
    rest("rest-unknown-model-no-folders", '{"model": "nope-model"} (the 404 lists no folder)', 404,
         r"^model 'nope-model' not found on this server \(GET /api/v1/models lists its models\)$",
         body={"model": "nope-model", "prompt": "Once"}),
    rest("rest-memory-refusal", '{"model": "stories260K", "config": {"context_length": 30000000}}', 400,
         r"^not loading stories260K\.gguf: it needs about .* more memory than this server can give",
         path="/api/v1/models/load", body={"model": "stories260K", "config": {"context_length": 30_000_000}}),
    rest("rest-prompt-too-long-stop-at-limit", "/api/v1/chat: a 3,000-word input, context 512, stopAtLimit", 400,
         r"^the prompt is \d+ tokens but the context holds 512", path=_CHAT,
         body={"model": "victim", "input": "word " * 3000, "context_overflow_policy": "stopAtLimit"}),
    rest("rest-empty-body", "POST /v1/completions with an empty body", 400, r"^the request body is empty",
         raw=b""),
    rest("rest-body-not-object", "body: [1, 2]", 400, r"^the request body must be a JSON object, not list$",
         raw=b"[1, 2]"),
    rest("rest-body-not-json", "body: {", 400, r"^the request body is not valid JSON: ", raw=b"{"),
    rest("rest-body-not-utf8", r"body: b'\xff\xfe'", 400, r"^the request body is not UTF-8 text$",
         raw=b"\xff\xfe"),
    rest("rest-chat-max-tokens-spelling", '/api/v1/chat {"max_tokens": 5}', 400,
         r"^unknown field 'max_tokens' — use 'max_output_tokens'$", path=_CHAT,
         body={"model": "victim", "input": "Hi", "max_tokens": 5}),
    rest("rest-temperature-string", '"temperature": "0.5"', 400, r"^temperature=\"0\.5\"",
         body={"model": "victim", "prompt": "Once", "temperature": "0.5"}),
    rest("rest-max-tokens-zero", '"max_tokens": 0', 400, r"^max_tokens=0: must be an integer >= 1$",
         body={"model": "victim", "prompt": "Once", "max_tokens": 0}),
    rest("rest-max-tokens-2-to-40", '"max_tokens": 2**40', 400, r"^max_tokens=1099511627776: must be at most 2,147,483,647$",
         body={"model": "victim", "prompt": "Once", "max_tokens": 2**40}),
    rest("rest-stream-not-bool", '"stream": "yes"', 400, r"^stream=\"yes\"",
         body={"model": "victim", "prompt": "Once", "stream": "yes"}),
    rest("rest-messages-empty", '/v1/chat/completions {"messages": []}', 400, r"^messages=\[\]", path=_OAI_CHAT,
         body={"model": "victim", "messages": []}),
    rest("rest-role-tool", '{"role": "tool"} message without tool_call_id', 400,
         r"^a tool message needs the tool_call_id of the call it answers$", path=_OAI_CHAT,
         body={"model": "victim", "messages": [{"role": "tool", "content": "x"}]}),
    rest("rest-image-input", '/api/v1/chat input [{"type": "image"}]', 400, r"image input is not supported",
         path=_CHAT, body={"model": "victim", "input": [{"type": "image", "data_url": "data:,"}]}),
    rest("rest-previous-response-unknown", '"previous_response_id": "resp_nope"', 404,
         r"^no stored response 'resp_nope'", path=_CHAT,
         body={"model": "victim", "input": "Hi", "previous_response_id": "resp_nope"}),
    rest("rest-unload-unknown", '/api/v1/models/unload {"instance_id": "nope"}', 404,
         r"^no loaded model instance 'nope'", path="/api/v1/models/unload", body={"instance_id": "nope"}),
    rest("rest-n-2", '"n": 2', 400, r"^n=2: n other than 1 is not supported", body={"model": "victim",
         "prompt": "Once", "n": 2}),
    rest("rest-prompt-list-of-two", '"prompt": ["a", "b"]', 400, r"exactly one string",
         body={"model": "victim", "prompt": ["a", "b"]}),
    rest("rest-load-camel-case", '/api/v1/models/load config {"contextLength": 512}', 400,
         r"use 'context_length'", path="/api/v1/models/load",
         body={"model": "stories260K", "config": {"contextLength": 512}}),
    rest("rest-response-format-unknown", 'response_format {"type": "xml"}', 400, r"^response_format\.type='xml'",
         path=_OAI_CHAT, body={"model": "victim", "messages": _HI, "response_format": {"type": "xml"}}),
    rest("rest-structured-bad-type", '/api/v1/chat structured jsonSchema {"type": "objekt"}', 400, r"objekt",
         path=_CHAT, body={"model": "victim", "input": "Hi",
                           "structured": {"type": "json", "jsonSchema": {"type": "objekt"}}}),
    rest("rest-stop-not-strings", '"stop": [1, 2]', 400, r"^stop", body={"model": "victim", "prompt": "Once",
                                                                        "stop": [1, 2]}),
    rest("rest-cpu-threads-huge", '/api/v1/chat "cpu_threads": 100000', 400, r"^cpu_threads=100000: must be at most 512$", path=_CHAT,
         body={"model": "victim", "input": "Hi", "cpu_threads": 100_000}),
    rest("rest-prompt-template-broken", '/api/v1/chat "prompt_template" jinja "{% for %}"', 400,
         r"^promptTemplate's Jinja template does not compile", path=_CHAT,
         body={"model": "victim", "input": "Hi", "prompt_template": {"type": "jinja", "jinjaPromptTemplate": {
             "template": "{% for %}"}}}),
    rest("rest-jit-context-zero", '/api/v1/chat "context_length": 0', 400, r"^context_length=0", path=_CHAT,
         body={"model": "stories260K", "input": "Hi", "context_length": 0}),
    rest("rest-wrong-method", "GET /v1/completions", 405, r"^method GET is not allowed on /v1/completions$",
         method="GET"),
    rest("rest-unknown-path", "POST /v1/embeddings", 404, r"^no such endpoint: POST /v1/embeddings",
         path="/v1/embeddings", body={"model": "victim", "input": "x"}),
    rest("rest-repeat-penalty-subnormal", '/api/v1/chat "repeat_penalty": 5e-324 with a JSON schema (0 as a C float)',
         400, r"^repeat_penalty=5e-324: must be a number > 0 \(at least 1\.2e-38, a 32-bit float\)", path=_CHAT,
         body={"model": "victim", "input": "Hi", "repeat_penalty": 5e-324,
               "structured": {"type": "json", "jsonSchema": {"type": "array"}}}),
    rest("rest-body-too-large", "a 5 MB prompt (limit 4 MiB)", 413, r"^request body larger than 4194304 bytes$",
         body={"model": "victim", "prompt": "x" * 5_000_000}),
]

# tools and act() (issue 17)
_TOOL = {"type": "function", "function": {"name": "add", "parameters": {
    "type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}}}
TABLE += [
    api("raw-tools-bad-name", 'config={"rawTools": {"type": "toolArray", "tools": [{"function": {"name": "a b"}}]}}',
        lambda c: c.victim.respond("Hi", config={"rawTools": {"type": "toolArray", "tools": [
            {"type": "function", "function": {"name": "a b"}}]}}), ConfigError,
        r"^rawTools\.tools\[0\]\.function\.name='a b': must be 1 to 64 letters, digits"),
    api("raw-tools-bad-schema", 'rawTools tool parameters {"properties": {"x": {"type": "nope"}}}',
        lambda c: c.victim.respond("Hi", config={"rawTools": {"type": "toolArray", "tools": [
            {"type": "function", "function": {"name": "f", "parameters": {
                "type": "object", "properties": {"x": {"type": "nope"}}}}}]}}), ConfigError,
        r"^rawTools\.tools\[0\]\.function\.parameters\.properties\.x\.type: not a valid JSON schema"),
    api("act-not-a-tool", 'model.act("Hi", [1])', lambda c: c.victim.act("Hi", [1]), ConfigError,
        r"^tools: int is not a tool"),
    api("act-force-without-round-limit", 'model.act("Hi", [tool], config={"rawTools": {"type": "toolArray", '
        '"force": True}})', lambda c: c.victim.act("Hi", [_TOOL], config={"rawTools": {"type": "toolArray",
                                                                                     "force": True}}),
        ConfigError, r"^rawTools\.force makes every round call a tool: give max_prediction_rounds$"),
    rest("rest-tool-choice-unknown", '"tool_choice": "sometimes" with tools', 400,
         r"^tool_choice='sometimes': must be 'none', 'auto', 'required' or a function$", path=_OAI_CHAT,
         body={"model": "victim", "messages": [{"role": "user", "content": "Hi"}], "tools": [_TOOL],
               "tool_choice": "sometimes"}),
]


# ---- issue 18's widgets: the chat view, the model picker, the explorer's Play and prompt box

def _chat_view(ctx: Any, text: str) -> None:
    from lmsext.session import Session
    from lmsext.widgets import ChatView
    view = ChatView(model=ctx.victim, session=Session(), client=ctx.client)
    try:
        view.send(text)
    finally:
        view.close()


def _picker(ctx: Any, action: Callable[[Any], Any]) -> None:
    from lmsext.session import Session
    from lmsext.widgets import ModelPicker
    picker = ModelPicker(client=ctx.client, session=Session())
    try:
        action(picker)
    finally:
        picker.close()


def _explorer(ctx: Any, action: Callable[[Any], Any]) -> None:
    from lmsext.widgets import NextTokenExplorer
    explorer = NextTokenExplorer(ctx.victim, "Once upon a time")
    try:
        action(explorer)
    finally:
        explorer.close()


TABLE += [
    widget("chat-view-empty-message", 'ChatView.send("   ")', lambda c: _chat_view(c, "   "), LmsextError,
           r"^the message is empty$"),
    widget("chat-view-not-a-name", "ChatView(chat=None)", lambda c: _chat_view_named(None), TypeError,
           r"ChatView\(chat=\.\.\.\): a chat name \(non-empty string\), not None"),
    widget("picker-unknown-model", 'ModelPicker.select("nope-model")', lambda c: _picker(c, lambda p: p.select("nope-model")),
           LmsextError, r"'nope-model' is not in the list: refresh it, or download it"),
    widget("picker-download-nothing-typed", "ModelPicker: Download with an empty repository box",
           lambda c: _picker(c, lambda p: p.download()), LmsextError,
           r"type a Hugging Face repository \(owner/repo-GGUF\) to download"),
    widget("explorer-play-too-many", "NextTokenExplorer.play(10_000)", lambda c: _explorer(c, lambda e: e.play(10_000)),
           ValueError, r"play 10000: give 1 to 500 steps"),
    widget("explorer-prompt-not-text", "NextTokenExplorer.set_prompt(42)", lambda c: _explorer(c, lambda e: e.set_prompt(42)),
           LmsextError, r"a chat history is a Chat, a string, \{'messages': \[\.\.\.\]\} or a list of messages, not int"),
]


def _chat_view_named(name: Any) -> None:
    from lmsext.widgets import ChatView
    ChatView(name)

# ---- typos (issue 18): the nearest flag, model key, loaded identifier or setting key on the same line (difflib)
TABLE += [
    api("model-key-typo", 'client.llm.load("storis260K")', lambda c: c.client.llm.load("storis260K"),
        ModelNotFoundError, r"^model 'storis260K' not found in .*; did you mean 'stories260K'\?"),
    api("loaded-identifier-typo", 'client.llm.get("victm")', lambda c: c.client.llm.get("victm"),
        ModelNotLoadedError, r"^no loaded model 'victm' \(loaded: .*\); did you mean 'victim'\?$"),
    magic("magic-flag-typo", "%%lm_respond --temprature 0.5\nHi",
          r"%%lm_respond: unrecognized arguments: --temprature 0\.5; did you mean --temperature\?"),
    magic("magic-load-flag-typo", "%lm_load stories260K --context-lenght 512",
          r"%lm_load: unrecognized arguments: --context-lenght 512; did you mean --context-length\?"),
    magic("magic-model-key-typo", "%%lm_complete --model storis260K\nOnce",
          r"%%lm_complete: model 'storis260K' not found in .*; did you mean 'stories260K'\?"),
    magic("magic-choice-typo", "%lm_chat shwo",
          r"%lm_chat: argument action: invalid choice: 'shwo' \(choose from 'show', 'view', 'reset', 'save'\); "
          r"did you mean 'show'\?"),
    magic("magic-config-section-typo", "%lm_config predcit temperature=0.3",
          r"%lm_config: expected key=value, got 'predcit'; did you mean 'predict'\?"),
    magic("magic-config-key-typo", "%lm_config predict temprature=0.3",
          r"%lm_config: unknown prediction setting 'temprature' — did you mean 'temperature'\?"),
]

# ---- parallel predictions (maxParallelPredictions / useUnifiedKvCache)
TABLE += [
    api("parallel-zero", 'config={"maxParallelPredictions": 0}',
        lambda c: c.client.llm.load("stories260K", config={"maxParallelPredictions": 0}), ConfigError,
        r"maxParallelPredictions=0: must be an integer from 1 to 256"),
    api("parallel-beyond-llama-max-seq", 'config={"maxParallelPredictions": 257}  # llama.cpp LLAMA_MAX_SEQ 256',
        lambda c: c.client.llm.load("stories260K", config={"maxParallelPredictions": 257}), ConfigError,
        r"maxParallelPredictions=257: must be at most 256"),
    api("unified-kv-cache-not-bool", 'config={"useUnifiedKvCache": "yes"}',
        lambda c: c.client.llm.load("stories260K", config={"useUnifiedKvCache": "yes"}), ConfigError,
        r"useUnifiedKvCache='yes': must be True or False"),
    magic("magic-parallel-not-a-number", "%lm_load stories260K --parallel many", r"--parallel"),
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
    from lmsext import magics as magics_module
    m = magics_module.get_magics(shell)
    old = {name: getattr(m, name) for name in ("display_mode", "widgets") if hasattr(m, name)}
    m.display_mode = "rich"
    if "widgets" in old:
        m.widgets = "off"
    shell.user_ns.update(empty_path=str(ctx.files.empty), notanarch_path=str(ctx.files.notanarch),
                         bad_schema={"type": "json", "jsonSchema": {"type": "objekt"}},
                         bad_format=_FormatRaises(), self_schema=_self_containing_schema(), deep_schema=_nested(2000),
                         raising=_AttributeRaises(), big_number=10**5000)
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
    assert {row.surface for row in TABLE} == {"api", "magic", "widget", "rest"}
    assert len([row for row in TABLE if row.surface == "rest"]) >= 35


@pytest.mark.parametrize("row", [r for r in TABLE if r.surface in ("api", "widget")], ids=lambda r: r.id)
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


@pytest.fixture(scope="module")
def rest_server(ctx, tmp_path_factory):
    """A REST server on loopback sharing the victim's client; a model folder holds passwd.gguf -> /etc/passwd."""
    pytest.importorskip("httpx")
    import httpx

    from lmsext import server as rest_module
    folder = tmp_path_factory.mktemp("rest-models")
    (folder / "passwd.gguf").symlink_to("/etc/passwd")
    old = os.environ.get("LMSEXT_MODELS_PATH", "")
    os.environ["LMSEXT_MODELS_PATH"] = os.pathsep.join([old, str(folder)]) if old else str(folder)
    handle = rest_module.serve(port=0, client=ctx.client)
    try:
        with httpx.Client(base_url=handle.url, timeout=60) as http:
            yield SimpleNamespace(handle=handle, http=http, folder=folder)
    finally:
        handle.stop()
        os.environ["LMSEXT_MODELS_PATH"] = old


@pytest.mark.parametrize("row", [r for r in TABLE if r.surface == "rest"], ids=lambda r: r.id)
def test_bad_rest_input_is_one_json_line_and_changes_nothing(row, ctx, rest_server):
    response = row.run(rest_server)
    assert response.status_code == row.error, response.text
    error = response.json()["error"]
    message = error["message"]
    _one_line(message)
    assert re.search(row.match, message), message
    leaks = [str(rest_server.folder), os.path.dirname(str(ctx.victim.load_result.path)), "root:", "/etc/passwd:",
             "set_int_max_str_digits", "available"]
    assert not [leak for leak in leaks if leak in response.text], response.text
    assert rest_server.handle.running
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
            "red line" if row.surface == "magic" else f"HTTP {row.error}" if row.surface == "rest"
            else getattr(row.error, "__name__", "error"))
        msg = re.sub(r"/tmp/\S*/", "/tmp/…/", messages.get(row.id, "")).replace("|", "\\|")
        what = row.what.replace("|", "\\|").replace("\n", " ⏎ ")
        verdict = msg if row.error is None and msg.startswith("no error") else f"{kind}: {msg}"
        out.append(f"| {i} | `{row.id}` | {row.surface} | `{what}` | {verdict} |")
    return "\n".join(out)


if __name__ == "__main__":  # print the table with real messages (for docs/bad-inputs.md)
    print("run: python -m pytest tests/test_bad_inputs.py -q -s -k print_table", file=sys.stderr)


def test_print_table(ctx, ip, rest_server, capsys, request):
    """docs/bad-inputs.md lists every row; with ``-s`` and LMSEXT_PRINT_TABLE=1 also prints the Markdown table
    with the real messages (to refresh the doc)."""
    doc = (REPO / "docs" / "bad-inputs.md").read_text()
    assert [row.id for row in TABLE if f"`{row.id}`" not in doc] == []
    if not os.environ.get("LMSEXT_PRINT_TABLE"):
        return
    messages: dict[str, str] = {}
    for row in TABLE:
        try:
            if row.surface == "rest":
                messages[row.id] = row.run(rest_server).json()["error"]["message"]
            elif row.surface == "magic":
                _, cap = _run_magic(ip, row.run)
                messages[row.id] = re.sub(r"\x1b\[\d+m", "", next(
                    o.data["text/plain"] for o in cap.outputs if o.data.get("text/html", "").startswith(RED)))
            else:
                row.run(ctx)
                messages[row.id] = row.match if row.match.startswith("no error") else (
                    "lone surrogates are replaced by U+FFFD")
        except BaseException as exc:  # noqa: BLE001 - collecting messages
            messages[row.id] = str(exc)
        _still_fine(ctx)
    with capsys.disabled():
        print("\n" + markdown_table(messages))
