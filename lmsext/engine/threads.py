"""CPU thread counts: what the machine offers, and the decode thread count adapted while a prediction runs.

ggml's threads meet at a barrier after every operation of a token's graph and spin while they wait.
When another process holds one of the cores (the browser showing the notebook, a build, a second
kernel), the thread that lost its core stalls every barrier, and a 2-thread decode on a 2-core
machine can run 2-15× slower than one thread. No fixed count is right both on a quiet and on a busy
machine, so :class:`DecodeThreads` measures: it times every decode step (``llama_decode``), runs a
few probe steps at the other thread count now and then, and keeps whichever is faster. A probe step
that is much slower than the current median ends its probe at once, and probes that lose are spaced
further apart, so a lost probe costs little. A fixed ``cpuThreads`` turns the adaptation off.
"""

from __future__ import annotations

import os
import time
from collections import deque
from statistics import median
from typing import Callable

#: Decode steps per probe at another thread count; the first steps of a prediction probe too.
PROBE_STEPS = 3
#: Steps between probes: starts here, doubles after every probe that loses (up to MAX_INTERVAL).
FIRST_INTERVAL = 16
MAX_INTERVAL = 256
#: A probe step this many times slower than the current median ends the probe at once.
ABORT_FACTOR = 1.6
#: The other count wins when its median step is at most this fraction of the current one.
WIN_FACTOR = 0.92
#: A step this many times the current median counts as a sudden slowdown (a process took a core):
#: the next step starts a probe.
SLOWDOWN_FACTOR = 3.0
#: Recent step times kept per thread count.
WINDOW = 8


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask; ``os.cpu_count()`` where that is unknown)."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return max(os.cpu_count() or 1, 1)


def physical_cores() -> int:
    """Physical cores available to this process: ``psutil.cpu_count(logical=False)``, capped by the
    CPUs in its affinity mask (hyper-threads add little to ggml's matrix work and stall its barriers)."""
    try:
        import psutil

        cores = psutil.cpu_count(logical=False) or 0
    except ImportError:  # pragma: no cover - psutil is a dependency
        cores = 0
    return max(1, min(cores or available_cpus(), available_cpus()))


class DecodeThreads:
    """Chooses the decode thread count per step between ``n_max`` and fewer, from measured step times.

    ``set_threads(n)`` applies a count (``llama_set_n_threads`` with the batch count unchanged).
    Call :meth:`step_threads` before each decode step and :meth:`record` with its duration after.
    With ``n_max == 1`` or ``adaptive=False`` it always answers ``n_max``.
    """

    def __init__(self, n_max: int, set_threads: Callable[[int], None], *, adaptive: bool = True) -> None:
        self.n_max = max(int(n_max), 1)
        self.adaptive = adaptive and self.n_max > 1
        # the alternatives: one fewer thread (a process holds one core), and one thread
        self.choices = sorted({self.n_max, max(self.n_max - 1, 1), 1}, reverse=True)
        self.current = self.n_max
        self._set = set_threads
        self._applied: int | None = None
        self.times: dict[int, deque[float]] = {n: deque(maxlen=WINDOW) for n in self.choices}
        self.interval = FIRST_INTERVAL
        self.until_probe = 0 if self.adaptive else -1
        self.probe: int | None = None
        self.probe_left = 0
        self.switches = 0
        self.steps: dict[int, int] = {n: 0 for n in self.choices}
        self._t0 = 0.0

    def bind(self, set_threads: Callable[[int], None]) -> "DecodeThreads":
        """Use ``set_threads`` from now on (a new prediction: the context's count is unknown again)."""
        self._set = set_threads
        self._applied = None
        return self

    def _apply(self, n: int) -> None:
        if n != self._applied:
            self._set(n)
            self._applied = n

    def step_threads(self) -> int:
        """The thread count for the next decode step (applied); starts the step's clock."""
        if self.adaptive and self.probe is None and self.until_probe <= 0 and self.times[self.current]:
            self.probe = self._next_probe()
            self.probe_left = PROBE_STEPS
        n = self.probe if self.probe is not None else self.current
        self._apply(n)
        self._t0 = time.perf_counter()
        return n

    def _next_probe(self) -> int:
        others = [n for n in self.choices if n != self.current]
        # the count with the least recent evidence first (ties: fewer threads)
        return min(others, key=lambda n: (len(self.times[n]), n))

    def record(self, seconds: float | None = None) -> None:
        """Record the step that :meth:`step_threads` started (``seconds``: its duration, else measured)."""
        dt = time.perf_counter() - self._t0 if seconds is None else seconds
        n = self.probe if self.probe is not None else self.current
        self.steps[n] = self.steps.get(n, 0) + 1
        if not self.adaptive:
            return
        cur = self.times[self.current]
        ref = median(cur) if cur else None
        self.times[n].append(dt)
        if self.probe is None:
            self.until_probe -= 1
            if ref is not None and len(cur) >= 3 and dt > SLOWDOWN_FACTOR * ref:
                self.until_probe = 0  # something took a core: check the other counts now
            return
        self.probe_left -= 1
        if ref is not None and dt > ABORT_FACTOR * ref:
            self._end_probe(won=False)
        elif self.probe_left <= 0:
            probe_med = median(list(self.times[n])[-PROBE_STEPS:])
            self._end_probe(won=ref is None or probe_med < WIN_FACTOR * ref)

    def _end_probe(self, won: bool) -> None:
        assert self.probe is not None
        if won:
            self.current = self.probe
            self.switches += 1
            self.interval = FIRST_INTERVAL
        else:
            self.interval = min(self.interval * 2, MAX_INTERVAL)
        self.until_probe = self.interval
        self.probe = None

    def summary(self) -> dict[str, object]:
        """Steps decoded at each thread count, the count in use at the end, and the switches made."""
        return {"max": self.n_max, "adaptive": self.adaptive, "final": self.current, "switches": self.switches,
                "steps": {n: c for n, c in self.steps.items() if c}}


__all__ = ["DecodeThreads", "available_cpus", "physical_cores"]
