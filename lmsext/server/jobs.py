"""Prediction jobs of the REST server.

A :class:`PredictionJob` drives one ``PredictionStream`` (the public API) in its own thread and
hands its events to the server's event loop; it owns the instance's :class:`~.state.InstanceGates` lock
from start to the end of the engine work, whatever happens to the HTTP request.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any, AsyncIterator, Callable

from starlette.requests import Request
from starlette.responses import StreamingResponse

from .errors import ApiError
from .state import ServerState, parallel_of

QUEUE_EVENTS = 64
"""Fragments a job may have handed to the event loop that the response has not taken yet."""
_POLL = 0.1
"""Seconds between a blocked worker's looks at its cancel flag, and between disconnect checks."""


class PredictionJob:
    """A prediction stream driven by its own thread, its events handed to the event loop.

    Owns the instance gate from :meth:`start` on and releases it when the engine work is over,
    whatever happens to the HTTP request. Every job is bounded: ``state.prediction_timeout`` seconds
    of wall clock, at most :data:`QUEUE_EVENTS` fragments waiting for the response (a client that
    stops reading for ``state.stall_timeout`` seconds cancels it), and :meth:`cancel` when the client
    goes away. :attr:`stopped_by` says which limit ended it (None: the prediction ended by itself).
    """

    def __init__(self, state: ServerState, instance_id: str, make_stream: Callable[[], Any]) -> None:
        self.state = state
        self.instance_id = instance_id
        self._make_stream = make_stream
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue = asyncio.Queue()
        self._room = threading.Semaphore(QUEUE_EVENTS)
        self._cancel = threading.Event()
        self._lock = threading.Lock()
        self._stream: Any = None
        self._finished = False
        self._timer: asyncio.TimerHandle | None = None
        self._watcher: asyncio.Future | None = None
        self.stopped_by: str | None = None
        """``timeLimitReached``, ``clientStalled``, ``clientDisconnected``, ``modelUnloaded`` or ``serverStopped``."""

    def start(self, receive: Any = None) -> None:
        """Start the worker thread (the caller holds the instance gate; the job releases it); with the request's
        ``receive``, the job is cancelled as soon as its client disconnects, prompt processing included."""
        self.state.jobs.add(self)
        self._timer = self._loop.call_later(self.state.prediction_timeout, self.cancel, "timeLimitReached")
        if receive is not None:
            self._watcher = asyncio.ensure_future(self.watch_disconnect(receive))
        threading.Thread(target=self._work, name=f"lmsext-rest-{self.instance_id}", daemon=True).start()

    def _put(self, item: tuple[str, Any]) -> None:
        try:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, item)
        except RuntimeError:  # the loop is closed: the server stopped
            pass

    def _put_fragment(self, fragment: Any) -> bool:
        """Hand a fragment over once there is room; False (the job is cancelled) when the client stalls."""
        deadline = time.monotonic() + self.state.stall_timeout
        while not self._room.acquire(timeout=_POLL):
            if self._cancel.is_set():
                return False
            if time.monotonic() > deadline:
                self.cancel("clientStalled")
                return False
        self._put(("fragment", fragment))
        return True

    def _work(self) -> None:
        stream = None
        try:
            stream = self._make_stream()
            with self._lock:
                self._stream = stream
            if self._cancel.is_set():
                stream.cancel()
            for fragment in stream:
                if self._cancel.is_set() or not self._put_fragment(fragment):
                    break
            if self.stopped_by == "timeLimitReached" or not self._cancel.is_set():
                result = stream.result()
                if self.stopped_by == "timeLimitReached" and result.stats.stop_reason == "userStopped":
                    result.stats.stop_reason = "timeLimitReached"
                self._put(("result", result))
        except BaseException as exc:  # noqa: BLE001 - handed to the event loop
            self._put(("error", exc))
        finally:
            if stream is not None:
                try:
                    stream.close()
                except Exception:  # noqa: BLE001
                    pass
            with self._lock:
                self._finished = True
                self._stream = None
            self._put(("end", None))
            try:
                self._loop.call_soon_threadsafe(self._release)
            except RuntimeError:
                pass

    def _release(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._watcher is not None:
            self._watcher.cancel()
        self.state.jobs.discard(self)
        self.state.gates.release(self.instance_id)

    def cancel(self, reason: str = "clientDisconnected") -> None:
        """Stop the prediction (client gone, a limit reached, server stopping); safe from any thread."""
        with self._lock:
            if self.stopped_by is None and not self._finished:
                self.stopped_by = reason
            self._cancel.set()
            if self._stream is not None and not self._finished:
                self._stream.cancel()

    async def next_event(self) -> tuple[str, Any]:
        """The next ``(kind, value)``: fragment, result, error, end."""
        item = await self._queue.get()
        if item[0] == "fragment":
            self._room.release()
        return item

    async def watch_disconnect(self, receive: Any) -> None:
        """Cancel the job when the client disconnects (run as a task beside the response)."""
        request = Request({"type": "http"}, receive)
        while not self._finished:
            if await request.is_disconnected():
                self.cancel("clientDisconnected")
                return
            await asyncio.sleep(_POLL)


class GatedStream(StreamingResponse):
    """A streaming response that cancels its job when the response ends for any reason."""

    def __init__(self, content: AsyncIterator[str], job: PredictionJob, media_type: str) -> None:
        super().__init__(content, media_type=media_type,
                         headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        self.job = job

    async def __call__(self, scope, receive, send) -> None:  # type: ignore[override]
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.job.cancel()


async def start_job(state: ServerState, llm: Any, make_stream: Callable[[], Any], request: Request
                    ) -> tuple[PredictionJob, tuple[str, Any]]:
    """Wait for the instance, start the prediction (cancelled when ``request``'s client goes) and return its
    first event.

    Errors before the first token (busy, bad grammar, engine failure) raise here, so they become
    proper HTTP status codes instead of a broken stream.
    """
    await state.gates.acquire(llm.identifier, state.queue_timeout, parallel_of(llm))
    try:
        job = PredictionJob(state, llm.identifier, make_stream)
    except BaseException:
        state.gates.release(llm.identifier)
        raise
    job.start(request.receive)
    try:
        first = await job.next_event()
    except BaseException:
        job.cancel()
        raise
    if first[0] == "error":
        raise first[1]
    return job, first


async def job_events(job: PredictionJob, first: tuple[str, Any]) -> AsyncIterator[tuple[str, Any]]:
    """Every event of ``job`` from ``first`` on, up to (not including) ``end``."""
    event = first
    while event[0] != "end":
        yield event
        event = await job.next_event()


def failed(result: Any) -> ApiError | None:
    """The 500 for a result whose prediction failed in the engine, else None."""
    if result.stats.stop_reason == "failed":
        return ApiError(500, f"the prediction failed: {result.stats.error or 'unknown engine error'}",
                        type="prediction_error")
    return None


async def collect(job: PredictionJob, first: tuple[str, Any]) -> Any:
    """The result of a non-streaming job (the job itself stops when its client disconnects)."""
    result, error = None, None
    async for kind, value in job_events(job, first):
        if kind == "result":
            result = value
        elif kind == "error":
            error = value
    if error is not None:
        raise error
    if result is None:
        if job.stopped_by == "modelUnloaded":
            raise ApiError(409, f"model instance '{job.instance_id}' was unloaded during the prediction",
                           type="model_unloaded", param="model")
        raise ApiError(499 if job.stopped_by == "clientDisconnected" else 503,
                       f"the prediction was stopped ({job.stopped_by or 'no result'})", type="prediction_stopped")
    problem = failed(result)
    if problem is not None:
        raise problem
    return result
