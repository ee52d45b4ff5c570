"""LM Studio's download pair of the REST server (:mod:`lmsext.engine.downloads` does the work, through `client.llm.download_job`).

- ``POST /api/v1/models/download`` ``{model, quantization?}`` → ``{job_id, status, total_size_bytes,
  started_at, ...}``: ``downloading`` (a background thread fetches the file), ``already_downloaded``.
- ``GET /api/v1/models/download/status/{job_id}`` → LM Studio's fields: ``status``
  (``downloading|completed|failed``), ``downloaded_bytes``, ``total_size_bytes``, ``bytes_per_second``,
  ``estimated_completion``, ``started_at``, ``completed_at`` (and ``error`` when it failed).

The jobs are cancelled when the server stops (they join the server's jobs); a cancelled or failed
download leaves nothing in the catalog.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

from pydantic import Field
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..errors import DownloadError
from .errors import ApiError
from .requests import Strict
from .validation import validate

#: How many finished download jobs stay queryable.
KEPT_JOBS = 64


class DownloadRequest(Strict):
    """``POST /api/v1/models/download``."""

    model: str = Field(min_length=1, max_length=512,
                       description="A Hugging Face repository id (owner/repo), owner/repo/file.gguf or a huggingface.co URL.")
    quantization: str | None = Field(None, min_length=1, max_length=64,
                                     description="The quantization to pick, e.g. Q4_K_M (default: the smallest of at least 4 bits).")


def openapi_paths() -> dict[str, Any]:
    """The two routes' OpenAPI path items (merged into ``/openapi.json``)."""
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    status = {"type": "object", "properties": {k: {} for k in (
        "job_id", "status", "total_size_bytes", "downloaded_bytes", "bytes_per_second", "estimated_completion",
        "started_at", "completed_at", "model_key", "error")}}
    ok = {"200": {"description": "The job's state", "content": {"application/json": {"schema": status}}}}
    return {
        "/api/v1/models/download": {"post": {
            "summary": "Download a GGUF model from the Hugging Face hub (a background job)",
            "requestBody": {"required": True, "content": {"application/json": {
                "schema": DownloadRequest.model_json_schema()}}},
            "responses": {**ok, "400": {"description": "Bad request", "content": error},
                          "404": {"description": "Unknown repository or file", "content": error},
                          "502": {"description": "Offline, or the hub failed", "content": error}}}},
        "/api/v1/models/download/status/{job_id}": {"get": {
            "summary": "A download's progress (LM Studio's fields)",
            "parameters": [{"name": "job_id", "in": "path", "required": True, "schema": {"type": "string"}}],
            "responses": {**ok, "404": {"description": "No such job", "content": error}}}},
    }


def _jobs(request: Request) -> "OrderedDict[str, Any]":
    app_state = request.app.state
    if not hasattr(app_state, "lmsext_downloads"):
        app_state.lmsext_downloads = OrderedDict()
    return app_state.lmsext_downloads


def _download_error(exc: DownloadError) -> ApiError:
    return ApiError(502, str(exc), type="download_failed", param="model")


def _start(job: Any, state: Any) -> None:
    """Run ``job`` on a daemon thread, registered with the server's jobs (cancelled when it stops)."""
    state.jobs.add(job)

    def work() -> None:
        try:
            job.run()
        except Exception:  # noqa: BLE001 - the job keeps its status and one-line error for the status route
            pass
        finally:
            state.jobs.discard(job)

    threading.Thread(target=work, name=f"lmsext-download-{job.job_id}", daemon=True).start()


def routes(endpoint: Any, read_json: Any, run: Any, json_response: Any) -> list[Route]:
    """The two routes, wrapped with :mod:`.http`'s ``endpoint`` (errors as JSON), ``read_json``, ``run_blocking`` and ``JSON``."""

    @endpoint
    async def download_model(request: Request) -> Response:
        """POST /api/v1/models/download."""
        state = request.app.state.lmsext
        req = validate(DownloadRequest, await read_json(request, state))
        try:
            job = await run(state.client.llm.download_job, req.model, req.quantization, progress_bar=False)
        except DownloadError as exc:
            raise _download_error(exc) from None
        jobs = _jobs(request)
        jobs[job.job_id] = job
        while len(jobs) > KEPT_JOBS:
            jobs.popitem(last=False)
        if job.status == "downloading":
            _start(job, state)
        return json_response(job.to_rest())

    @endpoint
    async def download_status(request: Request) -> Response:
        """GET /api/v1/models/download/status/{job_id}."""
        job_id = request.path_params["job_id"]
        job = _jobs(request).get(job_id)
        if job is None:
            raise ApiError(404, f"no download job '{job_id}'", type="not_found", param="job_id")
        return json_response(job.to_rest())

    return [Route("/api/v1/models/download", download_model, methods=["POST"]),
            Route("/api/v1/models/download/status/{job_id}", download_status, methods=["GET"])]
