"""What the REST server's handlers share (:class:`ServerState`), its default limits, and the per-instance
request queues (:class:`InstanceGates`)."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from .chains import StoredChat
from .errors import ApiError

MAX_BODY_BYTES = 4 * 1024 * 1024
"""Default limit of a request body (413 above it)."""
QUEUE_TIMEOUT = 30.0
"""Default seconds a prediction waits for its model instance before 429."""
DEFAULT_MAX_TOKENS = 2048
"""Default token limit of a prediction whose request sets none (or ``null``)."""
PREDICTION_TIMEOUT = 300.0
"""Default wall-clock limit of one prediction, in seconds (then it ends with ``timeLimitReached``)."""
STALL_TIMEOUT = 30.0
"""Default seconds a stream may wait for a client that reads nothing before it is cancelled."""
STORED_RESPONSES = 256
"""How many ``/api/v1/chat`` exchanges are kept for ``previous_response_id``."""

class InstanceGates:
    """One FIFO gate per model instance id, with as many places as the instance's ``maxParallelPredictions``
    (its scheduler decodes that many predictions together); lives on the server's event loop."""

    def __init__(self) -> None:
        self._locks: dict[str, asyncio.Semaphore] = {}
        self._slots: dict[str, int] = {}
        self._held: dict[str, int] = {}

    def _gate(self, instance_id: str, slots: int) -> asyncio.Semaphore:
        gate = self._locks.get(instance_id)
        if gate is None or (self._slots[instance_id] != slots and not self._held[instance_id]):
            gate = self._locks[instance_id] = asyncio.Semaphore(slots)  # a reload may change the count
            self._slots[instance_id] = slots
            self._held[instance_id] = 0
        return gate

    async def acquire(self, instance_id: str, timeout: float | None, slots: int = 1) -> None:
        """Wait for a place on ``instance_id`` (``timeout`` None = forever); 429 when it stays busy."""
        lock = self._gate(instance_id, max(int(slots), 1))
        if not lock.locked():
            await lock.acquire()  # free: returns without suspending
        elif timeout is not None and timeout <= 0:
            raise self._busy(instance_id, timeout)
        else:
            try:
                await asyncio.wait_for(lock.acquire(), timeout)
            except asyncio.TimeoutError:
                raise self._busy(instance_id, timeout) from None
        self._held[instance_id] += 1

    def release(self, instance_id: str) -> None:
        """Give back a place on ``instance_id`` (called on the event loop)."""
        lock = self._locks.get(instance_id)
        if lock is not None and self._held[instance_id] > 0:
            self._held[instance_id] -= 1
            lock.release()

    def busy(self, instance_id: str) -> bool:
        """True while predictions hold every place of ``instance_id``."""
        lock = self._locks.get(instance_id)
        return bool(lock and lock.locked())

    def in_use(self, instance_id: str) -> int:
        """How many places of ``instance_id`` are held now."""
        return self._held.get(instance_id, 0)

    @staticmethod
    def _busy(instance_id: str, timeout: float | None) -> ApiError:
        return ApiError(429, f"model instance '{instance_id}' stayed busy with other requests for {timeout:g} s; "
                        "retry later", type="model_busy", param="model", headers={"Retry-After": "1"})


def parallel_of(llm: Any) -> int:
    """The instance's ``maxParallelPredictions`` (1 for an engine that does not report it)."""
    try:
        return max(int(llm.get_load_config().get("max_parallel_predictions") or 1), 1)
    except Exception:
        return 1


@dataclass
class ServerState:
    """What the handlers share: the client, the limits, the queues and the jobs in flight."""

    client: Any
    api_key: str | None = None
    loopback: bool = True
    max_body_bytes: int = MAX_BODY_BYTES
    queue_timeout: float | None = QUEUE_TIMEOUT
    default_max_tokens: int = DEFAULT_MAX_TOKENS
    prediction_timeout: float = PREDICTION_TIMEOUT
    stall_timeout: float = STALL_TIMEOUT
    allowed_origins: frozenset = frozenset()
    bound_host: str = ""
    url: str | None = None
    gates: InstanceGates = field(default_factory=InstanceGates)
    responses: "OrderedDict[str, StoredChat]" = field(default_factory=OrderedDict)
    jobs: set = field(default_factory=set)
    loop: asyncio.AbstractEventLoop | None = None

    def cancel_all(self) -> None:
        """Stop every streaming prediction (the server is shutting down)."""
        for job in list(self.jobs):
            job.cancel("serverStopped")

