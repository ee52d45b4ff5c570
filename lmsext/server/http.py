"""HTTP plumbing of the REST server: JSON encoding that cannot fail (NaN/inf → null), exceptions → JSON errors
without server paths, request bodies, worker threads."""

from __future__ import annotations

import json
import logging
import re
import time
from typing import Any, Callable

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..errors import (ConfigError, InsufficientMemoryError, ModelBusyError, ModelLoadError, ModelNotFoundError,
                      ModelNotLoadedError, PredictionError)
from ..results import finite
from .errors import ApiError, bad_request
from .state import ServerState
from .validation import parse_json_body

log = logging.getLogger("lmsext.server")

# ------------------------------------------------------------------------------------------ helpers


def dumps(obj: Any) -> str:
    return json.dumps(finite(obj), ensure_ascii=False, separators=(",", ":"), default=str)


def _encode(obj: Any) -> bytes:
    """UTF-8 JSON of ``obj`` that cannot fail: a lone surrogate is written as its JSON escape (``\\ud800``)."""
    try:
        return dumps(obj).encode("utf-8", "backslashreplace")
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
    return parse_json_body(b"".join(chunks))


def _too_large(limit: int) -> ApiError:
    return ApiError(413, f"request body larger than {limit} bytes", type="request_too_large")


def run_blocking(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run blocking API work in a worker thread (waits for it even if the request is cancelled)."""
    return anyio.to_thread.run_sync(lambda: fn(*args, **kwargs))



def created() -> int:
    """Now, in whole seconds since the epoch (the ``created`` field of OpenAI answers)."""
    return int(time.time())



def server_state(request: Request) -> ServerState:
    """The :class:`~.state.ServerState` of the app serving ``request``."""
    return request.app.state.lmsext
