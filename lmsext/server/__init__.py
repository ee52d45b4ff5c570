"""The REST server: LM Studio's ``/api/v1`` and OpenAI-compatible ``/v1`` endpoints, served from the kernel.

>>> import lmsext.server as server
>>> handle = server.serve(port=0)          # loopback, a free port
>>> handle.url
'http://127.0.0.1:40123'
>>> handle.stop()

Starlette + uvicorn run in a daemon thread of the kernel and share its client
(:func:`lmsext.default_client` unless another is passed): models loaded over HTTP are the
notebook's models and vice versa. Only one server runs per process: :func:`serve` while one is
running stops it first. Binding anything but a loopback address requires an API key. The
package's modules: :mod:`.app` (the Starlette app and its route table), :mod:`.lmstudio` (LM Studio's
``/api/v1``), :mod:`.openai` (OpenAI-compatible ``/v1``), :mod:`.downloads`, :mod:`.requests` (the pydantic
request bodies), :mod:`.validation` (bodies → 400 lines), :mod:`.configs` (request → load/prediction config),
:mod:`.openapi`, :mod:`.http` (JSON, errors, worker threads), :mod:`.state` and :mod:`.jobs` (limits, the
per-instance queues and prediction threads), :mod:`.guard` (Host, Origin, API key), :mod:`.chains`.
"""

from __future__ import annotations

import ipaddress
import math
import re
import socket
import threading
import time
from contextlib import contextmanager
from typing import Any, Iterable, Iterator

from ..errors import ConfigError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 1234
STARTUP_TIMEOUT = 15.0

_current: "ServerHandle | None" = None
_current_lock = threading.RLock()


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address.split("%")[0]).is_loopback
    except ValueError:
        return False


def _bind(host: str, port: int) -> socket.socket:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ConfigError(f"host={host!r}: cannot resolve it ({exc.strerror})", key="host", value=host) from None
    family, socktype, proto, _, sockaddr = infos[0]
    sock = socket.socket(family, socktype, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(sockaddr)
    except OSError as exc:
        sock.close()
        raise OSError(exc.errno, f"cannot listen on {host}:{port}: {exc.strerror} — another server may be using "
                                 "the port; pass port=0 for a free one") from None
    return sock


class ServerHandle:
    """A running REST server: ``.url``, ``.host``, ``.port``, ``.running``, ``.stop()``."""

    def __init__(self, host: str, port: int, server: Any, thread: threading.Thread, sock: socket.socket,
                 state: Any) -> None:
        self.host = host
        self.port = port
        self._server = server
        self._thread = thread
        self._socket = sock
        self._state = state
        self._stopped = False

    @property
    def url(self) -> str:
        """``http://host:port`` (IPv6 hosts in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def running(self) -> bool:
        """True until :meth:`stop` (or the server thread died)."""
        return not self._stopped and self._thread.is_alive()

    @property
    def client(self) -> Any:
        """The :class:`~lmsext.Client` whose models the server serves."""
        return self._state.client

    @property
    def requires_api_key(self) -> bool:
        """True when requests need ``Authorization: Bearer <key>``."""
        return self._state.api_key is not None

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server: running predictions are cancelled, connections closed, the thread joined."""
        global _current
        with _current_lock:
            if _current is self:
                _current = None
        if self._stopped:
            return
        self._stopped = True
        loop = self._state.loop
        if loop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(self._state.cancel_all)
            except RuntimeError:
                pass
        self._server.should_exit = True
        self._thread.join(timeout)
        if self._thread.is_alive():
            self._server.force_exit = True
            self._thread.join(5.0)
        try:
            self._socket.close()
        except OSError:
            pass

    @contextmanager
    def _hold_instance(self, instance_id: str) -> Iterator[None]:
        """Hold ``instance_id``'s request queue as a prediction would (tests: provoke a 429)."""
        import asyncio
        loop = self._state.loop
        asyncio.run_coroutine_threadsafe(self._state.gates.acquire(instance_id, None), loop).result(10)
        try:
            yield
        finally:
            loop.call_soon_threadsafe(self._state.gates.release, instance_id)

    def __enter__(self) -> "ServerHandle":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        key = ", API key required" if self.requires_api_key else ""
        return f"<lmsext REST server {self.url} ({state}{key})>"


def _seconds(name: str, value: Any, default: float, minimum_inclusive: bool) -> float:
    """A finite number of seconds (``>= 0`` or ``> 0``), or a one-line ConfigError naming ``name``."""
    if value is None:
        return default
    ok = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value) \
        and (value >= 0 if minimum_inclusive else value > 0)
    if not ok:
        bound = ">= 0" if minimum_inclusive else "> 0"
        raise ConfigError(f"{name}={value!r}: must be a finite number of seconds {bound}", key=name, value=value)
    return float(value)


def _check_api_key(api_key: Any) -> str | None:
    """The key, stripped; a one-line ConfigError when no client could send it in an HTTP header."""
    if api_key is None:
        return None
    if not isinstance(api_key, str) or not api_key.strip():
        raise ConfigError("api_key must be a non-empty string (or None on loopback)", key="api_key")
    key = api_key.strip()
    if not _TOKEN.fullmatch(key):
        raise ConfigError("api_key may hold only printable ASCII without spaces or line breaks (clients send it in "
                          "the 'Authorization: Bearer <key>' header)", key="api_key")
    return key


_TOKEN = re.compile(r"[\x21-\x7e]+")


# serve is ~70 lines: 20 of them are the docstring naming every keyword, the rest checks each one in turn.
def serve(host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, api_key: str | None = None, client: Any = None, *,
          max_body_bytes: int | None = None, queue_timeout: float | None = None,
          default_max_tokens: int | None = None, prediction_timeout: float | None = None,
          stall_timeout: float | None = None, allowed_origins: Iterable[str] | None = None) -> ServerHandle:
    """Start the REST server in a background thread and return its handle.

    ``port=0`` picks a free port (see ``.url``). A non-loopback ``host`` requires ``api_key``;
    with a key every request needs ``Authorization: Bearer <key>``. ``client`` defaults to the
    kernel's shared :func:`~lmsext.default_client`. A server already running in this process is
    stopped first. ``max_body_bytes`` (default 4 MiB) bounds request bodies (413 above);
    ``queue_timeout`` (default 30 s) is how long a prediction waits for a busy model instance
    before 429. Every prediction is bounded: ``default_max_tokens`` (2048) when the request sets no
    token limit, ``prediction_timeout`` (300 s) of wall clock, and ``stall_timeout`` (30 s) for a
    streaming client that stops reading. ``allowed_origins`` adds web origins (``"https://host:port"``)
    to the loopback ones and the Jupyter server's, whose pages may call the server.
    """
    global _current
    try:
        import uvicorn  # noqa: F401
        from . import app, guard, state as server_state
    except ImportError as exc:  # pragma: no cover - declared dependencies
        raise ImportError(f"the REST server needs starlette and uvicorn ({exc}); pip install starlette uvicorn") \
            from None
    if not isinstance(host, str) or not host.strip():
        raise ConfigError(f"host={host!r}: must be a host name or IP address", key="host", value=host)
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ConfigError(f"port={port!r}: must be an integer from 0 to 65535 (0 = a free port)", key="port",
                          value=port)
    api_key = _check_api_key(api_key)
    if max_body_bytes is None:
        max_body_bytes = server_state.MAX_BODY_BYTES
    if isinstance(max_body_bytes, bool) or not isinstance(max_body_bytes, int) or max_body_bytes < 1:
        raise ConfigError(f"max_body_bytes={max_body_bytes!r}: must be an integer >= 1", key="max_body_bytes")
    if default_max_tokens is None:
        default_max_tokens = server_state.DEFAULT_MAX_TOKENS
    if isinstance(default_max_tokens, bool) or not isinstance(default_max_tokens, int) \
            or not 1 <= default_max_tokens <= 2**31 - 1:
        raise ConfigError(f"default_max_tokens={default_max_tokens!r}: must be an integer from 1 to 2,147,483,647",
                          key="default_max_tokens")
    queue_timeout = _seconds("queue_timeout", queue_timeout, server_state.QUEUE_TIMEOUT, True)
    prediction_timeout = _seconds("prediction_timeout", prediction_timeout, server_state.PREDICTION_TIMEOUT, False)
    stall_timeout = _seconds("stall_timeout", stall_timeout, server_state.STALL_TIMEOUT, False)
    try:
        origins = guard.check_allowed_origins(allowed_origins)
    except ValueError as exc:
        raise ConfigError(str(exc), key="allowed_origins") from None
    host = host.strip()
    if client is None:
        from ..client import default_client
        client = default_client()

    with _current_lock:
        if _current is not None:
            _current.stop()
        sock = _bind(host, port)
        address = sock.getsockname()[0]
        loopback = _is_loopback(address)
        if not loopback and api_key is None:
            sock.close()
            raise ConfigError(f"host={host!r} is reachable from other machines: pass an api_key (clients then send "
                              "'Authorization: Bearer <key>'), or bind 127.0.0.1", key="api_key")
        actual_port = sock.getsockname()[1]
        state = server_state.ServerState(client=client, api_key=api_key, loopback=loopback,
                                        max_body_bytes=max_body_bytes, queue_timeout=queue_timeout,
                                        default_max_tokens=default_max_tokens,
                                        prediction_timeout=prediction_timeout, stall_timeout=stall_timeout,
                                        allowed_origins=origins | guard.jupyter_origins(),
                                        bound_host=address if loopback else "")
        handle = _start(host, actual_port, sock, state, app.build_app(state))
        _current = handle
        return handle


def _start(host: str, port: int, sock: socket.socket, state: Any, app: Any) -> ServerHandle:
    import asyncio

    import uvicorn

    class _ThreadServer(uvicorn.Server):
        """uvicorn without signal handlers (they belong to the kernel's main thread)."""

        @contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

        def install_signal_handlers(self) -> None:  # uvicorn < 0.29
            pass

        async def startup(self, sockets: Any = None) -> None:
            state.loop = asyncio.get_running_loop()
            await super().startup(sockets=sockets)

    config = uvicorn.Config(app, log_config=None, log_level="warning", access_log=False, lifespan="off",
                            loop="asyncio", ws="none", timeout_graceful_shutdown=2, server_header=False)
    server = _ThreadServer(config)
    handle_box: dict[str, BaseException] = {}

    def run() -> None:
        try:
            server.run(sockets=[sock])
        except BaseException as exc:  # noqa: BLE001 - reported by serve()
            handle_box["error"] = exc

    host_text = host
    state.url = f"http://{'[' + host_text + ']' if ':' in host_text else host_text}:{port}"
    thread = threading.Thread(target=run, name=f"lmsext-rest-server-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            sock.close()
            error = handle_box.get("error")
            raise RuntimeError(f"the REST server did not start on {host}:{port}"
                               + (f": {type(error).__name__}: {error}" if error else "")) from error
        time.sleep(0.01)
    return ServerHandle(host, port, server, thread, sock, state)


def current_server() -> ServerHandle | None:
    """The running server of this process, if any."""
    with _current_lock:
        if _current is not None and not _current.running:
            return None
        return _current


__all__ = ["ServerHandle", "current_server", "serve"]
