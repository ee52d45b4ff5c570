"""The OpenAPI 3.1 document served at ``/openapi.json``."""

from __future__ import annotations

from typing import Any

from ..config import LoadModelConfig
from .requests import ChatRequest, LoadRequest, OpenAIChatRequest, OpenAICompletionRequest, UnloadRequest

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
