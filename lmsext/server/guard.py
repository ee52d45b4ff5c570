"""The REST server's front door: Host, Origin, Content-Type and API-key checks (an ASGI middleware).

A web page the user visits can send requests to ``127.0.0.1`` without the user knowing: a
``no-cors`` POST with a ``text/plain`` body needs no CORS preflight, and DNS rebinding makes a page's
own host name point at the loopback address. So, before any route runs:

- ``Host`` must be a loopback name when the server has no API key (DNS rebinding): ``localhost``,
  ``127.0.0.1``, ``[::1]`` or the address the server is bound to, with an optional port;
- a request that carries ``Origin`` (every cross-origin browser POST does) must come from an allowed
  origin: a loopback origin (``http://localhost:*``, ``http://127.0.0.1:*``, ``http://[::1]:*``), the
  origin of a Jupyter server running for this user, or one passed to ``serve(allowed_origins=...)``;
- every POST must say ``Content-Type: application/json`` (which a page can only send after a CORS
  preflight, and this server answers none);
- with an API key, ``Authorization: Bearer <key>``.
"""

from __future__ import annotations

import hmac
import ipaddress
from typing import Any, Callable, Iterable
from urllib.parse import urlsplit

from starlette.datastructures import Headers

from .errors import ApiError

_LOOPBACK_NAMES = ("localhost", "localhost.")
_DEFAULT_PORTS = {"http": 80, "https": 443}
LOOPBACK_HOSTS = ("localhost", "localhost.", "127.0.0.1", "[::1]")
"""The ``Host`` names a server without an API key answers to (plus the address it is bound to)."""


def is_loopback_host(host: str) -> bool:
    """True for ``localhost`` and loopback IP addresses (``127.0.0.0/8``, ``::1``)."""
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class HostCheck:
    """Starlette's :class:`TrustedHostMiddleware` used as a yes/no check, so that a refusal is answered in
    this server's JSON error format. Starlette >= 1.7 parses the whole header (``[::1]:1234`` is the IPv6
    loopback, ``[::1]evil.com`` is malformed and refused); earlier versions cut it at the first ``:``."""

    def __init__(self, hosts: Iterable[str]) -> None:
        from starlette.middleware.trustedhost import TrustedHostMiddleware
        self._check = TrustedHostMiddleware(self._passed, allowed_hosts=list(hosts), www_redirect=False)

    @staticmethod
    async def _passed(scope, receive, send) -> None:
        scope["lmsext.host_ok"] = True

    async def allows(self, scope: dict[str, Any]) -> bool:
        """True when ``scope``'s Host header names one of the hosts."""
        probe = dict(scope)

        async def discard(message: Any) -> None:
            pass

        await self._check(probe, _never, discard)
        return probe.get("lmsext.host_ok", False)


async def _never() -> dict[str, Any]:  # pragma: no cover - the check reads no body
    return {"type": "http.disconnect"}


def normalize_origin(origin: str) -> str | None:
    """``scheme://host[:port]`` in lower case, the scheme's default port left out; None if not an origin."""
    try:
        parts = urlsplit(origin.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme.lower() not in _DEFAULT_PORTS or not parts.hostname or parts.path not in ("", "/") \
            or parts.query or parts.fragment or parts.username or parts.password:
        return None
    scheme, host = parts.scheme.lower(), parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}" + ("" if port in (None, _DEFAULT_PORTS[scheme]) else f":{port}")


def origin_is_loopback(origin: str) -> bool:
    """True for an ``http(s)`` origin on a loopback host (any port)."""
    normal = normalize_origin(origin)
    if normal is None:
        return False
    host = urlsplit(normal).hostname or ""
    return is_loopback_host(host)


def jupyter_origins() -> set[str]:
    """The origins of the Jupyter servers running for this user (their runtime files), best effort."""
    origins: set[str] = set()
    try:
        from jupyter_server.serverapp import list_running_servers
        servers = list(list_running_servers())
    except Exception:  # noqa: BLE001 - no Jupyter server package, or unreadable runtime files
        return origins
    for info in servers:
        url = info.get("url") if isinstance(info, dict) else None
        normal = normalize_origin(urlsplit(url)._replace(path="", query="", fragment="").geturl()) \
            if isinstance(url, str) else None
        if normal is not None:
            origins.add(normal)
    return origins


def check_allowed_origins(values: Iterable[str] | None) -> frozenset[str]:
    """``serve(allowed_origins=...)`` normalised; a ValueError naming the first entry that is not an origin."""
    if values is None:
        return frozenset()
    if isinstance(values, str):
        values = [values]
    out = set()
    for value in values:
        normal = normalize_origin(value) if isinstance(value, str) else None
        if normal is None:
            raise ValueError(f"allowed_origins: {value!r} is not an origin such as 'https://example.org:8888' "
                             "(scheme, host and optional port only)")
        out.add(normal)
    return frozenset(out)


class Guard:
    """ASGI middleware that refuses, with one JSON line, what a web page or a stranger could send."""

    def __init__(self, app: Any, state: Any, respond: Callable[[ApiError], Any]) -> None:
        self.app = app
        self.state = state
        self.respond = respond
        bound = state.bound_host.split("%")[0]
        bound = f"[{bound}]" if ":" in bound else bound
        self.hosts = HostCheck([*LOOPBACK_HOSTS, *([bound] if bound else [])])

    async def _problem(self, scope: dict[str, Any]) -> ApiError | None:
        headers = Headers(scope=scope)
        state = self.state
        if state.loopback and state.api_key is None and not await self.hosts.allows(scope):
            return ApiError(403, "this server only answers requests addressed to localhost (Host header)",
                            type="forbidden")
        origin = headers.get("origin")
        if origin is not None and not self._origin_allowed(origin):
            return ApiError(403, f"requests from web pages at {origin[:100]!r} are not allowed (allowed: loopback "
                            "origins, the Jupyter server's own, and serve(allowed_origins=...))", type="forbidden")
        if state.api_key is not None:
            scheme, _, token = headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode("utf-8", "replace"),
                                                                      state.api_key.encode()):
                return ApiError(401, "missing or wrong API key: send 'Authorization: Bearer <key>'",
                                type="authentication_error", headers={"WWW-Authenticate": "Bearer"})
        if scope["method"] == "POST":
            media = headers.get("content-type", "").split(";")[0].strip().lower()
            if media != "application/json":
                shown = repr(media[:60]) if media else "none"
                return ApiError(415, f"Content-Type must be application/json (got {shown})", type="unsupported_media_type")
        return None

    def _origin_allowed(self, origin: str) -> bool:
        if origin_is_loopback(origin):
            return True
        normal = normalize_origin(origin)
        return normal is not None and normal in self.state.allowed_origins

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            problem = await self._problem(scope)
            if problem is not None:
                await self.respond(problem)(scope, receive, send)
                return
        await self.app(scope, receive, send)
