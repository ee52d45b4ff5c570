"""Speculative decoding inside the parallel scheduler: a sequence with a draft still batches.

In a scheduler step (:mod:`.scheduler`) a sequence with a ``draftModel`` adds its last token and up to
``k`` proposed tokens (rows with logits, its own ``seq_id``, consecutive positions) to the one
``llama_batch``; the other sequences add one row each. After ``llama_decode`` its rows are verified with
the one-slot loop's own code (:func:`~.speculative.accept_round`, :class:`~.speculative.Chooser`: greedy
argmax match, sampling ``min(1, p/q)``), the accepted prefix stays in its cells and the rest is removed
for that ``seq_id`` only. Each sequence has its own :class:`~.draft_plan.Plan` (adaptive length, back-off)
and its own stats. A draft model gets a second context of the scheduler's (:mod:`.draft_context`): one
``seq_id`` per slot, the proposals of all sequences that share it made in common batches; prompt lookup
needs no context.
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
from .draft_context import DraftContext
from .speculative import Chooser, SpeculativeConfig, _propose, accept_round, count_round


class SequenceDraft:
    """The speculative state of one scheduled sequence: its chooser, plan, rng and the pending proposal."""

    def __init__(self, model: EngineModel, seq: Any, spec: SpeculativeConfig, context: DraftContext | None) -> None:
        req = seq.req
        self.spec, self.settings, self.context = spec, req.sampling, context
        self.rng = np.random.default_rng(req.sampling.seed)
        self.chooser = Chooser(model, seq.chain, req.sampling, self.rng)
        self.learned = Plan.learned(model, spec)  # what earlier predictions learned about this draft on this model
        self.plan = copy.copy(self.learned)  # each sequence adapts and backs off on its own copy
        self.proposal: list[int] = []
        self.dists: list[np.ndarray | None] = []
        self.proposing = False  # a proposal (maybe empty) was asked for the coming step
        self.t0 = 0.0
        seq.stats.draft_model_key = spec.key

    def begin(self, seq: Any, room: int) -> int:
        """Start this step's proposal (``room``: most tokens it may add); prompt lookup proposes at once.
        Returns how many tokens a draft model should propose (0: none)."""
        self.t0 = time.perf_counter()
        self.proposing = True
        req, stats = seq.req, seq.stats
        left = (req.max_tokens - stats.predicted_tokens) if req.max_tokens is not None else room
        k = max(0, min(self.plan.size(), room, left - 1))
        if self.context is None:
            self.set_proposal(seq, *_propose(None, seq.slot.cached + [seq.pending], k))
            return 0
        self.set_proposal(seq, [], [])
        return k

    def set_proposal(self, seq: Any, proposal: list[int], dists: list) -> None:
        """The step's proposal (a draft shorter than ``speculativeDecodingMinDraftLengthToConsider`` is ignored)."""
        if len(proposal) < max(1, self.spec.min_length):
            seq.stats.draft_ignored += len(proposal)
            proposal, dists = [], []
        self.proposal, self.dists = proposal, dists

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


def propose_all(ready: list[tuple[Any, int]]) -> dict[Any, list[int]]:
    """This step's proposals of the generating sequences with a draft (``(sequence, room)``): prompt lookup each,
    a draft model's together in its :class:`~.draft_context.DraftContext`. Returns each one's draft tokens."""
    groups: dict[DraftContext, list[tuple[Any, int]]] = {}
    for seq, room in ready:
        k = seq.draft.begin(seq, room)
        if k > 0:
            groups.setdefault(seq.draft.context, []).append((seq, k))
    for context, wants in groups.items():
        found = context.propose([(seq.slot.seq_id, seq.slot.cached + [seq.pending], k, seq.draft)
                                 for seq, k in wants])
        for (seq, _), (tokens, dists) in zip(wants, found):
            seq.draft.set_proposal(seq, tokens, dists)
    return {seq: seq.draft.proposal for seq, _ in ready}


def attach(model: EngineModel, seq: Any, held: dict[EngineModel, list], n_seq: int) -> None:
    """Give an admitted ``seq`` its :class:`SequenceDraft`; its draft model is held (``held``: per draft, its users
    and the :class:`~.draft_context.DraftContext` they share) while any sequence of the scheduler uses it
    (ModelBusyError if another prediction runs on it)."""
    spec = seq.req.speculative
    draft = spec.draft
    context = None
    if draft is not None:
        if draft not in held:
            draft.acquire_prediction()
            try:
                n_threads = thread_plan(draft, seq.req.n_threads, None, 0).current
                held[draft] = [0, DraftContext(draft, n_seq, model.n_ctx, n_threads)]
            except BaseException:
                draft.release()
                raise
        held[draft][0] += 1
        context = held[draft][1]
    seq.draft = SequenceDraft(model, seq, spec, context)


def detach(seq: Any, held: dict[EngineModel, list]) -> None:
    """``seq`` ended: free its draft model's context and release the model when no other sequence uses it."""
    state, seq.draft = seq.draft, None
    if state is not None:  # what it learned (draft length, acceptance, timings) carries over; no back-off owed
        state.learned.__dict__.update(state.plan.__dict__, backoff=0)
    draft = state.spec.draft if state is not None else None
    if draft is not None and draft in held:
        held[draft][0] -= 1
        if held[draft][0] == 0:
            users_context = held.pop(draft)
            try:
                users_context[1].close()
            finally:
                draft.release()


__all__ = ["SequenceDraft", "attach", "detach", "propose_all"]
