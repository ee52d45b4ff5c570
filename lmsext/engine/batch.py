"""One ``llama_batch`` of tokens from several sequences, reused step after step by the scheduler.

Each entry is one token of one sequence (its own ``seq_id``) at its position in that sequence, and
whether llama.cpp should compute logits for it (the last token of a finished prompt, every generated
token). :meth:`TokenBatch.decode` runs ``llama_decode`` once for all of them.
"""

from __future__ import annotations

import ctypes
from typing import Sequence

import llama_cpp


class TokenBatch:
    """A ``llama_batch_init`` batch of up to ``capacity`` tokens, one sequence id each; free with :meth:`close`."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.batch = llama_cpp.llama_batch_init(capacity, 0, 1)
        self.n = 0
        self.n_outputs = 0

    def clear(self) -> None:
        """Empty the batch (the buffers stay allocated)."""
        self.n = 0
        self.n_outputs = 0

    def add(self, token: int, pos: int, seq_id: int, logits: bool) -> int:
        """Append one token; return its index (the row of its logits when ``logits``)."""
        b, i = self.batch, self.n
        b.token[i] = token
        b.pos[i] = pos
        b.n_seq_id[i] = 1
        b.seq_id[i][0] = seq_id
        b.logits[i] = logits
        self.n = i + 1
        self.n_outputs += bool(logits)
        return i

    def set_token(self, i: int, token: int, pos: int) -> None:
        """Change the token and position of entry ``i`` (its sequence and logits flag stay)."""
        b = self.batch
        b.token[i] = token
        b.pos[i] = pos

    def add_run(self, tokens: Sequence[int], pos0: int, seq_id: int, logits_last: bool) -> int:
        """Append ``tokens`` at positions ``pos0…`` of ``seq_id``; logits for the last one if ``logits_last``.
        Returns the index of the last token."""
        b, i, k = self.batch, self.n, len(tokens)
        ctypes.memmove(ctypes.addressof(b.token.contents) + 4 * i, (llama_cpp.llama_token * k)(*tokens), 4 * k)
        ctypes.memmove(ctypes.addressof(b.pos.contents) + 4 * i,
                       (llama_cpp.llama_pos * k)(*range(pos0, pos0 + k)), 4 * k)
        ctypes.memmove(ctypes.addressof(b.n_seq_id.contents) + 4 * i, (ctypes.c_int32 * k)(*([1] * k)), 4 * k)
        ctypes.memset(ctypes.addressof(b.logits.contents) + i, 0, k)
        seq_ids = b.seq_id
        for j in range(i, i + k):
            seq_ids[j][0] = seq_id
        if logits_last:
            b.logits[i + k - 1] = 1
            self.n_outputs += 1
        self.n = i + k
        return i + k - 1

    def decode(self, ctx) -> int:
        """``llama_decode`` the batch; returns its code (0 ok, 1 no room in the KV cache, 2 aborted)."""
        self.batch.n_tokens = self.n
        return int(llama_cpp.llama_decode(ctx, self.batch))

    def close(self) -> None:
        """Free the batch's buffers."""
        if self.batch is not None:
            llama_cpp.llama_batch_free(self.batch)
            self.batch = None


__all__ = ["TokenBatch"]
