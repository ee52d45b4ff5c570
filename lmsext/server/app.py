"""The Starlette app of the REST server: the route table, JSON errors for unknown routes, the guard around it."""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from . import downloads, lmstudio, openai
from .errors import ApiError
from .guard import Guard
from .http import JSON, endpoint, error_response, read_json, run_blocking, server_state
from .state import ServerState

@endpoint
async def openapi(request: Request) -> Response:
    """GET /openapi.json."""
    from .._version import __version__
    from .openapi import openapi_schema
    doc = openapi_schema(server_state(request).url, __version__)
    doc["paths"].update(downloads.openapi_paths())
    return JSON(doc)


async def _http_error(request: Request, exc: Exception) -> Response:
    status = getattr(exc, "status_code", 500)
    messages = {404: f"no such endpoint: {request.method} {request.url.path} (see /openapi.json)",
                405: f"method {request.method} is not allowed on {request.url.path}"}
    kind = {404: "not_found", 405: "method_not_allowed"}.get(status, "invalid_request_error")
    return error_response(ApiError(status, messages.get(status, str(getattr(exc, "detail", exc))), type=kind,
                                   headers=getattr(exc, "headers", None)))


def build_app(state: ServerState) -> Any:
    """The ASGI app: routes, JSON errors, then the :class:`~.guard.Guard` around everything."""
    routes = [
        Route("/api/v1/models/load", lmstudio.load_model, methods=["POST"]),
        Route("/api/v1/models/unload", lmstudio.unload_model, methods=["POST"]),
        Route("/api/v1/models", lmstudio.get_models, methods=["GET"]),
        Route("/api/v1/chat", lmstudio.api_chat, methods=["POST"]),
        Route("/v1/models", openai.openai_models, methods=["GET"]),
        Route("/v1/chat/completions", openai.openai_chat, methods=["POST"]),
        Route("/v1/completions", openai.openai_completions, methods=["POST"]),
        Route("/openapi.json", openapi, methods=["GET"]),
    ]
    routes += downloads.routes(endpoint, read_json, run_blocking, JSON)  # POST /api/v1/models/download + status
    app = Starlette(routes=routes, exception_handlers={HTTPException: _http_error})
    app.state.lmsext = state
    return Guard(app, state, error_response)
