"""Many predictions on one model at once: ``LLM.respond_many`` / ``LLM.complete_many``.

:func:`run_many` starts up to ``parallel`` predictions at a time (the model's ``maxParallelPredictions``:
the engine's scheduler decodes them in one batch), each on a worker thread, and returns the results in
input order as :class:`ManyResults` with a progress bar (``tqdm.auto``: a widget in a notebook) and a
summary (aggregate tokens per second). Ctrl-C stops the running predictions (their partial results are
kept, stop reason ``userStopped``); the ones not started stay ``None``.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from .results import PredictionResult, PredictionStream


@dataclass(frozen=True)
class ManySummary:
    """What a ``*_many`` call did: predictions, tokens, wall time and the aggregate speed."""

    predictions: int
    completed: int
    predicted_tokens: int
    prompt_tokens: int
    wall_seconds: float
    parallel: int

    @property
    def tokens_per_second(self) -> float:
        """Generated tokens of all predictions per second of wall time."""
        return self.predicted_tokens / self.wall_seconds if self.wall_seconds > 0 else 0.0

    def __str__(self) -> str:
        return (f"{self.completed}/{self.predictions} predictions, {self.predicted_tokens} tokens in "
                f"{self.wall_seconds:.2f} s: {self.tokens_per_second:.1f} tok/s aggregate "
                f"({self.parallel} at a time)")


class ManyResults(list):
    """The results of a ``*_many`` call in input order (``None`` for one never started), with :attr:`summary`."""

    summary: ManySummary

    def __repr__(self) -> str:
        return f"<ManyResults {self.summary}>"

    def _repr_pretty_(self, p, cycle) -> None:
        p.text(repr(self))


def run_many(start: Callable[[Any], PredictionStream], items: Sequence[Any], *, parallel: int,
             progress: bool = True, description: str = "predictions") -> ManyResults:
    """Run ``start(item).result()`` for every item, ``parallel`` at a time; results in input order."""
    items = list(items)
    parallel = max(1, min(int(parallel), len(items) or 1))
    results: list[PredictionResult | None] = [None] * len(items)
    streams: dict[int, PredictionStream] = {}
    lock = threading.Lock()
    stopping = threading.Event()

    def one(i: int) -> PredictionResult | None:
        if stopping.is_set():
            return None
        stream = start(items[i])
        with lock:
            streams[i] = stream
        if stopping.is_set():
            stream.cancel()
        return stream.result()

    bar = _bar(len(items), description) if progress else None
    t0 = time.perf_counter()
    tokens = 0
    pool = ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="lmsext-many")
    futures: dict[Future, int] = {pool.submit(one, i): i for i in range(len(items))}
    pending = set(futures)
    try:
        while pending:
            done, pending = wait(pending, timeout=0.1, return_when=FIRST_COMPLETED)
            for future in done:
                result = results[futures[future]] = future.result()
                if result is not None:
                    tokens += result.stats.predicted_tokens_count
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix_str(f"{tokens / max(time.perf_counter() - t0, 1e-9):.1f} tok/s", refresh=False)
    except KeyboardInterrupt:
        stopping.set()
        with lock:
            for stream in streams.values():
                stream.cancel()
        for future in pending:
            future.cancel()
        for future, i in futures.items():
            if not future.cancelled():
                results[i] = future.result()
    finally:
        pool.shutdown(wait=True)
        if bar is not None:
            bar.close()
    return _with_summary(results, parallel, time.perf_counter() - t0)


def _with_summary(results: list[PredictionResult | None], parallel: int, wall: float) -> ManyResults:
    done = [r for r in results if r is not None]
    out = ManyResults(results)
    out.summary = ManySummary(predictions=len(results), completed=len(done),
                              predicted_tokens=sum(r.stats.predicted_tokens_count for r in done),
                              prompt_tokens=sum(r.stats.prompt_tokens_count for r in done),
                              wall_seconds=wall, parallel=parallel)
    return out


def _bar(total: int, description: str) -> Any:
    from tqdm.auto import tqdm
    return tqdm(total=total, desc=description, unit="pred")


__all__ = ["ManyResults", "ManySummary", "run_many"]
