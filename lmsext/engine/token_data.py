"""The token-data arrays the sampler chain works on, outside the chain: :class:`_Branch` (one
``llama_token_data_array`` over a copy of the logits, to which samplers are applied one at a time) and
:func:`_samplers` (the chain's samplers by name). Shared by the explorer's stage-by-stage distribution
(:mod:`lmsext.engine.distribution`) and the token loop's drawn probability (:mod:`lmsext.engine.sampled_probs`);
it imports neither.
"""

from __future__ import annotations

import ctypes
from typing import Any

import llama_cpp
import numpy as np

from ..errors import PredictionError
from .sampling import SamplerChain

#: Memory layout of ``llama_token_data`` (id, logit, p).
TOKEN_DATA = np.dtype([("id", "<i4"), ("logit", "<f4"), ("p", "<f4")])
#: Samplers that pick the token (the end of the chain), not shape the distribution.
SELECTORS = ("dist",)


class _Branch:
    """One way the chain may run (two after a random XTC stage): a weight and a token-data array."""

    def __init__(self, weight: float, n: int) -> None:
        self.weight = weight
        self.data = (llama_cpp.llama_token_data * n)()
        self.view = np.frombuffer(self.data, dtype=TOKEN_DATA)
        self.arr = llama_cpp.llama_token_data_array(data=self.data, size=n, selected=-1, sorted=False)

    @classmethod
    def from_logits(cls, logits: np.ndarray) -> "_Branch":
        b = cls(1.0, logits.shape[0])
        b.view["id"] = np.arange(logits.shape[0], dtype=np.int32)
        b.view["logit"] = logits
        b.view["p"] = 0.0
        return b

    def _offset(self) -> int:
        """Samplers may advance ``data`` (XTC drops the head that way): its index in our buffer."""
        start = ctypes.cast(self.arr.data, ctypes.c_void_p).value or 0
        return (start - ctypes.addressof(self.data)) // TOKEN_DATA.itemsize

    def live(self) -> np.ndarray:
        """The entries the next sampler sees (``data[:size]``)."""
        off = self._offset()
        return self.view[off: off + self.arr.size]

    def selected(self) -> int:
        """The token the last sampler picked."""
        if self.arr.selected < 0:
            raise PredictionError("the sampler chain selected no token")
        return int(self.live()["id"][self.arr.selected])

    def copy(self, weight: float) -> "_Branch":
        b = _Branch(weight, self.view.shape[0])
        ctypes.memmove(b.data, self.data, ctypes.sizeof(self.data))
        b.arr.data = ctypes.cast(ctypes.addressof(b.data) + self._offset() * TOKEN_DATA.itemsize,
                                 type(self.arr.data))
        b.arr.size, b.arr.selected, b.arr.sorted = self.arr.size, self.arr.selected, self.arr.sorted
        return b

    def apply(self, sampler) -> None:
        llama_cpp.llama_sampler_apply(sampler, ctypes.byref(self.arr))

    def probs(self, n_vocab: int, only_selected: bool = False) -> np.ndarray:
        """The distribution this branch samples from (softmax over what is left), over the vocabulary."""
        out = np.zeros(n_vocab, dtype=np.float64)
        if only_selected and self.arr.selected >= 0:
            out[self.selected()] = 1.0
            return out
        live = self.live()
        logits = live["logit"].astype(np.float64)
        finite = np.isfinite(logits)
        if not finite.any():
            return out
        ids, logits = live["id"][finite], logits[finite]
        w = np.exp(logits - logits.max())
        out[ids] = w / w.sum()
        return out


def _samplers(chain: SamplerChain) -> list[tuple[str, Any]]:
    n = llama_cpp.llama_sampler_chain_n(chain.ptr)
    out = []
    for i in range(n):
        s = llama_cpp.llama_sampler_chain_get(chain.ptr, i)
        name = (llama_cpp.llama_sampler_name(s) or b"").decode("utf-8", "replace")
        out.append((name.lstrip("?"), s))  # some builds mark samplers with a leading '?'(e.g. "?temp")
    return out


__all__ = ["SELECTORS", "TOKEN_DATA"]
