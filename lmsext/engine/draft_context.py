"""A draft model's context for the parallel scheduler: one ``seq_id`` per slot, the drafts of all sequences batched.

When sequences of a parallel instance share a draft model (:mod:`.batch_speculative`), the scheduler gives
that draft a second llama.cpp context of its own (the weights are shared; :class:`DraftContext`) with one
sequence id per slot, so each sequence's draft cache follows its own text (no re-decoding another
sequence's text on a switch). A step's proposals are made together: one batch catches every drafting
sequence up with its text, then each draft position is one batch with a row per sequence still drafting.
"""

from __future__ import annotations

from typing import Any

import llama_cpp
import numpy as np

from .batch import TokenBatch
from .generate import _common_prefix
from .model import EngineModel
from .speculative import draft_pick


class DraftContext:
    """A second context of ``draft`` with ``n_seq`` sequence ids (unified KV cache of ``n_ctx`` cells)."""

    def __init__(self, draft: EngineModel, n_seq: int, n_ctx: int, n_threads: int) -> None:
        self.draft = draft
        cparams = llama_cpp.llama_context_default_params()
        cparams.n_ctx = n_ctx
        cparams.n_batch = cparams.n_ubatch = max(draft.n_batch, n_seq)
        cparams.n_seq_max = n_seq
        cparams.kv_unified = True
        cparams.n_threads = cparams.n_threads_batch = n_threads
        cparams.no_perf = True
        self.ctx = llama_cpp.llama_init_from_model(draft._model, cparams)
        if not self.ctx:
            raise RuntimeError(f"llama.cpp could not make a context for the draft {draft.path.name}")
        self.mem = llama_cpp.llama_get_memory(self.ctx)
        self.n_ctx = n_ctx
        self.cached: list[list[int]] = [[] for _ in range(n_seq)]
        self.batch = TokenBatch(int(cparams.n_batch))

    def propose(self, wants: list[tuple[int, list[int], int, Any]]) -> list[tuple[list[int], list]]:
        """For each ``(seq_id, history, k, state)``: up to ``k`` draft tokens after ``history`` and the distribution
        each was drawn from (``state``: the sequence's :class:`~.batch_speculative.SequenceDraft`, its settings,
        rng and draft sizes)."""
        out: list[tuple[list[int], list]] = [([], []) for _ in wants]
        rows = self._catch_up(wants)
        live = [i for i, row in enumerate(rows) if row is not None]
        n_vocab = self.draft.n_vocab
        while live:
            nxt: list[tuple[int, int]] = []
            for i in live:
                seq_id, history, k, state = wants[i]
                tokens, dists = out[i]
                logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(self.ctx, rows[i]), shape=(n_vocab,))
                token, q, confidence = draft_pick(logits, history + tokens, state.settings, state.rng)
                if not state.spec.exact and tokens and confidence < state.spec.min_continue:
                    continue
                tokens.append(token)
                dists.append(q)
                if len(tokens) < k:
                    nxt.append((i, token))
            live = self._decode_next(wants, nxt, rows)
        return out

    def _catch_up(self, wants: list[tuple[int, list[int], int, Any]]) -> list[int | None]:
        """Decode what each sequence's draft cache lacks of its history (in the common case one batch with the
        last tokens' rows); the row of each one's last token (None: it drafts nothing now)."""
        rows: list[int | None] = [None] * len(wants)
        todo: dict[int, list[int]] = {}
        for i, (seq_id, history, k, _) in enumerate(wants):
            if k <= 0 or len(history) + k >= self.n_ctx:
                continue
            cached = self.cached[seq_id]
            n = min(_common_prefix(cached, history), len(history) - 1)  # the last token is decoded for its logits
            if n < len(cached):
                llama_cpp.llama_memory_seq_rm(self.mem, seq_id, n, -1)
                del cached[n:]
            todo[i] = history[n:]
        batch = self.batch
        batch.clear()
        reserve = len(todo)  # the last-token rows all go into the final batch
        pending: list[tuple[int, list[int]]] = []
        for i, tokens in todo.items():
            seq_id, pos, rest = wants[i][0], len(self.cached[wants[i][0]]), tokens[:-1]
            while rest:
                room = batch.capacity - reserve - batch.n
                if room <= 0:
                    if not self._flush(pending):
                        return rows
                    pending = []
                    continue
                head, rest = rest[:room], rest[room:]
                batch.add_run(head, pos, seq_id, False)
                pending.append((seq_id, head))
                pos += len(head)
        for i, tokens in todo.items():
            seq_id = wants[i][0]
            pos = len(self.cached[seq_id]) + sum(len(t) for s, t in pending if s == seq_id)
            rows[i] = batch.add(tokens[-1], pos, seq_id, True)
            pending.append((seq_id, tokens[-1:]))
        if todo and not self._flush(pending, clear=False):
            return [None] * len(wants)
        return rows

    def _flush(self, runs: list[tuple[int, list[int]]], clear: bool = True) -> bool:
        """Decode the batch; record its tokens in the caches on success (and empty it if ``clear``)."""
        rc = self.batch.decode(self.ctx)
        if rc != 0:  # no room, or aborted: these sequences' draft caches start over
            for seq_id, _ in runs:
                llama_cpp.llama_memory_seq_rm(self.mem, seq_id, 0, -1)
                self.cached[seq_id].clear()
            self.batch.clear()
            return False
        for seq_id, tokens in runs:
            self.cached[seq_id].extend(tokens)
        if clear:
            self.batch.clear()
        return True

    def _decode_next(self, wants: list, nxt: list[tuple[int, int]], rows: list[int | None]) -> list[int]:
        """One batch of each still-drafting sequence's new draft token; the sequences that go on."""
        if not nxt:
            return []
        batch = self.batch
        batch.clear()
        for i, token in nxt:
            seq_id = wants[i][0]
            rows[i] = batch.add(token, len(self.cached[seq_id]), seq_id, True)
        if not self._flush([(wants[i][0], [token]) for i, token in nxt], clear=False):
            return []
        return [i for i, _ in nxt]

    def close(self) -> None:
        """Free the context (before the draft model is released)."""
        if self.ctx is not None:
            self.batch.close()
            llama_cpp.llama_free(self.ctx)
            self.ctx = None


__all__ = ["DraftContext"]
