"""A loopback stand-in for the few Hugging Face hub endpoints lmsext's downloads use (HF_ENDPOINT points here).

- ``GET /api/models/{owner}/{repo}[/revision/{rev}]`` — the repository's info with ``siblings`` (name, size);
- ``GET /api/models/{owner}/{repo}/tree/{rev}`` — its file list (``HfApi.list_repo_files``, one page);
- ``HEAD``/``GET /{owner}/{repo}/resolve/{rev}/{file}`` — the file, with the headers huggingface_hub
  needs (``X-Repo-Commit``, ``ETag``, ``Content-Length``) and ``Range`` support (206 + ``Content-Range``).

Unknown repositories and files are 404 with the hub's ``X-Error-Code``. Knobs per file: ``drop_at``
(the first GET closes the connection after that many bytes: an interrupted transfer) and ``delay``
(seconds per 16 KiB chunk: a slow transfer to cancel). Every request is recorded in :attr:`HubServer.requests`.
Serves 127.0.0.1 only, on a free port, from a daemon thread; use it as a context manager.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CHUNK = 16 * 1024
COMMIT = "0123456789abcdef0123456789abcdef01234567"


@dataclass
class HubFile:
    """A file the test hub serves."""

    data: bytes
    drop_at: int | None = None
    delay: float = 0.0
    dropped: bool = False

    @property
    def etag(self) -> str:
        """The file's sha256, as the hub's ETag for LFS files."""
        return hashlib.sha256(self.data).hexdigest()


@dataclass
class HubServer:
    """The loopback hub: ``repos[repo_id][filename] = HubFile``; ``url`` once started."""

    repos: dict[str, dict[str, HubFile]] = field(default_factory=dict)
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)
    url: str = ""

    def add(self, repo_id: str, filename: str, data: bytes, **knobs) -> HubFile:
        """Serve ``data`` as ``repo_id/filename``."""
        f = HubFile(data, **knobs)
        self.repos.setdefault(repo_id, {})[filename] = f
        return f

    def ranges(self, filename: str) -> list[str]:
        """The Range headers of the GET requests for ``filename``."""
        return [r for m, p, r in self.requests if m == "GET" and p.endswith("/" + filename) and r]

    def __enter__(self) -> "HubServer":
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # quiet
                pass

            def do_HEAD(self) -> None:
                self._serve(head=True)

            def do_GET(self) -> None:
                self._serve(head=False)

            def _send(self, status: int, headers: dict[str, str], body: bytes = b"", head: bool = False) -> None:
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                if body and not head:
                    self.wfile.write(body)

            def _not_found(self, code: str, head: bool) -> None:
                body = json.dumps({"error": f"{code}"}).encode()
                self._send(404, {"X-Error-Code": code, "X-Error-Message": code, "Content-Type": "application/json",
                                 "Content-Length": str(len(body))}, body, head)

            def _serve(self, head: bool) -> None:
                path = self.path.split("?", 1)[0]
                hub.requests.append((self.command, path, self.headers.get("Range")))
                m = re.fullmatch(r"/api/models/([^/]+/[^/]+)/tree/[^/]+", path)
                if m:  # HfApi.list_repo_files / list_repo_tree (one page)
                    repo = hub.repos.get(m.group(1))
                    if repo is None:
                        return self._not_found("RepoNotFound", head)
                    body = json.dumps([{"type": "file", "path": n, "size": len(f.data), "oid": f.etag[:40]}
                                       for n, f in repo.items()]).encode()
                    return self._send(200, {"Content-Type": "application/json", "Content-Length": str(len(body))},
                                      body, head)
                m = re.fullmatch(r"/api/models/([^/]+/[^/]+)(?:/revision/[^/]+)?", path)
                if m:
                    repo = hub.repos.get(m.group(1))
                    if repo is None:
                        return self._not_found("RepoNotFound", head)
                    body = json.dumps({"id": m.group(1), "modelId": m.group(1), "sha": COMMIT, "private": False,
                                       "siblings": [{"rfilename": n, "size": len(f.data)} for n, f in repo.items()]
                                       }).encode()
                    return self._send(200, {"Content-Type": "application/json", "Content-Length": str(len(body))},
                                      body, head)
                m = re.fullmatch(r"/([^/]+/[^/]+)/resolve/[^/]+/(.+)", path)
                repo = hub.repos.get(m.group(1)) if m else None
                if repo is None:
                    return self._not_found("RepoNotFound", head)
                f = repo.get(m.group(2))
                if f is None:
                    return self._not_found("EntryNotFound", head)
                start, status = 0, 200
                rng = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range") or "")
                headers = {"X-Repo-Commit": COMMIT, "ETag": f'"{f.etag}"', "Accept-Ranges": "bytes",
                           "Content-Type": "application/octet-stream"}
                if rng and not head:
                    start, status = int(rng.group(1)), 206
                    headers["Content-Range"] = f"bytes {start}-{len(f.data) - 1}/{len(f.data)}"
                headers["Content-Length"] = str(len(f.data) - start)
                self._send(status, headers, head=True)
                if head:
                    return
                drop = f.drop_at if f.drop_at is not None and not f.dropped else None
                pos = start
                while pos < len(f.data):
                    end = min(pos + CHUNK, len(f.data))
                    if drop is not None and end > drop:
                        self.wfile.write(f.data[pos:drop])
                        self.wfile.flush()
                        f.dropped = True
                        self.close_connection = True
                        self.connection.shutdown(2)  # the transfer breaks half way
                        return
                    try:
                        self.wfile.write(f.data[pos:end])
                        self.wfile.flush()
                    except (BrokenPipeError, ConnectionResetError):
                        return
                    pos = end
                    if f.delay:
                        time.sleep(f.delay)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="test-hf-hub", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
