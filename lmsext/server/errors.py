"""The REST server's error type: an HTTP status with LM Studio's/OpenAI's JSON error body."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

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


def short(value: Any, limit: int = 60) -> str:
    """``value`` as short JSON text for an error line (cut at ``limit`` characters)."""
    try:
        text = json.dumps(value, ensure_ascii=True)
    except (TypeError, ValueError, RecursionError):
        text = ascii(value) if isinstance(value, str) else f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."
