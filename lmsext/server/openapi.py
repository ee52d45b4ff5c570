"""The OpenAPI 3.1 document served at ``/openapi.json``."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from ..config import LoadModelConfig
from ..results import REST_CONFIG_KEYS
from .requests import ChatRequest, LoadRequest, OpenAIChatRequest, OpenAICompletionRequest, UnloadRequest

# ------------------------------------------------------------------------------------------ OpenAPI

class ErrorDetail(BaseModel):
    """The ``error`` object of every error response."""

    message: str
    type: str
    param: str | None = Field(None, description="The offending request field, if any.")


class ErrorBody(BaseModel):
    """An error response: {"error": {"message", "type", "param"}}."""

    error: ErrorDetail


class LoadResponse(BaseModel):
    """The answer of POST /api/v1/models/load: the instance id, every effective load setting, the load time."""

    type: str = Field(description="`llm` (LM Studio 0.4).")
    instance_id: str = Field(description="The loaded instance's id (LM Studio 0.4's name).")
    model_instance_id: str = Field(description="The same id under seed 002's name.")
    config: dict[str, Any] = Field(description="Every effective load setting, defaults included.")
    load_time_seconds: float
    status: str = Field(description="`loaded`.")
    load_config: dict[str, Any] | None = Field(None, description="With `echo_load_config`: the settings applied.")


def _not_null(schema: dict[str, Any]) -> dict[str, Any]:
    """The non-null branch of an optional field's schema (an effective setting always has a value)."""
    branches = [b for b in schema.get("anyOf", []) if b.get("type") != "null"]
    return branches[0] if len(branches) == 1 else schema


def _model_schemas(schemas: dict[str, Any], name: str, model: type[BaseModel], template: str) -> dict[str, Any]:
    """Add ``model``'s JSON schema (and the models it refers to) to ``schemas`` as ``name``."""
    schema = model.model_json_schema(ref_template=template)
    schemas.update(schema.pop("$defs", {}))
    schemas[name] = schema
    return schema


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
        _model_schemas(schemas, model.__name__, model, template)
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
    _model_schemas(schemas, "Error", ErrorBody, template)
    loaded = _model_schemas(schemas, "LoadResponse", LoadResponse, template)
    loaded["properties"]["config"]["properties"] = {k: _not_null(load["properties"][k]) for k in REST_CONFIG_KEYS}
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
