"""Request bodies of the REST server: validation (400 naming the field), config mapping, OpenAPI schema.

Pure pydantic, ``lmsext.config`` and the engine's limit checks (no model, no web framework). Every request model forbids
unknown fields and is strictly typed (``"4096"`` is not a number, ``true`` is not an integer);
ranges and the meaning of each prediction/load setting come from :class:`~lmsext.PredictionConfig`
and :class:`~lmsext.LoadModelConfig`, so the REST server accepts exactly what the Python API does.
"""

from __future__ import annotations

import difflib
import json
import re
import sys
from collections.abc import Mapping
from typing import Annotated, Any, Callable, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..config import GpuSetting, LoadModelConfig, PredictionConfig
from ..errors import ConfigError

# ------------------------------------------------------------------------------------------ errors


class ApiError(Exception):
    """An HTTP error with the JSON body ``{"error": {"message", "type", "param"}}``."""

    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error",
                 param: str | None = None, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        """The JSON error body."""
        return {"error": {"message": self.message, "type": self.type, "param": self.param}}


def bad_request(message: str, param: str | None = None, type: str = "invalid_request_error") -> ApiError:
    """A 400 naming ``param``."""
    return ApiError(400, message, type=type, param=param)


def _short(value: Any, limit: int = 60) -> str:
    try:
        text = json.dumps(value, ensure_ascii=True)
    except (TypeError, ValueError, RecursionError):
        text = ascii(value) if isinstance(value, str) else f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


MAX_DEPTH = 64
"""How deeply a request body may nest objects and arrays (a JSON schema inside it included)."""
_SURROGATE = re.compile("[\ud800-\udfff]")


def _path(link: tuple[Any, ...] | None) -> str:
    """The client's spelling of a path built as linked ``(parent, key)`` pairs."""
    parts: list[Any] = []
    while link is not None:
        link, key = link
        parts.append(key)
    out = ""
    for key in reversed(parts):
        out += f"[{key}]" if isinstance(key, int) else (f".{key}" if out else str(key))
    return out


def _surrogate_in(text: str) -> str | None:
    if text.isascii():
        return None
    m = _SURROGATE.search(text)
    return None if m is None else f"\\u{ord(m.group()):04x}"


def check_tree(data: Any, max_depth: int = MAX_DEPTH) -> None:
    """400 when ``data`` nests deeper than ``max_depth`` or holds a lone surrogate in a key or a string.

    Iterative: it never recurses, whatever the input. A lone surrogate (``"\\ud800"``) is valid JSON
    but not Unicode: no UTF-8 text can hold it, so it is refused here instead of failing later.
    """
    stack: list[tuple[Any, int, Any]] = [(data, 1, None)]
    while stack:
        value, depth, link = stack.pop()
        if isinstance(value, str):
            bad = _surrogate_in(value)
            if bad is not None:
                where = _path(link) or "the request body"
                raise bad_request(f"{where} holds a lone surrogate ({bad}): not valid Unicode text",
                                  param=_path(link) or None)
        elif isinstance(value, (dict, list)):
            if depth > max_depth:
                raise bad_request(f"the request body nests objects and arrays more than {max_depth} levels deep",
                                  param=_path(link) or None)
            if isinstance(value, dict):
                for key, item in value.items():
                    bad = _surrogate_in(key)
                    if bad is not None:
                        where = _path(link) or "the request body"
                        raise bad_request(f"a field name in {where} holds a lone surrogate ({bad}): not valid "
                                          "Unicode text", param=_path(link) or None)
                    stack.append((item, depth + 1, (link, key)))
            else:
                stack.extend((item, depth + 1, (link, i)) for i, item in enumerate(value))


def parse_json_body(raw: bytes) -> dict[str, Any]:
    """The JSON object in ``raw``, or a 400 saying what is wrong with it (one line, whatever ``raw`` holds)."""
    if not raw.strip():
        raise bad_request("the request body is empty: send a JSON object", param=None)
    try:
        data = json.loads(raw.decode("utf-8"))  # UTF-8 only (json.loads would guess UTF-16/32 from bytes)
    except UnicodeDecodeError:
        raise bad_request("the request body is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise bad_request(f"the request body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}")\
            from None
    except RecursionError:
        raise bad_request(f"the request body nests objects and arrays more than {MAX_DEPTH} levels deep") from None
    except ValueError:  # int('9' * 5000): Python's own digit limit for integers
        digits = getattr(sys, "get_int_max_str_digits", lambda: 4300)()
        raise bad_request(f"the request body holds an integer with more than {digits} digits") from None
    if not isinstance(data, dict):
        raise bad_request(f"the request body must be a JSON object, not {type(data).__name__}")
    check_tree(data)
    return data


def validate(model: type[BaseModel], data: Any, prefix: str = "") -> Any:
    """``model.model_validate(data)``, turning the first problem into a 400 that names the field."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise _validation_error(model, exc, data, prefix) from None


def _validation_error(model: type[BaseModel], exc: ValidationError, data: Any, prefix: str) -> ApiError:
    """The 400 for pydantic's errors: the problem that reaches deepest into the data the client sent."""
    best: tuple[tuple[int, int], dict[str, Any], str, Any] | None = None
    rank = {"extra_forbidden": 2, "missing": 1}
    for error in exc.errors(include_url=False):
        path, depth, owner = _walk(model, data, tuple(error["loc"]), prefix)
        key = (depth, rank.get(error["type"], 0))
        if best is None or key > best[0]:
            best = (key, error, path, owner)
    assert best is not None
    _, first, param, owner = best
    if first["type"] == "extra_forbidden":
        name = str(first["loc"][-1])
        fields = list(owner.model_fields) if owner is not None else []
        return bad_request(f"unknown field '{param}'{_suggest(name, fields, HINTS)}", param=param)
    if first["type"] == "missing":
        return bad_request(f"'{param}' is required", param=param)
    msg = first["msg"]
    if first["type"] == "value_error" and (first.get("ctx") or {}).get("error") is not None:
        msg = str(first["ctx"]["error"])
    if first["type"] == "union_tag_not_found":
        msg = "needs a 'type' field"
    if first["type"] == "union_tag_invalid":
        msg = f"'type' must be one of {first.get('ctx', {}).get('expected_tags', '')}"
    msg = msg[0].lower() + msg[1:] if msg else "invalid value"
    return bad_request(f"{param}={_short(first.get('input'))}: {msg}", param=param or None)


def _walk(model: type[BaseModel], data: Any, loc: tuple[Any, ...], prefix: str
          ) -> tuple[str, int, type[BaseModel] | None]:
    """Map pydantic's ``loc`` (which names union branches) onto the client's data: (path, depth, owner model)."""
    path, depth, value, owner = prefix, 0, data, model
    current: Any = model
    for i, part in enumerate(loc):
        last = i == len(loc) - 1
        if isinstance(part, int) and isinstance(value, list) and 0 <= part < len(value):
            path, value, depth = f"{path}[{part}]", value[part], depth + 1
        elif isinstance(part, str) and isinstance(value, dict) and (
                part in value or (last and _has_field(current, part))):  # a missing field of a model
            path, depth = (f"{path}.{part}" if path else part), depth + 1
            owner = current if isinstance(current, type) else owner
            value = value.get(part)
            fields = current.model_fields if isinstance(current, type) else {}
            current = _model_in(fields[part].annotation) if part in fields else None
        elif isinstance(part, str) and isinstance(current, tuple):  # a union branch: class name or tag
            current = next((m for m in current if part in (m.__name__, _tag(m))), current)
    return path, depth, owner


def _has_field(current: Any, name: str) -> bool:
    """True when the request model(s) ``current`` (a class or a union's tuple) have a field ``name``."""
    models = current if isinstance(current, tuple) else (current,) if isinstance(current, type) else ()
    return any(name in m.model_fields for m in models)


def _tag(model: type[BaseModel]) -> str | None:
    field = model.model_fields.get("type")
    args = getattr(field.annotation, "__args__", ()) if field is not None else ()
    return args[0] if len(args) == 1 and isinstance(args[0], str) else None


def _model_in(annotation: Any) -> Any:
    """The request model(s) inside a field annotation: a class, a tuple of classes (union) or None."""
    import typing
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    found: list[type[BaseModel]] = []
    for arg in typing.get_args(annotation):
        inner = _model_in(arg)
        if isinstance(inner, tuple):
            found += list(inner)
        elif inner is not None:
            found.append(inner)
    if not found:
        return None
    return found[0] if len(found) == 1 else tuple(found)


def _suggest(name: str, fields: list[str], hints: Mapping[str, str]) -> str:
    if name in hints and hints[name] in fields:
        return f" — use '{hints[name]}'"
    match = difflib.get_close_matches(name.lower(), fields, n=1, cutoff=0.6)
    if match:
        return f" — did you mean '{match[0]}'?"
    return f" (valid: {', '.join(fields)})" if fields else ""


#: Spellings of the Python API that the REST bodies name differently.
HINTS = {"max_tokens": "max_output_tokens", "maxTokens": "max_output_tokens", "stop_strings": "stop",
         "top_p_sampling": "top_p", "top_k_sampling": "top_k", "min_p_sampling": "min_p",
         "topP": "top_p", "topK": "top_k", "minP": "min_p", "systemPrompt": "system_prompt",
         "contextLength": "context_length", "messages": "input", "prompt": "input",
         "maxOutputTokens": "max_output_tokens", "repeatPenalty": "repeat_penalty"}

# ------------------------------------------------------------------------------------------ models


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


def _model_field() -> Any:
    return Field(min_length=1, max_length=512, description="A model key from the model folders (e.g. "
                 "`stories260K`) or a loaded instance id. File paths are rejected.")


class LoadRequest(_Strict):
    """``POST /api/v1/models/load`` (seed 002)."""

    model: str = _model_field()
    config: dict[str, Any] | None = Field(None, description="Load settings in snake_case; see LoadConfig.")


class UnloadRequest(_Strict):
    """``POST /api/v1/models/unload``."""

    instance_id: str = Field(min_length=1, max_length=512, description="The loaded instance to unload.")


class InputMessage(_Strict):
    """A text input item of ``/api/v1/chat``."""

    type: Literal["message"]
    content: str


class InputImage(_Strict):
    """An image input item (not supported by lmsext: answered with 400)."""

    type: Literal["image"]
    data_url: str


Number = Union[float, int]
StopValue = Union[str, list[str]]


class _Sampling(_Strict):
    """Sampling settings shared by the chat endpoints (LM Studio REST / OpenAI names, snake_case)."""

    temperature: Number | None = Field(None, description="0 to 2; 0 is greedy.")
    top_p: Number | None = Field(None, description="Nucleus sampling mass, > 0 and <= 1.")
    top_k: int | None = Field(None, description="Sample from the k most likely tokens (0 = off).")
    min_p: Number | None = Field(None, description="0 to 1.")
    repeat_penalty: Number | None = Field(None, description="> 0; 1 = none.")
    seed: int | None = Field(None, description="Sampler seed.")
    stop: StopValue | None = Field(None, description="A stop string or a list of them.")


class ChatRequest(_Sampling):
    """``POST /api/v1/chat``: LM Studio's native chat endpoint."""

    model: str = _model_field()
    input: Union[str, list[Annotated[Union[InputMessage, InputImage], Field(discriminator="type")]]] = Field(
        description="The user message, or a list of `{type: \"message\", content}` items.")
    system_prompt: str | None = None
    stream: bool = Field(False, description="Stream server-sent events (chat.start ... chat.end).")
    store: bool = Field(True, description="Keep the exchange so `previous_response_id` can continue it.")
    previous_response_id: str | None = Field(None, description="Continue the conversation of a stored response.")
    context_length: int | None = Field(None, ge=1, description="Context length if the model has to be loaded (JIT).")
    reasoning: Literal["off", "low", "medium", "high", "on"] | None = None
    integrations: list[Any] | None = Field(None, description="Not supported (MCP); must be absent or empty.")
    max_output_tokens: int | None = Field(None, description="Most tokens to generate.")
    context_overflow_policy: str | None = Field(None, description="stopAtLimit, truncateMiddle or rollingWindow.")
    structured: dict[str, Any] | None = Field(None, description="JSON schema / GBNF constraint (LM Studio form).")
    xtc_probability: Number | None = None
    xtc_threshold: Number | None = None
    cpu_threads: int | None = Field(None, description="CPU threads for this prediction.")


class TextPart(_Strict):
    """An OpenAI text content part."""

    type: Literal["text"]
    text: str


class ImagePart(_Strict):
    """An OpenAI image content part (not supported: 400)."""

    type: Literal["image_url"]
    image_url: Any


class OpenAIMessage(_Strict):
    """An OpenAI chat message."""

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: Union[str, list[Annotated[Union[TextPart, ImagePart], Field(discriminator="type")]], None] = None
    name: str | None = None


class StreamOptions(_Strict):
    """OpenAI ``stream_options``."""

    include_usage: bool = False


class _OpenAICommon(_Sampling):
    model: str = _model_field()
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int | None = Field(None, description="Only 1 is supported.")
    presence_penalty: Number | None = Field(None, description="Only 0 is supported (use repeat_penalty).")
    frequency_penalty: Number | None = Field(None, description="Only 0 is supported (use repeat_penalty).")
    logit_bias: dict[str, Any] | None = Field(None, description="Only an empty object is supported.")
    user: str | None = Field(None, description="Accepted and ignored.")


class OpenAIChatRequest(_OpenAICommon):
    """``POST /v1/chat/completions``."""

    messages: list[OpenAIMessage] = Field(min_length=1)
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    response_format: dict[str, Any] | None = Field(
        None, description="`{type: text}`, `{type: json_object}` or `{type: json_schema, json_schema: {schema}}`.")
    logprobs: bool | None = Field(None, description="Only false is supported.")
    top_logprobs: int | None = Field(None, description="Only 0 is supported.")
    tools: list[Any] | None = Field(None, description="Not supported: must be absent or empty.")
    tool_choice: Any = Field(None, description="Only 'none' or 'auto' without tools.")
    parallel_tool_calls: bool | None = Field(None, description="Accepted and ignored.")
    metadata: dict[str, Any] | None = Field(None, description="Accepted and ignored.")
    store: bool | None = Field(None, description="Accepted and ignored.")


class OpenAICompletionRequest(_OpenAICommon):
    """``POST /v1/completions``."""

    prompt: Union[str, list[str]]
    max_tokens: int | None = Field(16, description="Most tokens to generate (OpenAI's default: 16; null = no limit).")
    echo: bool = Field(False, description="Only false is supported.")
    logprobs: int | None = Field(None, description="Only null/0 is supported.")
    suffix: str | None = Field(None, description="Not supported: must be absent.")
    best_of: int | None = Field(None, description="Only 1 is supported.")


# ------------------------------------------------------------------------------------------ configs


def load_config(raw: Any, param: str = "config", check: Callable[[LoadModelConfig], None] | None = None
                ) -> LoadModelConfig:
    """The LoadModelConfig for a REST ``config`` object (snake_case names only), or a 400; ``check`` (the
    engine's ``check_load_config``) refuses what the engine cannot take, named by the request's field."""
    if raw is None:
        return LoadModelConfig()
    if not isinstance(raw, dict):
        raise bad_request(f"{param} must be an object of load settings, not {type(raw).__name__}", param=param)
    names = LoadModelConfig.field_names("snake")
    for key, value in raw.items():
        if key not in names:
            canonical = LoadModelConfig.canonical_key(key)
            if canonical is not None:
                raise bad_request(f"unknown field '{param}.{key}' — the REST API takes snake_case: use "
                                  f"'{canonical}'", param=f"{param}.{key}")
            hint = _suggest(key, list(names), {})
            raise bad_request(f"unknown field '{param}.{key}': not a load setting{hint}", param=f"{param}.{key}")
        if key == "gpu" and isinstance(value, dict):
            gpu_names = GpuSetting.field_names("snake")
            for sub in value:
                if sub not in gpu_names:
                    hint = _suggest(str(sub), list(gpu_names), {})
                    raise bad_request(f"unknown field '{param}.gpu.{sub}'{hint}", param=f"{param}.gpu.{sub}")
    try:
        config = LoadModelConfig.parse(raw)
        if check is not None:
            check(config)
        return config
    except ConfigError as exc:
        key = f"{param}.{exc.key}" if exc.key else param
        if exc.allowed and exc.key:
            raise bad_request(f"{key}={_short(exc.value)}: must be {exc.allowed}", param=key) from None
        raise bad_request(str(exc), param=key) from None


def prediction_config(values: Mapping[str, Any], renames: Mapping[str, str] | None = None,
                      check: Callable[[PredictionConfig], None] | None = None) -> PredictionConfig:
    """The PredictionConfig for request fields ``values`` (None = unset); 400 naming the request field.
    ``check`` (the engine's ``check_prediction_config``) refuses what the engine cannot take.

    ``renames`` maps request field names to PredictionConfig keys (``max_output_tokens`` → ``max_tokens``).
    """
    renames = dict(renames or {})
    back = {v: k for k, v in renames.items()}
    data = {renames.get(k, k): v for k, v in values.items() if v is not None}
    try:
        config = PredictionConfig.parse(data)
        if check is not None:
            check(config)  # here, so that the 400 names the request's field
        return config
    except ConfigError as exc:
        key = exc.key or ""
        head, dot, rest = key.partition(".")
        field = back.get(head, head)
        param = field + dot + rest if key else None
        if exc.allowed and key:
            allowed = re.sub(r", or False .*$", "", exc.allowed)  # REST bodies cannot send the Python API's False
            raise bad_request(f"{param}={_short(exc.value)}: must be {allowed}", param=param) from None
        raise bad_request(str(exc), param=param) from None


def unsupported(param: str, value: Any, allowed: tuple[Any, ...], what: str) -> None:
    """400 if ``value`` is set to something other than ``allowed``: lmsext does not implement ``what``."""
    if value is not None and value not in allowed:
        raise bad_request(f"{param}={_short(value)}: {what} is not supported by lmsext", param=param)


# ------------------------------------------------------------------------------------------ OpenAPI

_ERROR_SCHEMA = {
    "type": "object", "required": ["error"],
    "properties": {"error": {"type": "object", "required": ["message", "type"], "properties": {
        "message": {"type": "string"}, "type": {"type": "string"},
        "param": {"type": ["string", "null"], "description": "The offending request field, if any."}}}},
}
_LOAD_RESPONSE = {
    "type": "object", "required": ["model_instance_id", "config", "load_time_seconds"],
    "properties": {
        "model_instance_id": {"type": "string"},
        "config": {"type": "object", "description": "Every effective load setting, defaults included.",
                   "properties": {"context_length": {"type": "integer"}, "eval_batch_size": {"type": "integer"},
                                  "flash_attention": {"type": "boolean"}, "num_experts": {"type": "integer"},
                                  "offload_kv_cache_to_gpu": {"type": "boolean"}}},
        "load_time_seconds": {"type": "number"}},
}


def _clean(schema: Any) -> Any:
    """Move lmsext's ``allowed`` annotations out of the way (``x-allowed``) and drop titles."""
    if isinstance(schema, list):
        return [_clean(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "properties" and isinstance(value, dict):
            out[key] = {name: _clean(sub) for name, sub in value.items()}
        elif key == "allowed" and isinstance(value, str):
            out["x-allowed"] = value
        elif key == "title" and isinstance(value, str):
            continue
        else:
            out[key] = _clean(value)
    return out


def _components() -> dict[str, Any]:
    schemas: dict[str, Any] = {}
    template = "#/components/schemas/{model}"
    for model in (LoadRequest, UnloadRequest, ChatRequest, OpenAIChatRequest, OpenAICompletionRequest):
        schema = model.model_json_schema(ref_template=template)
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    load = LoadModelConfig.model_json_schema(by_alias=False, ref_template=template)
    schemas.update(load.pop("$defs", {}))
    load["properties"]["gpu"] = {"anyOf": [
        {"type": "number", "minimum": 0, "maximum": 1}, {"enum": ["max", "off"]},
        {"$ref": "#/components/schemas/GpuSetting"}, {"type": "null"}],
        "description": load["properties"]["gpu"].get("description", "")}
    load["description"] = "Load settings (snake_case); every one is optional."
    schemas["LoadConfig"] = load
    schemas["LoadRequest"]["properties"]["config"] = {"anyOf": [{"$ref": "#/components/schemas/LoadConfig"},
                                                                {"type": "null"}]}
    schemas["Error"] = _ERROR_SCHEMA
    schemas["LoadResponse"] = _LOAD_RESPONSE
    if "GpuSetting" in schemas:  # its docstring is written for Python users
        schemas["GpuSetting"]["description"] = "GPU offload: ratio (0-1, 'max', 'off'), main_gpu, split_strategy, " \
                                               "disabled_gpus."
    return _clean(schemas)


def _op(summary: str, request: str | None, responses: dict[str, str], stream: bool = False,
        ok: dict[str, Any] | None = None) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "responses": {}}
    if request:
        op["requestBody"] = {"required": True, "content": {"application/json": {
            "schema": {"$ref": f"#/components/schemas/{request}"}}}}
    content: dict[str, Any] = {"application/json": {"schema": ok or {"type": "object"}}}
    if stream:
        content["text/event-stream"] = {"schema": {"type": "string"}}
    op["responses"]["200"] = {"description": "OK", "content": content}
    for code, text in responses.items():
        op["responses"][code] = {"description": text, "content": {"application/json": {
            "schema": {"$ref": "#/components/schemas/Error"}}}}
    return op


_COMMON = {"400": "Bad JSON, an unknown field or a bad value (error.param names it)",
           "401": "Missing or wrong API key", "403": "Host not a loopback name, or Origin not allowed",
           "413": "Request body too large", "415": "Content-Type is not application/json"}
_PREDICT = {**_COMMON, "404": "Unknown model",
            "409": "The model is busy with a notebook prediction, or was unloaded during this one",
            "429": "The model stayed busy longer than the queue timeout",
            "500": "The engine failed"}


def openapi_schema(server_url: str | None = None, version: str = "0.1.0") -> dict[str, Any]:
    """The OpenAPI 3.1 document served at ``/openapi.json``."""
    auth = [{"bearer": []}]
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": "lmsext REST API", "version": version,
                 "description": "LM Studio's /api/v1 endpoints and OpenAI-compatible /v1 endpoints, served from "
                                "the Jupyter kernel and sharing its loaded models."},
        "paths": {
            "/api/v1/models/load": {"post": _op("Load a model (new instance)", "LoadRequest",
                                                {**_COMMON, "404": "Unknown model",
                                                 "500": "llama.cpp could not load the model"},
                                                ok={"$ref": "#/components/schemas/LoadResponse"})},
            "/api/v1/models/unload": {"post": _op("Unload a model instance", "UnloadRequest",
                                                  {**_COMMON, "404": "No such loaded instance"})},
            "/api/v1/models": {"get": _op("Downloaded and loaded models, with each instance's config", None,
                                          {"401": _COMMON["401"]})},
            "/api/v1/chat": {"post": _op("Chat with a model (JIT-loads it); SSE with stream: true", "ChatRequest",
                                         _PREDICT, stream=True)},
            "/v1/models": {"get": _op("OpenAI-compatible model list", None, {"401": _COMMON["401"]})},
            "/v1/chat/completions": {"post": _op("OpenAI-compatible chat completion", "OpenAIChatRequest",
                                                 _PREDICT, stream=True)},
            "/v1/completions": {"post": _op("OpenAI-compatible text completion", "OpenAICompletionRequest",
                                            _PREDICT, stream=True)},
        },
        "components": {"schemas": _components(),
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                                      "description": "Required when the server has an API key."}}},
        "security": auth,
    }
    if server_url:
        doc["servers"] = [{"url": server_url}]
    return doc
