"""The Starlette app of the REST server: LM Studio's ``/api/v1`` and OpenAI-compatible ``/v1`` endpoints.

A thin adapter over the public API (:class:`~lmsext.Client`, :class:`~lmsext.LLM`): every model
call runs in a worker thread; this module only validates requests, queues them per model
instance and shapes responses. See ``docs/rest.md``.

Concurrency (:mod:`.rest_jobs`): predictions on one instance are serialised by an
:class:`~.rest_jobs.InstanceGates` lock per instance id (FIFO, waited up to ``queue_timeout`` seconds, then 429). The engine's own lock
still guards the model against notebook cells: a cell generating on the instance makes an HTTP
prediction fail with 409 (``ModelBusyError``) instead of interleaving.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Callable, Iterable

import anyio.to_thread
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..errors import (ConfigError, InsufficientMemoryError, ModelBusyError, ModelLoadError, ModelNotFoundError,
                      ModelNotLoadedError, PredictionError)
from . import rest_schema as rs
from .rest_chains import StoredChat, trim_chain
from .rest_guard import Guard
from .rest_jobs import GatedStream, InstanceGates, PredictionJob, job_events, start_job
from .rest_schema import ApiError, bad_request

log = logging.getLogger("lmsext.server")

MAX_BODY_BYTES = 4 * 1024 * 1024
"""Default limit of a request body (413 above it)."""
QUEUE_TIMEOUT = 30.0
"""Default seconds a prediction waits for its model instance before 429."""
DEFAULT_MAX_TOKENS = 2048
"""Default token limit of a prediction whose request sets none (or ``null``)."""
PREDICTION_TIMEOUT = 300.0
"""Default wall-clock limit of one prediction, in seconds (then it ends with ``timeLimitReached``)."""
STALL_TIMEOUT = 30.0
"""Default seconds a stream may wait for a client that reads nothing before it is cancelled."""
STORED_RESPONSES = 256
"""How many ``/api/v1/chat`` exchanges are kept for ``previous_response_id``."""

_FINISH = {"eosFound": "stop", "stopStringFound": "stop", "userStopped": "stop", "toolCalls": "tool_calls",
           "maxPredictedTokensReached": "length", "contextLengthReached": "length", "timeLimitReached": "length"}

# ------------------------------------------------------------------------------------------ state


@dataclass
class ServerState:
    """What the handlers share: the client, the limits, the queues and the jobs in flight."""

    client: Any
    api_key: str | None = None
    loopback: bool = True
    max_body_bytes: int = MAX_BODY_BYTES
    queue_timeout: float | None = QUEUE_TIMEOUT
    default_max_tokens: int = DEFAULT_MAX_TOKENS
    prediction_timeout: float = PREDICTION_TIMEOUT
    stall_timeout: float = STALL_TIMEOUT
    allowed_origins: frozenset = frozenset()
    bound_host: str = ""
    url: str | None = None
    gates: InstanceGates = field(default_factory=InstanceGates)
    responses: "OrderedDict[str, StoredChat]" = field(default_factory=OrderedDict)
    jobs: set = field(default_factory=set)
    loop: asyncio.AbstractEventLoop | None = None

    def cancel_all(self) -> None:
        """Stop every streaming prediction (the server is shutting down)."""
        for job in list(self.jobs):
            job.cancel("serverStopped")


# ------------------------------------------------------------------------------------------ helpers


def _finite(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def _dumps(obj: Any) -> str:
    return json.dumps(_finite(obj), ensure_ascii=False, separators=(",", ":"), default=str)


def _encode(obj: Any) -> bytes:
    """UTF-8 JSON of ``obj`` that cannot fail: a lone surrogate is written as its JSON escape (``\\ud800``)."""
    try:
        return _dumps(obj).encode("utf-8", "backslashreplace")
    except Exception:  # noqa: BLE001 - a value json cannot write, a nesting too deep: say so, in JSON
        log.exception("lmsext REST server: a response could not be encoded")
        return b'{"error":{"message":"the server could not encode its response","type":"internal_error",' \
               b'"param":null}}'


class JSON(JSONResponse):
    """JSON response whose encoding never fails (NaN/inf are written as null, odd values as text)."""

    def render(self, content: Any) -> bytes:
        return _encode(content)


def error_response(err: ApiError) -> Response:
    """The JSON response for ``err``."""
    return JSON(err.body(), status_code=err.status, headers=err.headers)


_NOT_FOUND_WHERE = re.compile(r" not found in .*$")
_ABSOLUTE_PATH = re.compile(r"(?<![\w:/.~-])/(?:[^\s/'\"(),;:]+/)+([^\s/'\"(),;:]+)")


def public_message(text: str) -> str:
    """``text`` without the server's folders: an absolute path becomes its file name, a "not found in <the
    model folders>" becomes "not found on this server"."""
    text = _ABSOLUTE_PATH.sub(lambda m: m.group(1), text)
    return _NOT_FOUND_WHERE.sub(" not found on this server (GET /api/v1/models lists its models)", text)


def _memory_refusal(exc: InsufficientMemoryError) -> ApiError:
    need = str(exc).split(" but only ")[0]
    return ApiError(400, f"{public_message(need)}: more memory than this server can give; lower context_length "
                    "(or use flash_attention / a quantized KV cache)", type="insufficient_memory", param="config")


def to_api_error(exc: BaseException) -> ApiError:
    """Map an lmsext exception to its HTTP status and error type (4xx for what the client can change); the
    message never holds a server path or the list of model folders."""
    if isinstance(exc, ApiError):
        return exc
    text = public_message(str(exc))
    if isinstance(exc, ConfigError):
        return bad_request(text, param=exc.key)
    if isinstance(exc, (ModelNotFoundError, ModelNotLoadedError)):
        return ApiError(404, text, type="model_not_found", param="model")
    if isinstance(exc, ModelBusyError):
        return ApiError(409, f"{text} (a notebook cell or another client is generating on it)",
                        type="model_busy", param="model")
    if isinstance(exc, InsufficientMemoryError):
        return _memory_refusal(exc)
    if isinstance(exc, ModelLoadError):
        return ApiError(500, text, type="model_load_error")
    if isinstance(exc, PredictionError):
        if _PROMPT_TOO_LONG.match(text):  # stopAtLimit: the client's prompt does not fit the context
            return bad_request(text, param="input")
        return ApiError(500, text, type="prediction_error")
    if isinstance(exc, RecursionError):
        return bad_request("the request nests too deeply (or a schema refers to itself without end)")
    if isinstance(exc, ValueError):
        return bad_request(text)
    log.exception("lmsext REST server: unexpected error", exc_info=exc)
    return ApiError(500, f"internal error: {type(exc).__name__}", type="internal_error")


_PROMPT_TOO_LONG = re.compile(r"the prompt is \d+ tokens but the context holds \d+")


def endpoint(fn: Callable[[Request], Any]) -> Callable[[Request], Any]:
    """Wrap a handler so every exception becomes a JSON error response."""
    async def handler(request: Request) -> Response:
        try:
            return await fn(request)
        except Exception as exc:  # noqa: BLE001 - mapped to a status code
            return error_response(to_api_error(exc))
    handler.__name__ = fn.__name__
    handler.__doc__ = fn.__doc__
    return handler


async def read_json(request: Request, state: ServerState) -> dict[str, Any]:
    """The request's JSON object: 413 when too large, 400 when malformed (the Guard already required JSON)."""
    limit = state.max_body_bytes
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            too_big = int(declared) > limit
        except ValueError:
            raise bad_request("bad Content-Length header") from None
        if too_big:
            raise _too_large(limit)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return rs.parse_json_body(b"".join(chunks))


def _too_large(limit: int) -> ApiError:
    return ApiError(413, f"request body larger than {limit} bytes", type="request_too_large")


def _run(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run blocking API work in a worker thread (waits for it even if the request is cancelled)."""
    return anyio.to_thread.run_sync(lambda: fn(*args, **kwargs))


def find_loaded(client: Any, name: str) -> Any:
    """The loaded instance called ``name`` (instance id, then model key), or None."""
    loaded = client.llm.list_loaded()
    for llm in loaded:
        if llm.identifier == name:
            return llm
    for llm in loaded:
        if llm.model_key.lower() == name.lower():
            return llm
    return None


def get_model(client: Any, name: str, jit_config: dict[str, Any] | None) -> tuple[Any, bool]:
    """The instance for ``name``, JIT-loading it from the model folders if needed: (llm, loaded_now)."""
    llm = find_loaded(client, name)
    if llm is not None:
        return llm, False
    before = {id(m) for m in client.llm.list_loaded()}
    llm = client.llm.model(name, config=jit_config, allow_download=False, allow_paths=False)
    return llm, id(llm) not in before and not llm.load_result.reused


def _created() -> int:
    return int(time.time())


# ------------------------------------------------------------------------------------------ models


def _bits(quant: str | None) -> float | None:
    if not quant:
        return None
    q = quant.upper()
    for prefix, bits in (("F32", 32), ("BF16", 16), ("F16", 16)):
        if q.startswith(prefix):
            return bits
    import re
    m = re.search(r"(\d+)", q)
    return int(m.group(1)) if m else None


def _params_string(n: int | None) -> str | None:
    if not n:
        return None
    for div, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if n >= div:
            value = n / div
            text = f"{value:.1f}".rstrip("0").rstrip(".") if value < 10 else f"{value:.0f}"
            return text + suffix
    return str(n)


def _model_entry(key: str, info: Any, size: int, instances: Iterable[Any]) -> dict[str, Any]:
    return {
        "type": "llm",
        "publisher": key.split("/")[0] if "/" in key else None,
        "key": key,
        "display_name": (info.name if info and info.name and info.name != info.architecture else None)
        or key.split("/")[-1],
        "architecture": info.architecture if info else None,
        "quantization": {"name": info.quantization if info else None,
                         "bits_per_weight": _bits(info.quantization if info else None)},
        "size_bytes": size,
        "params_string": _params_string(info.parameter_count if info else None),
        "loaded_instances": [{"id": llm.identifier, "config": llm.load_result.to_rest()["config"]}
                             for llm in instances],
        "max_context_length": info.trained_context if info else None,
        "format": "gguf",
        "capabilities": {"vision": False, "trained_for_tool_use": False},
        "description": None,
    }


def list_models(client: Any) -> list[dict[str, Any]]:
    """Downloaded models (with their loaded instances), then instances loaded from elsewhere."""
    loaded = list(client.llm.list_loaded())
    entries, claimed = [], set()
    for model in client.list_downloaded_models():
        mine = [llm for llm in loaded if id(llm) not in claimed and (
            llm.load_result.path == model.path or llm.model_key.lower() == model.model_key.lower())]
        claimed.update(id(llm) for llm in mine)
        entries.append(_model_entry(model.model_key, model.info, model.size_bytes, mine))
    rest: dict[str, list[Any]] = {}
    for llm in loaded:
        if id(llm) not in claimed:
            rest.setdefault(llm.model_key, []).append(llm)
    for key, instances in rest.items():
        info = instances[0].get_info()
        entries.append(_model_entry(key, info, info.file_size, instances))
    return entries


# ------------------------------------------------------------------------------------------ handlers


def _state(request: Request) -> ServerState:
    return request.app.state.lmsext


@endpoint
async def load_model(request: Request) -> Response:
    """POST /api/v1/models/load — seed 002."""
    state = _state(request)
    req = rs.validate(rs.LoadRequest, await read_json(request, state))
    config = rs.load_config(req.config, check=state.client.engine.check_load_config)
    llm = await _run(state.client.llm.load, req.model, config=config, allow_download=False, allow_paths=False)
    return JSON(llm.load_result.to_rest())


@endpoint
async def unload_model(request: Request) -> Response:
    """POST /api/v1/models/unload."""
    state = _state(request)
    req = rs.validate(rs.UnloadRequest, await read_json(request, state))
    loaded = await _run(state.client.llm.list_loaded)
    llm = next((m for m in loaded if m.identifier == req.instance_id), None)
    if llm is None:
        names = ", ".join(m.identifier for m in loaded) or "none"
        raise ApiError(404, f"no loaded model instance '{req.instance_id}' (loaded: {names})",
                       type="model_not_found", param="instance_id")
    # the instance's REST prediction (if any) is stopped and over before the model is freed: no C call of it
    # (a tokenization of a 4 MB prompt cannot be interrupted) runs on freed memory
    for job in [j for j in state.jobs if j.instance_id == llm.identifier]:
        job.cancel("modelUnloaded")
    await state.gates.acquire(llm.identifier, state.queue_timeout)
    try:
        await _run(state.client.llm.unload, llm)
    finally:
        state.gates.release(llm.identifier)
    return JSON({"instance_id": llm.identifier})


@endpoint
async def get_models(request: Request) -> Response:
    """GET /api/v1/models."""
    state = _state(request)
    return JSON({"models": await _run(list_models, state.client)})


@endpoint
async def openai_models(request: Request) -> Response:
    """GET /v1/models."""
    state = _state(request)
    entries = await _run(list_models, state.client)
    data, seen = [], set()
    for entry in entries:
        for inst in entry["loaded_instances"]:
            if inst["id"] not in seen:
                seen.add(inst["id"])
                data.append({"id": inst["id"], "object": "model", "created": 0,
                             "owned_by": entry["publisher"] or "local"})
    for entry in entries:
        if entry["key"] not in seen:
            seen.add(entry["key"])
            data.append({"id": entry["key"], "object": "model", "created": 0,
                         "owned_by": entry["publisher"] or "local"})
    return JSON({"object": "list", "data": data})


# -- /api/v1/chat --------------------------------------------------------------------------------

_CHAT_RENAMES = {"max_output_tokens": "max_tokens"}
_CHAT_PREDICTION = ("temperature", "top_p", "top_k", "min_p", "repeat_penalty", "seed", "stop",
                    "max_output_tokens", "context_overflow_policy", "structured", "xtc_probability",
                    "xtc_threshold", "cpu_threads")


def _chat_messages(state: ServerState, req: rs.ChatRequest) -> StoredChat:
    """The conversation of this turn: the stored chain (if any), the system prompt, the new input."""
    chat = StoredChat([])
    if req.previous_response_id is not None:
        stored = state.responses.get(req.previous_response_id)
        if stored is None:
            raise ApiError(404, f"no stored response '{req.previous_response_id}' (this server keeps the last "
                           f"{STORED_RESPONSES}, and only while it runs)", type="not_found",
                           param="previous_response_id")
        chat = StoredChat([dict(m) for m in stored.messages], stored.tokens)
    if req.system_prompt is not None:
        kept = [i for i, m in enumerate(chat.messages) if m["role"] != "system"]
        chat = StoredChat([{"role": "system", "content": req.system_prompt}] + [chat.messages[i] for i in kept],
                          [None] + [chat.tokens[i] for i in kept])
    inputs = [req.input] if isinstance(req.input, str) else req.input
    if not inputs:
        raise bad_request("input must not be an empty list", param="input")
    for i, item in enumerate(inputs):
        if isinstance(item, rs.InputImage):
            raise bad_request("image input is not supported by lmsext (text models only)", param=f"input[{i}]")
        chat.messages.append({"role": "user", "content": item if isinstance(item, str) else item.content})
        chat.tokens.append(None)
    return chat


def _chat_result(llm: Any, result: Any, loaded_now: bool, response_id: str | None) -> dict[str, Any]:
    st = result.stats
    stats = {"input_tokens": st.prompt_tokens_count, "total_output_tokens": st.predicted_tokens_count,
             "reasoning_output_tokens": 0, "tokens_per_second": st.tokens_per_second,
             "time_to_first_token_seconds": st.time_to_first_token_sec,
             "generation_time_seconds": st.generation_time_sec, "stop_reason": st.stop_reason}
    if loaded_now:
        stats["model_load_time_seconds"] = round(llm.load_result.load_time_seconds, 3)
    body: dict[str, Any] = {"model_instance_id": llm.identifier,
                            "output": [{"type": "message", "content": result.content}], "stats": stats}
    if response_id is not None:
        body["response_id"] = response_id
    return body


def _store(state: ServerState, chat: StoredChat, result: Any) -> str:
    response_id = "resp_" + secrets.token_hex(16)
    state.responses[response_id] = StoredChat([*chat.messages, {"role": "assistant", "content": result.content}],
                                              [*chat.tokens, result.stats.predicted_tokens_count])
    while len(state.responses) > STORED_RESPONSES:
        state.responses.popitem(last=False)
    return response_id


def _failed(result: Any) -> ApiError | None:
    if result.stats.stop_reason == "failed":
        return ApiError(500, f"the prediction failed: {result.stats.error or 'unknown engine error'}",
                        type="prediction_error")
    return None


@endpoint
async def api_chat(request: Request) -> Response:
    """POST /api/v1/chat — LM Studio's native chat, SSE events with ``stream: true``."""
    state = _state(request)
    req = rs.validate(rs.ChatRequest, await read_json(request, state))
    if req.integrations:
        raise bad_request("integrations (MCP servers, plugins) are not supported by lmsext", param="integrations")
    rs.unsupported("reasoning", req.reasoning, ("off",), "a reasoning setting other than 'off'")
    chat = _chat_messages(state, req)
    values = {k: getattr(req, k) for k in _CHAT_PREDICTION}
    if values["max_output_tokens"] is None:
        values["max_output_tokens"] = state.default_max_tokens
    config = rs.prediction_config(values, _CHAT_RENAMES, check=state.client.engine.check_prediction_config)
    jit = {"context_length": req.context_length} if req.context_length is not None else None
    llm, loaded_now = await _run(get_model, state.client, req.model, jit)
    policy = config.context_overflow_policy or "truncateMiddle"

    def make_stream() -> Any:  # in the job's thread, once the instance is ours
        nonlocal chat
        if req.previous_response_id is not None:
            chat = trim_chain(llm, chat, policy)
        return llm.respond_stream(chat.messages, config)

    job, first = await start_job(state, llm, make_stream, request)
    if not req.stream:
        result = await _collect(job, first)
        response_id = _store(state, chat, result) if req.store else None
        return JSON(_chat_result(llm, result, loaded_now, response_id))
    return GatedStream(_chat_sse(state, req, llm, loaded_now, chat, job, first), job, "text/event-stream")


def _sse(event: str, data: dict[str, Any]) -> str:
    return f"event: {event}\ndata: {_dumps(data)}\n\n"


async def _chat_sse(state: ServerState, req: rs.ChatRequest, llm: Any, loaded_now: bool,
                    chat: StoredChat, job: PredictionJob, first: tuple[str, Any]
                    ) -> AsyncIterator[str]:
    ident = llm.identifier
    yield _sse("chat.start", {"type": "chat.start", "model_instance_id": ident})
    if loaded_now:  # the JIT load finished before the stream opened (so load errors are HTTP errors)
        yield _sse("model_load.start", {"type": "model_load.start", "model_instance_id": ident})
        yield _sse("model_load.progress", {"type": "model_load.progress", "model_instance_id": ident,
                                           "progress": 1.0})
        yield _sse("model_load.end", {"type": "model_load.end", "model_instance_id": ident,
                                      "load_time_seconds": round(llm.load_result.load_time_seconds, 3)})
    yield _sse("prompt_processing.start", {"type": "prompt_processing.start"})
    yield _sse("prompt_processing.end", {"type": "prompt_processing.end"})
    yield _sse("message.start", {"type": "message.start"})
    parts: list[str] = []
    async for kind, value in job_events(job, first):
        if kind == "fragment":
            parts.append(value.content)
            yield _sse("message.delta", {"type": "message.delta", "content": value.content})
        elif kind == "result":
            yield _sse("message.end", {"type": "message.end"})
            failed = _failed(value)
            if failed is not None:
                yield _sse("error", {"type": "error", "error": {"type": failed.type, "message": failed.message}})
            response_id = _store(state, chat, value) if req.store and failed is None else None
            yield _sse("chat.end", {"type": "chat.end",
                                    "result": _chat_result(llm, value, loaded_now, response_id)})
        elif kind == "error":
            err = to_api_error(value)
            yield _sse("message.end", {"type": "message.end"})
            yield _sse("error", {"type": "error", "error": {"type": err.type, "message": err.message,
                                                            "param": err.param}})
            yield _sse("chat.end", {"type": "chat.end", "result": {
                "model_instance_id": ident, "output": [{"type": "message", "content": "".join(parts)}],
                "stats": {}}})


# -- OpenAI-compatible -------------------------------------------------------------------------


def _openai_common_checks(req: Any) -> None:
    rs.unsupported("n", req.n, (1,), "n other than 1")
    rs.unsupported("presence_penalty", req.presence_penalty, (0, 0.0), "presence_penalty (use repeat_penalty)")
    rs.unsupported("frequency_penalty", req.frequency_penalty, (0, 0.0), "frequency_penalty (use repeat_penalty)")
    if req.logit_bias:
        raise bad_request("logit_bias is not supported by lmsext", param="logit_bias")


def _openai_messages(req: rs.OpenAIChatRequest) -> list[dict[str, str]]:
    out = []
    for i, msg in enumerate(req.messages):
        if msg.role in ("tool", "function"):
            raise bad_request(f"role '{msg.role}' is not supported by lmsext (no tool calling)",
                              param=f"messages[{i}].role")
        content = msg.content
        if content is None:
            text = ""
        elif isinstance(content, str):
            text = content
        else:
            texts = []
            for j, part in enumerate(content):
                if isinstance(part, rs.ImagePart):
                    raise bad_request("image content is not supported by lmsext (text models only)",
                                      param=f"messages[{i}].content[{j}]")
                texts.append(part.text)
            text = "".join(texts)
        out.append({"role": "system" if msg.role == "developer" else msg.role, "content": text})
    return out


def _response_format(fmt: dict[str, Any] | None) -> dict[str, Any] | None:
    if fmt is None:
        return None
    kind = fmt.get("type")
    if kind == "text":
        if set(fmt) - {"type"}:
            raise bad_request("response_format {type: text} takes no other field", param="response_format")
        return None
    if kind == "json_object":
        return {"type": "json"}
    if kind == "json_schema":
        spec = fmt.get("json_schema")
        if not isinstance(spec, dict) or not isinstance(spec.get("schema"), dict):
            raise bad_request("response_format.json_schema must be an object with a 'schema' object",
                              param="response_format.json_schema")
        return {"type": "json", "json_schema": spec["schema"]}
    raise bad_request(f"response_format.type={kind!r}: must be 'text', 'json_object' or 'json_schema'",
                      param="response_format.type")


def _usage(result: Any) -> dict[str, int]:
    st = result.stats
    return {"prompt_tokens": st.prompt_tokens_count, "completion_tokens": st.predicted_tokens_count,
            "total_tokens": st.prompt_tokens_count + st.predicted_tokens_count}


def _lms_stats(result: Any) -> dict[str, Any]:
    st = result.stats
    return {"tokens_per_second": st.tokens_per_second, "time_to_first_token": st.time_to_first_token_sec,
            "generation_time": st.generation_time_sec, "stop_reason": st.stop_reason}


def _openai_config(state: ServerState, req: Any, max_tokens: int | None, structured: dict[str, Any] | None) -> Any:
    values = {k: getattr(req, k) for k in ("temperature", "top_p", "top_k", "min_p", "repeat_penalty", "seed",
                                           "stop")}
    values["max_tokens"] = max_tokens
    if structured is not None:
        values["structured"] = structured
    try:
        return rs.prediction_config(values, check=state.client.engine.check_prediction_config)
    except ApiError as exc:
        raise _as_response_format(exc) from None


def _as_response_format(err: ApiError) -> ApiError:
    """``err`` about ``structured`` (the Python API's name) told as the OpenAI request's ``response_format``."""
    if err.param == "structured" or (err.param or "").startswith("structured."):
        err.param = "response_format"
        if err.message.startswith("structured"):
            err.message = "response_format" + err.message[len("structured"):]
            err.args = (err.message,)
    return err


@dataclass(frozen=True)
class _OpenAIShape:
    """What the OpenAI completion endpoints' answers differ in; :func:`_openai_answer` does the rest."""

    id_prefix: str
    object: str
    chunk_object: str
    content: Callable[[str], dict[str, Any]]
    """The fields of the full answer's choice for the generated text."""
    delta: Callable[[str | None], dict[str, Any]]
    """The fields of a streamed chunk's choice for a fragment (None: the final chunk)."""
    first_delta: dict[str, Any] | None = None
    """The fields of a chunk sent before the first fragment, if any."""
    chunk_fingerprint: bool = False
    """Whether streamed chunks carry ``system_fingerprint``."""


_CHAT_SHAPE = _OpenAIShape(
    "chatcmpl-", "chat.completion", "chat.completion.chunk",
    content=lambda text: {"message": {"role": "assistant", "content": text}},
    delta=lambda text: {"delta": {} if text is None else {"content": text}},
    first_delta={"delta": {"role": "assistant", "content": ""}}, chunk_fingerprint=True)
_COMPLETION_SHAPE = _OpenAIShape(
    "cmpl-", "text_completion", "text_completion",
    content=lambda text: {"text": text},
    delta=lambda text: {"text": text or ""})


async def _openai_request(request: Request, schema: type) -> tuple[ServerState, Any]:
    """The state and the validated body of an OpenAI completion request, after the checks both endpoints share."""
    state = _state(request)
    req = rs.validate(schema, await read_json(request, state))
    _openai_common_checks(req)
    return state, req


def _choice(fields: dict[str, Any], finish: str | None) -> dict[str, Any]:
    return {"index": 0, **fields, "logprobs": None, "finish_reason": finish}


def _finish(result: Any) -> str:
    return _FINISH.get(result.stats.stop_reason, "stop")


async def _openai_answer(request: Request, state: ServerState, req: Any, shape: _OpenAIShape,
                         predict: Callable[[Any], Iterable[Any]]) -> Response:
    """Get (JIT-load) ``req.model``, run ``predict(llm)`` on it and answer, whole or as a stream."""
    llm, _ = await _run(get_model, state.client, req.model, None)
    job, first = await start_job(state, llm, lambda: predict(llm), request)
    head = {"id": shape.id_prefix + secrets.token_hex(12), "object": shape.object, "created": _created(),
            "model": llm.identifier}
    if not req.stream:
        result = await _collect(job, first)
        return JSON({**head, "choices": [_choice(shape.content(result.content), _finish(result))],
                     "usage": _usage(result), "stats": _lms_stats(result), "system_fingerprint": llm.identifier})
    chunk_head = {**head, "object": shape.chunk_object}
    if shape.chunk_fingerprint:
        chunk_head["system_fingerprint"] = llm.identifier
    usage = bool(req.stream_options and req.stream_options.include_usage)

    def chunk(text: str | None, finish: str | None, fields: dict[str, Any] | None = None) -> dict[str, Any]:
        return {**chunk_head, "choices": [_choice(shape.delta(text) if fields is None else fields, finish)]}

    def usage_event(result: Any) -> dict[str, Any] | None:
        return {**head, "object": shape.chunk_object, "choices": [], "usage": _usage(result)} if usage else None

    first_event = None if shape.first_delta is None else chunk(None, None, shape.first_delta)
    return GatedStream(_openai_sse(job, first, chunk, usage_event, first_event), job, "text/event-stream")


@endpoint
async def openai_chat(request: Request) -> Response:
    """POST /v1/chat/completions."""
    state, req = await _openai_request(request, rs.OpenAIChatRequest)
    rs.unsupported("logprobs", req.logprobs, (False,), "logprobs")
    rs.unsupported("top_logprobs", req.top_logprobs, (0,), "top_logprobs")
    if req.tools:
        raise bad_request("tools are not supported by lmsext", param="tools")
    if req.tool_choice not in (None, "none", "auto"):
        raise bad_request("tool_choice is not supported by lmsext (no tools)", param="tool_choice")
    if req.max_tokens is not None and req.max_completion_tokens is not None \
            and req.max_tokens != req.max_completion_tokens:
        raise bad_request("give max_tokens or max_completion_tokens, not both", param="max_completion_tokens")
    max_tokens = req.max_completion_tokens if req.max_completion_tokens is not None else req.max_tokens
    messages = _openai_messages(req)
    if max_tokens is None:
        max_tokens = state.default_max_tokens
    config = _openai_config(state, req, max_tokens, _response_format(req.response_format))
    try:  # the JSON schema becomes a grammar when the prediction starts: its errors come from there
        return await _openai_answer(request, state, req, _CHAT_SHAPE,
                                    lambda llm: llm.respond_stream(messages, config))
    except ConfigError as exc:
        raise _as_response_format(to_api_error(exc)) from None


@endpoint
async def openai_completions(request: Request) -> Response:
    """POST /v1/completions."""
    state, req = await _openai_request(request, rs.OpenAICompletionRequest)
    rs.unsupported("echo", req.echo, (False,), "echo")
    rs.unsupported("logprobs", req.logprobs, (0,), "logprobs")
    rs.unsupported("best_of", req.best_of, (1,), "best_of other than 1")
    if req.suffix:
        raise bad_request("suffix (insertion) is not supported by lmsext", param="suffix")
    prompt = req.prompt
    if isinstance(prompt, list):
        if len(prompt) != 1:
            raise bad_request("prompt as a list must hold exactly one string (no batching)", param="prompt")
        prompt = prompt[0]
    max_tokens = state.default_max_tokens if req.max_tokens is None else req.max_tokens
    config = _openai_config(state, req, max_tokens, None)
    return await _openai_answer(request, state, req, _COMPLETION_SHAPE, lambda llm: llm.complete_stream(prompt, config))


async def _openai_sse(job: PredictionJob, first: tuple[str, Any], chunk: Callable[[str | None, str | None], Any],
                      usage_event: Callable[[Any], dict[str, Any] | None],
                      first_event: dict[str, Any] | None = None) -> AsyncIterator[str]:
    """The SSE stream of the OpenAI endpoints: ``chunk(text, finish)`` shapes each event."""
    if first_event is not None:
        yield _data(first_event)
    async for kind, value in job_events(job, first):
        if kind == "fragment":
            yield _data(chunk(value.content, None))
        elif kind == "result":
            failed = _failed(value)
            if failed is not None:
                yield _data(failed.body())
                continue
            yield _data(chunk(None, _finish(value)))
            extra = usage_event(value)
            if extra is not None:
                yield _data(extra)
        elif kind == "error":
            yield _data(to_api_error(value).body())
    yield "data: [DONE]\n\n"


async def _collect(job: PredictionJob, first: tuple[str, Any]) -> Any:
    """The result of a non-streaming job (the job itself stops when its client disconnects)."""
    result, error = None, None
    async for kind, value in job_events(job, first):
        if kind == "result":
            result = value
        elif kind == "error":
            error = value
    if error is not None:
        raise error
    if result is None:
        if job.stopped_by == "modelUnloaded":
            raise ApiError(409, f"model instance '{job.instance_id}' was unloaded during the prediction",
                           type="model_unloaded", param="model")
        raise ApiError(499 if job.stopped_by == "clientDisconnected" else 503,
                       f"the prediction was stopped ({job.stopped_by or 'no result'})", type="prediction_stopped")
    failed = _failed(result)
    if failed is not None:
        raise failed
    return result


def _data(obj: dict[str, Any]) -> str:
    return f"data: {_dumps(obj)}\n\n"


@endpoint
async def openapi(request: Request) -> Response:
    """GET /openapi.json."""
    from .._version import __version__
    from .rest_downloads import openapi_paths
    doc = rs.openapi_schema(_state(request).url, __version__)
    doc["paths"].update(openapi_paths())
    return JSON(doc)


# ------------------------------------------------------------------------------------------ guard


async def _http_error(request: Request, exc: Exception) -> Response:
    status = getattr(exc, "status_code", 500)
    messages = {404: f"no such endpoint: {request.method} {request.url.path} (see /openapi.json)",
                405: f"method {request.method} is not allowed on {request.url.path}"}
    kind = {404: "not_found", 405: "method_not_allowed"}.get(status, "invalid_request_error")
    return error_response(ApiError(status, messages.get(status, str(getattr(exc, "detail", exc))), type=kind,
                                   headers=getattr(exc, "headers", None)))


def build_app(state: ServerState) -> Any:
    """The ASGI app: routes, JSON errors, then the :class:`~.rest_guard.Guard` around everything."""
    routes = [
        Route("/api/v1/models/load", load_model, methods=["POST"]),
        Route("/api/v1/models/unload", unload_model, methods=["POST"]),
        Route("/api/v1/models", get_models, methods=["GET"]),
        Route("/api/v1/chat", api_chat, methods=["POST"]),
        Route("/v1/models", openai_models, methods=["GET"]),
        Route("/v1/chat/completions", openai_chat, methods=["POST"]),
        Route("/v1/completions", openai_completions, methods=["POST"]),
        Route("/openapi.json", openapi, methods=["GET"]),
    ]
    from .rest_downloads import routes as download_routes  # POST /api/v1/models/download + its status
    routes += download_routes(endpoint, read_json, _run, JSON)
    app = Starlette(routes=routes, exception_handlers={HTTPException: _http_error})
    app.state.lmsext = state
    return Guard(app, state, error_response)
