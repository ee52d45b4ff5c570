"""The scheduler's slots: one llama.cpp sequence id each, and the KV-cache bookkeeping of its tokens.

A :class:`Slot` keeps the tokens its cells hold after its prediction ends, so the next prompt that starts the
same way reuses them (:func:`reuse_prefix`); with a unified KV cache a prompt may instead copy a longer prefix
from another slot (``llama_memory_seq_cp``: the cells are shared, not duplicated). :func:`shift` is the
per-sequence context shift, :func:`forget` drops a slot's tail, :func:`check_slots` resyncs the bookkeeping
with the cache after work on sequence 0 outside the scheduler.
"""

from __future__ import annotations

from typing import Any, Sequence as Seq

import llama_cpp

from .generate import _common_prefix


class Slot:
    """One llama.cpp sequence id and the tokens its cells hold (kept after its prediction ends)."""

    def __init__(self, seq_id: int, cached: list[int]) -> None:
        self.seq_id = seq_id
        self.cached = cached
        #: the prediction (``sequence.Sequence``) running in this slot, if any
        self.seq: Any = None
        #: tokens at the head whose cells another slot may share (seq_cp): never shifted
        self.shared = 0


def check_slots(mem: Any, slots: Seq[Slot]) -> None:
    """Forget a slot's tokens its cells no longer hold (a next-token distribution on sequence 0 between two
    busy spells may have cleared the whole cache)."""
    for slot in slots:
        if int(llama_cpp.llama_memory_seq_pos_max(mem, slot.seq_id)) != len(slot.cached) - 1:
            llama_cpp.llama_memory_seq_rm(mem, slot.seq_id, 0, -1)
            del slot.cached[:]
            slot.shared = 0


def reuse_prefix(mem: Any, slot: Slot, slots: Seq[Slot], prompt: list[int], unified: bool) -> int:
    """Keep in ``slot`` (or copy from another slot, when the cache is unified) the longest cached prefix of
    ``prompt``, all but its last token (decoded again for its logits); return its length."""
    limit = len(prompt) - 1
    own = min(_common_prefix(slot.cached, prompt), limit)
    source, shared = None, own
    if unified:
        for other in slots:
            n = min(_common_prefix(other.cached, prompt), limit)
            if other is not slot and n > shared:
                source, shared = other, n
    if source is not None:
        llama_cpp.llama_memory_seq_rm(mem, slot.seq_id, 0, -1)
        llama_cpp.llama_memory_seq_cp(mem, source.seq_id, slot.seq_id, 0, shared)
        slot.cached[:] = source.cached[:shared]
        slot.shared = shared
        source.shared = max(source.shared, shared)
        return shared
    forget(mem, slot, max(own, 0))
    return len(slot.cached)


def shift(mem: Any, slot: Slot, keep: int) -> bool:
    """Free half of the slot's tokens after the first ``keep`` (context shift); False when it cannot (nothing
    to drop, cells shared with another slot past ``keep``, a cache that cannot shift)."""
    n_past = len(slot.cached)
    n_discard = (n_past - keep) // 2
    if n_discard <= 0 or slot.shared > keep or not llama_cpp.llama_memory_can_shift(mem):
        return False
    llama_cpp.llama_memory_seq_rm(mem, slot.seq_id, keep, keep + n_discard)
    llama_cpp.llama_memory_seq_add(mem, slot.seq_id, keep + n_discard, n_past, -n_discard)
    del slot.cached[keep:keep + n_discard]
    return True


def forget(mem: Any, slot: Slot, n: int) -> None:
    """Drop the slot's cells from token ``n`` on (all of them if llama.cpp cannot cut there)."""
    if n < len(slot.cached):
        if not llama_cpp.llama_memory_seq_rm(mem, slot.seq_id, n, -1):
            llama_cpp.llama_memory_seq_rm(mem, slot.seq_id, 0, -1)
            n = 0
        del slot.cached[n:]
    slot.shared = min(slot.shared, n)


__all__ = ["Slot", "check_slots", "forget", "reuse_prefix", "shift"]
