"""Helpers of the parallel-prediction tests: drive several streams together, count a scheduler's steps."""

from __future__ import annotations

from typing import Any


def round_robin(streams: list[Any]) -> list[Any]:
    """Advance every stream one fragment at a time until all end; return their results in order."""
    iters = [iter(s) for s in streams]
    live = list(range(len(streams)))
    while live:
        for i in list(live):
            try:
                next(iters[i])
            except StopIteration:
                live.remove(i)
    return [s.result() for s in streams]


def scheduler_steps(llm: Any) -> int:
    """The batches the instance's scheduler has decoded so far."""
    from lmsext.engine.scheduler import scheduler_for
    return scheduler_for(llm._loaded.handle).steps
