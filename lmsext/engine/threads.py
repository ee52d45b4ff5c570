"""CPU thread counts: what the machine offers, and the decode thread count adapted while a prediction runs.

ggml's threads meet at a barrier after every operation of a token's graph. When another process
holds one of the cores (the browser showing the notebook, a build, a second kernel), the thread
that lost its core stalls every barrier; with libgomp's spinning barriers a 2-thread decode on a
2-core machine ran 10-50× slower than one thread (lmsext makes them sleep, see :mod:`lmsext.omp`,
which removes most of that). No fixed count is right both on a quiet and on a busy machine, so :class:`DecodeThreads` measures: it times every decode step (``llama_decode``), runs a
few probe steps at another thread count now and then, and keeps whichever is faster. A probe step
that is much slower than the current median ends its probe at once, and probes that lose are spaced
further apart. Where barriers spin, a probe towards *more* threads only runs when the CPUs look
free right now (:func:`idle_cpus`: the kernel's count of runnable tasks): one such step under
contention costs ten 1-thread steps. Prompt batches then take their count from :func:`idle_cpus`
too (:func:`batch_threads`). A fixed ``cpuThreads``
turns all of this off.
"""

from __future__ import annotations

import os
import time
from collections import deque
from statistics import median
from typing import Callable

from ..omp import WAIT_POLICY

#: ggml's threads spin at barriers (libgomp's active wait policy): a step with more threads than free
#: CPUs then costs many one-thread steps, so probes towards more threads and prompt batches look at the
#: run queue first. With the passive policy (lmsext's default) such a step costs little: step times decide.
SPINNING = WAIT_POLICY != "passive"

#: Decode steps per probe at another thread count; the first steps of a prediction probe too.
PROBE_STEPS = 3
#: Steps between probes: starts here, doubles after every probe that loses (up to MAX_INTERVAL).
FIRST_INTERVAL = 16
MAX_INTERVAL = 512
#: A probe step this many times slower than the current median ends the probe at once.
ABORT_FACTOR = 1.6
#: The other count wins when its median step is at most this fraction of the current one.
WIN_FACTOR = 0.92
#: Two steps in a row this many times the current median count as a sudden slowdown (a process took
#: a core): the next step starts a probe.
SLOWDOWN_FACTOR = 3.0
#: Recent step times kept per thread count.
WINDOW = 8
#: Prompts this long look at the run queue three times (~1 ms); shorter ones once (~30 µs).
BATCH_SAMPLE_MIN_TOKENS = 32
_LOADAVG = "/proc/loadavg"  # read directly: its runnable-task count has no psutil equivalent (getloadavg is averages)


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


def runnable_others() -> int | None:
    """Tasks other than the caller that are runnable right now, machine-wide (``/proc/loadavg``'s
    running count minus the caller), or None where the kernel does not say."""
    try:
        with open(_LOADAVG) as f:
            running = int(f.read().split()[3].split("/")[0])
    except (OSError, ValueError, IndexError):
        return None
    return max(running - 1, 0)


def idle_cpus(samples: int = 1, gap_s: float = 0.0005) -> int | None:
    """CPUs of this process that no other runnable task wants right now (at least 1), or None if
    unknown. ``samples`` > 1 takes the least busy of several looks (a busy process shows in every one;
    short bursts of other tasks do not)."""
    seen = []
    for i in range(samples):
        if i:
            time.sleep(gap_s)
        others = runnable_others()
        if others is None:
            return None
        seen.append(others)
    return max(available_cpus() - min(seen), 1)


def batch_threads(pool: int, n_tokens: int) -> int:
    """Threads for a prompt of ``n_tokens``: the pool, or fewer when other processes hold CPUs now
    (one look at the run queue for short prompts, the least busy of three for long ones)."""
    if pool <= 1 or n_tokens <= 1 or not SPINNING:
        return pool
    idle = idle_cpus(samples=3 if n_tokens >= BATCH_SAMPLE_MIN_TOKENS else 1)
    return pool if idle is None else min(pool, idle)


class DecodeThreads:
    """Chooses the decode thread count per step between ``n_max`` and fewer, from measured step times.

    ``set_threads(n)`` applies a count (``llama_set_n_threads`` with the batch count unchanged).
    Call :meth:`step_threads` before each decode step and :meth:`record` with its duration after.
    With ``n_max == 1`` or ``adaptive=False`` it always answers ``n_max``.
    """

    def __init__(self, n_max: int, set_threads: Callable[[int], None], *, adaptive: bool = True,
                 idle: Callable[[], int | None] = idle_cpus, spinning: bool | None = None) -> None:
        self.n_max = max(int(n_max), 1)
        self.adaptive = adaptive and self.n_max > 1
        # the alternatives: one fewer thread (a process holds one core), and one thread
        self.choices = sorted({self.n_max, max(self.n_max - 1, 1), 1}, reverse=True)
        self._idle = idle
        self.spinning = SPINNING if spinning is None else spinning
        self.current = self.n_max
        if self.adaptive and self.spinning:
            free = idle()
            if free is not None:
                self.current = min(self.n_max, free)
        self._set = set_threads
        self._applied: int | None = None
        self.times: dict[int, deque[float]] = {n: deque(maxlen=WINDOW) for n in self.choices}
        self.interval = FIRST_INTERVAL
        self.until_probe = 0 if self.adaptive else -1
        self.probe: int | None = None
        self.probe_left = 0
        self.switches = 0
        self._slow = 0
        #: the prompt-batch count of the current prediction (set by generate.thread_plan)
        self.batch = self.n_max
        self.steps: dict[int, int] = {n: 0 for n in self.choices}
        self._t0 = 0.0

    def bind(self, set_threads: Callable[[int], None],
             idle: Callable[[], int | None] | None = None) -> "DecodeThreads":
        """Use ``set_threads`` (and ``idle``, if given) from now on (a new prediction: the context's
        count is unknown again)."""
        self._set = set_threads
        if idle is not None:
            self._idle = idle
        self.steps = {n: 0 for n in self.choices}  # per prediction; what was learned stays
        self.switches = 0
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
            if self.probe is None:  # only more threads to try, and the CPUs are busy: later
                self.until_probe = self.interval
            self.probe_left = PROBE_STEPS
        n = self.probe if self.probe is not None else self.current
        self._apply(n)
        self._t0 = time.perf_counter()
        return n

    def _next_probe(self) -> int | None:
        others = [n for n in self.choices if n < self.current]
        up = [n for n in self.choices if n > self.current]
        if up and not self.spinning:
            others += up
        elif up:
            free = self._idle()
            others += [n for n in up if free is None or n <= free]
        if not others:
            return None
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
        # the current count's last few steps: after a change in the machine, older ones mislead
        ref = median(list(cur)[-PROBE_STEPS:]) if cur else None
        self.times[n].append(dt)
        if self.probe is None:
            self.until_probe -= 1
            slow = ref is not None and len(cur) >= PROBE_STEPS and dt > SLOWDOWN_FACTOR * median(cur)
            self._slow = self._slow + 1 if slow else 0
            if self._slow >= 2:  # two slow steps in a row: something took a core, check the other counts now
                self.until_probe = 0
                self._slow = 0
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
        """Steps decoded at each thread count, the count in use at the end, and the switches made (since
        the last :meth:`bind`: one prediction)."""
        return {"max": self.n_max, "adaptive": self.adaptive, "final": self.current, "switches": self.switches,
                "steps": {n: c for n, c in self.steps.items() if c}}


__all__ = ["DecodeThreads", "available_cpus", "batch_threads", "idle_cpus", "physical_cores", "runnable_others"]
