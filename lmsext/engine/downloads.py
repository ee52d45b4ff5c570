"""Model downloads from the Hugging Face hub, as LM Studio does them (``lms get``, ``POST /api/v1/models/download``).

``model`` is a repository id (``owner/repo``), ``owner/repo/file.gguf``, ``owner/repo@Q4_K_M`` or a
``https://huggingface.co/owner/repo[/blob/main/file.gguf]`` URL. :func:`plan_download` lists the
repository's GGUF files (``HfApi.model_info(files_metadata=True)``) and picks the one whose name
matches ``quantization`` or, with none given, the smallest of at least 4 bits (saying which and why);
:class:`DownloadJob` fetches it with ``huggingface_hub.hf_hub_download`` (which resumes a transfer the
connection dropped with a ``Range`` request), with a progress bar (``tqdm.auto``: a widget in a
notebook, a bar in the terminal).

Where files go — LM Studio's folder layout: ``<folder>/<publisher>/<repo>/<file>.gguf``, ``<folder>``
being the first ``LMSEXT_MODELS_PATH`` folder, else ``~/.lmstudio/models`` (LM Studio's own, so LM
Studio sees the file too); the model key is then ``publisher/repo/file`` as in LM Studio. A transfer
runs in ``<folder>/.lmsext-downloads/<pid>-<job id>/`` (hidden: never listed) and the file moves into place only
once it is complete and validated as GGUF, so a cancelled, failed or corrupt download never shows up
in the catalog. ``HF_ENDPOINT`` is read when a download starts (a mirror, or a test hub);
``HF_HUB_OFFLINE`` refuses to download, in one line.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import shutil
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlparse

from ..errors import DownloadError, ModelNotFoundError
from .resolve import hf_endpoint, is_part_file

DEFAULT_FOLDER = "~/.lmstudio/models"
STAGING_DIR = ".lmsext-downloads"
#: Quantizations below 4 bits: never picked unless asked for by name.
_LOW_BITS = re.compile(r"(^|[^A-Z0-9])(I?Q[123]_|IQ[123][A-Z_]|TQ[12]_)", re.IGNORECASE)
_REPO = re.compile(r"[\w.-]+/[\w.-]+")


def download_folder() -> Path:
    """The folder downloads go to: the first ``LMSEXT_MODELS_PATH`` folder, else ``~/.lmstudio/models``."""
    for entry in os.environ.get("LMSEXT_MODELS_PATH", "").split(os.pathsep):
        if entry.strip():
            return Path(entry.strip()).expanduser()
    return Path(DEFAULT_FOLDER).expanduser()


def parse_model_ref(model: str) -> tuple[str, str | None, str | None]:
    """``(repo_id, filename or None, quantization from '@Q' or None)`` for a repo id, ``repo/file.gguf`` or hub URL."""
    if not isinstance(model, str) or not model.strip():
        raise DownloadError(f"model must be a Hugging Face repository id or URL, not {model!r}")
    ref = model.strip()
    quant = None
    if "://" in ref:
        url = urlparse(ref)
        parts = [p for p in url.path.split("/") if p]
        if len(parts) >= 4 and parts[2] in ("blob", "resolve"):
            parts = parts[:2] + parts[4:]  # owner/repo/blob/<revision>/file.gguf
        ref = "/".join(parts)
    if "@" in ref:
        ref, quant = ref.rsplit("@", 1)
    parts = ref.split("/")
    repo_id = "/".join(parts[:2])
    filename = "/".join(parts[2:]) or None
    if not _REPO.fullmatch(repo_id) or ".." in parts or (filename and not filename.lower().endswith(".gguf")):
        raise DownloadError(f"{model!r} is not a Hugging Face repository id (owner/repo), owner/repo/file.gguf "
                            "or https://huggingface.co/owner/repo URL")
    return repo_id, filename, quant or None


@dataclass(frozen=True)
class DownloadPlan:
    """The file a download fetches, where it goes, and why it was chosen."""

    repo_id: str
    filename: str
    size: int | None
    destination: Path
    reason: str
    endpoint: str

    @property
    def model_key(self) -> str:
        """The key the file will have in the catalog (LM Studio's ``publisher/repo/file``)."""
        return f"{self.repo_id}/{self.filename}".removesuffix(".gguf")


def _quant_of(name: str) -> str | None:
    m = re.search(r"(I?Q\d(?:_[A-Z0-9]+)*|TQ\d_\d|BF16|F16|F32)(?=[.-]|$)", Path(name).stem, re.IGNORECASE)
    return m.group(1).upper() if m else None


def pick_file(files: dict[str, int | None], quantization: str | None, repo_id: str) -> tuple[str, str]:
    """``(filename, reason)``: the GGUF matching ``quantization``, else the smallest of at least 4 bits."""
    ggufs = {f: s for f, s in files.items() if f.lower().endswith(".gguf") and not is_part_file(f)
             and "mmproj" not in f.lower()}
    if not ggufs:
        raise ModelNotFoundError(f"Hugging Face repository {repo_id} has no GGUF model files")
    quants = ", ".join(sorted({_quant_of(f) or Path(f).name for f in ggufs}))
    if quantization:
        wanted = quantization.strip().lower()
        matches = [f for f in ggufs if (_quant_of(f) or "").lower() == wanted] or \
                  [f for f in ggufs if wanted in Path(f).name.lower()]
        if not matches:
            raise ModelNotFoundError(f"{repo_id} has no {quantization} GGUF file (it has: {quants})")
        chosen = min(matches, key=lambda f: (ggufs[f] or 0, f))
        return chosen, f"matches quantization {quantization}"
    if len(ggufs) == 1:
        return next(iter(ggufs)), "the repository's only GGUF file"
    sensible = [f for f in ggufs if not _LOW_BITS.search(Path(f).name)] or list(ggufs)
    chosen = min(sensible, key=lambda f: (ggufs[f] if ggufs[f] is not None else float("inf"), f))
    return chosen, f"the smallest of {len(ggufs)} GGUF files with at least 4 bits (has: {quants}; pick one with quantization=)"


def _chain(exc: BaseException | None) -> list[BaseException]:
    out: list[BaseException] = []
    while exc is not None and exc not in out:
        out.append(exc)
        exc = exc.__cause__ or exc.__context__
    return out


def _hub_error(model: str, exc: Exception, endpoint: str) -> Exception:
    """One line for a hub failure: unknown repository or file, offline, or what the hub said."""
    import httpx
    from huggingface_hub.errors import (EntryNotFoundError, HfHubHTTPError, OfflineModeIsEnabled,
                                        RepositoryNotFoundError)
    chain = _chain(exc)
    if any(isinstance(e, OfflineModeIsEnabled) for e in chain):
        return DownloadError(f"cannot download {model}: HF_HUB_OFFLINE is set")
    if any(isinstance(e, (httpx.ConnectError, httpx.TimeoutException, ConnectionError)) for e in chain):
        return DownloadError(f"cannot reach the Hugging Face hub at {endpoint} (offline?): cannot download {model}")
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if isinstance(exc, (RepositoryNotFoundError, EntryNotFoundError)) or status in (401, 404):
        what = "file" if isinstance(exc, EntryNotFoundError) else "repository"
        return ModelNotFoundError(f"Hugging Face {what} not found: {model} ({endpoint} answered {status or 404})")
    if isinstance(exc, HfHubHTTPError):
        first = str(exc).splitlines()[0] if str(exc) else f"HTTP {status}"
        return DownloadError(f"cannot download {model} from {endpoint}: {first}")
    first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return DownloadError(f"cannot download {model} from {endpoint}: {first}")


def _check_online(model: str) -> None:
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        raise DownloadError(f"cannot download {model}: HF_HUB_OFFLINE is set (offline mode)")


def plan_download(model: str, quantization: str | None = None) -> DownloadPlan:
    """Which file of ``model`` a download fetches and where it goes (lists the repository; downloads nothing)."""
    repo_id, filename, at_quant = parse_model_ref(model)
    quantization = quantization or at_quant
    _check_online(model)
    endpoint = hf_endpoint()
    from huggingface_hub import HfApi
    try:
        info = HfApi(endpoint=endpoint).model_info(repo_id, files_metadata=True)
    except Exception as exc:
        raise _hub_error(repo_id, exc, endpoint) from None
    files = {s.rfilename: s.size for s in info.siblings or []}
    if filename is not None:
        if filename not in files:
            raise ModelNotFoundError(f"Hugging Face file not found: {repo_id}/{filename} (the repository has "
                                     f"{', '.join(sorted(f for f in files if f.endswith('.gguf'))) or 'no GGUF files'})")
        reason = "the file named"
    else:
        filename, reason = pick_file(files, quantization, repo_id)
    destination = download_folder() / repo_id / filename
    return DownloadPlan(repo_id, filename, files.get(filename), destination, reason, endpoint)


class DownloadCancelled(DownloadError):
    """The download was cancelled (:meth:`DownloadJob.cancel`); nothing was added to the catalog."""


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


_job_ids = itertools.count(1)


class DownloadJob:
    """One download: its plan, live progress (bytes, speed, ETA), status and result; thread-safe to read.

    ``status``: ``downloading`` → ``completed`` | ``failed`` | ``cancelled``, or ``already_downloaded``
    when the file is already in place (nothing fetched). :meth:`run` does the work (blocking);
    :meth:`cancel` stops it from another thread at the next chunk.
    """

    def __init__(self, plan: DownloadPlan, *, progress_bar: bool = True) -> None:
        self.plan = plan
        self.job_id = f"job_{next(_job_ids)}"
        self.progress_bar = progress_bar
        self.status = "downloading"
        self.downloaded_bytes = 0
        self.total_size_bytes = plan.size
        self.started_at = _now()
        self.completed_at: str | None = None
        self.error: str | None = None
        self.path: Path | None = None
        self._t0 = time.monotonic()
        self._cancel = threading.Event()
        self._done = threading.Event()
        self._lock = threading.Lock()
        if plan.destination.is_file() and (plan.size is None or plan.destination.stat().st_size == plan.size):
            self.status, self.path = "already_downloaded", plan.destination
            self.downloaded_bytes = plan.destination.stat().st_size
            self.completed_at = self.started_at
            self._done.set()

    # -- progress ------------------------------------------------------------------------------

    @property
    def bytes_per_second(self) -> float:
        """Mean transfer speed since the start."""
        elapsed = time.monotonic() - self._t0
        return self.downloaded_bytes / elapsed if elapsed > 0 else 0.0

    @property
    def estimated_completion(self) -> str | None:
        """When the download should be done at the current speed (ISO 8601), None when unknown or done."""
        speed, total = self.bytes_per_second, self.total_size_bytes
        if self.status != "downloading" or not speed or not total:
            return None
        eta = datetime.now(timezone.utc).timestamp() + max(total - self.downloaded_bytes, 0) / speed
        return datetime.fromtimestamp(eta, timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")

    def _advance(self, n: int) -> None:
        if self._cancel.is_set():
            raise DownloadCancelled(f"download of {self.plan.model_key} cancelled; nothing was kept")
        with self._lock:
            self.downloaded_bytes = max(0, self.downloaded_bytes + n)

    def _set_total(self, total: int | None) -> None:
        if total:
            self.total_size_bytes = total

    def to_rest(self) -> dict[str, Any]:
        """LM Studio's download-status fields (``GET /api/v1/models/download/status/{job_id}``)."""
        status = "failed" if self.status == "cancelled" else self.status  # LM Studio has no "cancelled"
        out: dict[str, Any] = {"job_id": self.job_id, "status": status,
                               "total_size_bytes": self.total_size_bytes, "downloaded_bytes": self.downloaded_bytes,
                               "started_at": self.started_at}
        if self.status == "downloading":
            out["bytes_per_second"] = round(self.bytes_per_second, 1)
            out["estimated_completion"] = self.estimated_completion
        if self.completed_at:
            out["completed_at"] = self.completed_at
        if self.status in ("completed", "already_downloaded"):
            out["model_key"] = self.plan.model_key
        if self.error:
            out["error"] = self.error
        return out

    # -- the work ------------------------------------------------------------------------------

    def cancel(self) -> None:
        """Stop the transfer at its next chunk; the partial file is removed and nothing is listed."""
        self._cancel.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the job is over; False on timeout."""
        return self._done.wait(timeout)

    def _tqdm_class(self) -> type:
        from tqdm.auto import tqdm
        job, show = self, self.progress_bar

        class JobProgress(tqdm):  # type: ignore[misc, valid-type]
            """tqdm.auto's bar (a widget in a notebook), feeding the job's counters and its cancel flag."""

            def __init__(self, *args: Any, **kwargs: Any) -> None:
                kwargs["disable"] = not show
                kwargs.pop("name", None)
                super().__init__(*args, **kwargs)
                job._set_total(kwargs.get("total"))
                job._advance(int(kwargs.get("initial") or 0) - job.downloaded_bytes)

            def update(self, n: float | None = 1) -> bool | None:
                job._advance(int(n or 0))
                return super().update(n)

        return JobProgress

    def run(self) -> "DownloadJob":
        """Fetch, validate as GGUF, move into place; raises the one-line error (also kept in :attr:`error`)."""
        if self._done.is_set():
            return self
        plan = self.plan
        staging_root = plan.destination.parents[len(Path(plan.repo_id, plan.filename).parts) - 1] / STAGING_DIR
        staging = staging_root / f"{os.getpid()}-{self.job_id}"  # one per job: downloads never share (or delete) one
        try:
            from huggingface_hub import hf_hub_download
            try:
                staged = Path(hf_hub_download(plan.repo_id, plan.filename, local_dir=staging, endpoint=plan.endpoint,
                                              tqdm_class=self._tqdm_class()))
            except DownloadError:
                raise
            except Exception as exc:
                cancelled = self._find_cancel(exc)
                raise (cancelled or _hub_error(f"{plan.repo_id}/{plan.filename}", exc, plan.endpoint)) from None
            self._validate(staged)
            plan.destination.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staged, plan.destination)
            with self._lock:
                self.path, self.status, self.completed_at = plan.destination, "completed", _now()
                self.downloaded_bytes = plan.destination.stat().st_size
                self.total_size_bytes = self.total_size_bytes or self.downloaded_bytes
            return self
        except DownloadError as exc:
            self.status = "cancelled" if isinstance(exc, DownloadCancelled) else "failed"
            self.error = str(exc)
            raise
        except ModelNotFoundError as exc:
            self.status, self.error = "failed", str(exc)
            raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
            with contextlib.suppress(OSError):
                staging_root.rmdir()  # only when no other download is staging there
            self._done.set()

    @staticmethod
    def _find_cancel(exc: BaseException | None) -> DownloadCancelled | None:
        return next((e for e in _chain(exc) if isinstance(e, DownloadCancelled)), None)

    def _validate(self, staged: Path) -> None:
        from .gguf_info import read_model_info
        try:
            read_model_info(staged)
        except Exception as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise DownloadError(f"{self.plan.repo_id}/{self.plan.filename} is not a valid GGUF model ({first}); "
                                "refused: it was deleted, not listed") from None

    def describe(self) -> str:
        """One line: what was fetched (or found), its size and key."""
        size = self.total_size_bytes
        from ..units import format_bytes
        verb = {"already_downloaded": "already downloaded", "completed": "downloaded"}.get(self.status, self.status)
        return (f"{verb} {self.plan.repo_id}/{self.plan.filename}"
                + (f" ({format_bytes(size)})" if size else "") + f" as model key {self.plan.model_key}")


def start_download(model: str, quantization: str | None = None, *, progress_bar: bool = True,
                   on_plan: Callable[[DownloadPlan], Any] | None = None) -> DownloadJob:
    """Plan ``model``'s download and return its :class:`DownloadJob` (not yet run: call ``run()`` or start a thread)."""
    plan = plan_download(model, quantization)
    if on_plan is not None:
        on_plan(plan)
    return DownloadJob(plan, progress_bar=progress_bar)


__all__ = ["DownloadCancelled", "DownloadJob", "DownloadPlan", "download_folder", "parse_model_ref",
           "pick_file", "plan_download", "start_download"]
