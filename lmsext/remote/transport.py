"""HTTP to a model server (httpx): JSON requests, SSE streams, and every failure as one line.

Connection refused, timeouts, 401/403, 404, 400 and 5xx answers become :class:`~lmsext.errors.RemoteError`
(or :class:`~lmsext.errors.ConfigError` for a 400 naming a setting, :class:`~lmsext.errors.ModelNotFoundError`
for an unknown model) whose message names the server; nothing here keeps state beyond the connection pool.
"""

from __future__ import annotations

import json
from typing import Any, Iterator

import httpx

from ..errors import ConfigError, ModelNotFoundError, RemoteError

#: Seconds to wait for a connection, and for each chunk of an answer (a prediction's next token included).
CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 120.0
#: Longest server message quoted in an error line.
MAX_MESSAGE = 300


class Transport:
    """One server: its base URL, the API key (``Authorization: Bearer``) and a pooled httpx client."""

    def __init__(self, base_url: str, api_key: str | None = None, *, timeout: float = READ_TIMEOUT) -> None:
        self.base_url = base_url.rstrip("/")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.timeout = timeout
        self._http = httpx.Client(base_url=self.base_url, headers=headers,
                                  timeout=httpx.Timeout(timeout, connect=CONNECT_TIMEOUT))

    def get(self, path: str) -> Any:
        """The JSON answer of ``GET path``."""
        return self._json("GET", path, None)

    def post(self, path: str, body: dict[str, Any]) -> Any:
        """The JSON answer of ``POST path`` with ``body``."""
        return self._json("POST", path, body)

    def try_get(self, path: str) -> Any | None:
        """``GET path``'s JSON, or None when the server has no such endpoint (404/405 or not JSON)."""
        response = self._send("GET", path, None)
        if response.status_code in (404, 405):
            return None
        self._check(response, "GET", path)
        try:
            return response.json()
        except ValueError:
            return None

    def stream(self, path: str, body: dict[str, Any]) -> httpx.Response:
        """An open streaming response of ``POST path`` (checked: an error status raises); the caller closes it."""
        request = self._http.build_request("POST", path, json=body)
        try:
            response = self._http.send(request, stream=True)
        except httpx.HTTPError as exc:
            raise self.failure(exc, "POST", path) from None
        if response.status_code >= 400:
            try:
                response.read()
            finally:
                response.close()
            self._check(response, "POST", path)
        return response

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    # -- failures ---------------------------------------------------------------------------------

    def failure(self, exc: Exception, method: str, path: str) -> RemoteError:
        """The one line for an httpx exception of ``method path``."""
        where = f"{self.base_url} ({method} {path})"
        if isinstance(exc, httpx.ConnectError):
            return RemoteError(f"cannot connect to {where}: connection refused or host unreachable "
                               "(is the server running at that address?)")
        if isinstance(exc, httpx.TimeoutException):
            limit = CONNECT_TIMEOUT if isinstance(exc, httpx.ConnectTimeout) else self.timeout
            return RemoteError(f"{where} did not answer within {limit:g} s")
        if isinstance(exc, (httpx.RemoteProtocolError, httpx.ReadError)):
            return RemoteError(f"{where}: the server closed the connection mid-answer ({type(exc).__name__})")
        return RemoteError(f"{where}: {type(exc).__name__}: {_one_line(str(exc))}")

    def _send(self, method: str, path: str, body: dict[str, Any] | None) -> httpx.Response:
        try:
            return self._http.request(method, path, json=body)
        except httpx.HTTPError as exc:
            raise self.failure(exc, method, path) from None

    def _json(self, method: str, path: str, body: dict[str, Any] | None) -> Any:
        response = self._send(method, path, body)
        self._check(response, method, path)
        try:
            return response.json()
        except ValueError:
            raise RemoteError(f"{self.base_url} ({method} {path}) answered {response.status_code} with no JSON: "
                              f"{_one_line(response.text)!r}") from None

    def _check(self, response: httpx.Response, method: str, path: str) -> None:
        code = response.status_code
        if code < 400:
            return
        message, param = _error_message(response)
        where = f"{self.base_url} ({method} {path})"
        if code in (401, 403):
            raise RemoteError(f"{where} refused the request: {code} {message or 'unauthorized'} "
                              "(API key missing or wrong: pass api_key= or %lm_connect --api-key-env VAR)")
        if code == 404 and ("model" in message.lower() or param in ("model", "instance_id")):
            raise ModelNotFoundError(f"{self.base_url}: {message}")
        if code == 404:
            raise RemoteError(f"{where}: 404 not found{': ' + message if message else ''}")
        if code in (400, 422):
            raise ConfigError(f"{self.base_url} rejected the request: {message or code}", key=param)
        raise RemoteError(f"{where} failed: {code}{' ' + message if message else ''}")


def _error_message(response: httpx.Response) -> tuple[str, str | None]:
    """The server's error text (OpenAI ``{error: {message, param}}``, LM Studio's, FastAPI's ``detail``)."""
    try:
        body = response.json()
    except ValueError:
        return _one_line(response.text), None
    err = body.get("error", body) if isinstance(body, dict) else body
    if isinstance(err, dict):
        message = err.get("message") or err.get("detail") or json.dumps(err)
        return _one_line(str(message)), err.get("param")
    return _one_line(str(err)), None


def _one_line(text: str) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= MAX_MESSAGE else text[:MAX_MESSAGE - 1] + "…"


def sse_events(lines: Iterator[str]) -> Iterator[tuple[str | None, str]]:
    """``(event, data)`` pairs of a server-sent-events stream (``event:`` may be absent, as in OpenAI's)."""
    event: str | None = None
    data: list[str] = []
    for line in lines:
        if not line:
            if data:
                yield event, "\n".join(data)
            event, data = None, []
        elif line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].lstrip())
    if data:
        yield event, "\n".join(data)


__all__ = ["CONNECT_TIMEOUT", "READ_TIMEOUT", "Transport", "sse_events"]
