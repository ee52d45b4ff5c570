"""Speculative decoding inside the parallel scheduler: a sequence with a draft still batches.

In a scheduler step (:mod:`.scheduler`) a sequence with a ``draftModel`` adds its last token and up to
``k`` proposed tokens (rows with logits, its own ``seq_id``, consecutive positions) to the one
``llama_batch``; the other sequences add one row each. After ``llama_decode`` its rows are verified with
the one-slot loop's own code (:func:`~.speculative.accept_round`, :class:`~.speculative.Chooser`: greedy
argmax match, sampling ``min(1, p/q)``), the accepted prefix stays in its cells and the rest is removed
for that ``seq_id`` only. Each sequence has its own :class:`~.draft_plan.Plan` (adaptive length, back-off)
and its own stats. A draft model has one context: the sequences that share it propose one after the other
in the step (its cache follows each one's text by prefix reuse); prompt lookup needs no context.
"""

from __future__ import annotations

import copy
import time
from typing import Any

import numpy as np

from .draft_plan import Plan
from .generate import thread_plan
from .model import EngineModel
from .slots import forget
from .speculative import Chooser, DraftProposer, SpeculativeConfig, _propose, accept_round, count_round


class SequenceDraft:
    """The speculative state of one scheduled sequence: its proposer, chooser, plan and the pending proposal."""

    def __init__(self, model: EngineModel, seq: Any, spec: SpeculativeConfig) -> None:
        req = seq.req
        self.spec = spec
        self.rng = np.random.default_rng(req.sampling.seed)
        self.chooser = Chooser(model, seq.chain, req.sampling, self.rng)
        self.plan = copy.copy(Plan.learned(model, spec))  # what earlier predictions learned; backs off per sequence
        self.proposer = (DraftProposer(spec.draft, req.sampling, spec, model.stop_requested, self.rng)
                         if spec.draft is not None else None)
        self.proposal: list[int] = []
        self.dists: list[np.ndarray | None] = []
        self.proposing = False  # propose() ran for the coming step
        self.t0 = 0.0
        seq.stats.draft_model_key = spec.key

    def propose(self, seq: Any, room: int) -> list[int]:
        """The draft tokens ``seq`` adds after its last token this step (none: a plain step); ``room`` bounds them."""
        self.t0 = time.perf_counter()
        self.proposing = True
        req, stats = seq.req, seq.stats
        left = (req.max_tokens - stats.predicted_tokens) if req.max_tokens is not None else room
        k = max(0, min(self.plan.size(), room, left - 1))
        proposal, dists = _propose(self.proposer, seq.slot.cached + [seq.pending], k)
        if len(proposal) < max(1, self.spec.min_length):
            stats.draft_ignored += len(proposal)
            proposal, dists = [], []
        self.proposal, self.dists = proposal, dists
        return proposal

    def verify(self, seq: Any, model: EngineModel, ctx: Any, first_row: int, mem: Any) -> bool:
        """After the step's decode: choose ``seq``'s tokens from rows ``first_row``…, keep the accepted prefix
        in its cells; False once it ends."""
        self.proposing = False
        if not self.proposal:
            alive = seq.sample(model, ctx, first_row)
            self.plan.timed_plain(time.perf_counter() - self.t0)
            return alive
        n = len(self.proposal)
        n_past = len(seq.slot.cached) - n - 1

        def emit(token: int, row: int, hit: bool) -> bool:
            return not seq.take(model, ctx, token, row, hit)

        accepted, _, hit, i = accept_round(self.chooser, self.proposal, self.dists, first_row, emit)
        count_round(seq.stats, self.plan, n, accepted, hit, i)
        forget(mem, seq.slot, n_past + 1 + accepted)  # the rejected rows leave this seq_id's cells only
        self.plan.timed_round(time.perf_counter() - self.t0, i + 1)
        self.proposal, self.dists = [], []
        return not seq.done


def attach(model: EngineModel, seq: Any, held: dict[EngineModel, int]) -> None:
    """Give an admitted ``seq`` its :class:`SequenceDraft`; its draft model is held (``held``: users per draft)
    while any sequence of the scheduler uses it (ModelBusyError if another prediction runs on it)."""
    spec = seq.req.speculative
    draft = spec.draft
    if draft is not None:
        if draft not in held:
            draft.acquire_prediction()
            held[draft] = 0
            thread_plan(draft, seq.req.n_threads, None, 0)
        held[draft] += 1
    seq.draft = SequenceDraft(model, seq, spec)


def detach(seq: Any, held: dict[EngineModel, int]) -> None:
    """``seq`` ended: release its draft model when no other sequence uses it."""
    state, seq.draft = seq.draft, None
    draft = state.spec.draft if state is not None else None
    if draft is not None and draft in held:
        held[draft] -= 1
        if held[draft] == 0:
            del held[draft]
            draft.release()


__all__ = ["SequenceDraft", "attach", "detach"]
