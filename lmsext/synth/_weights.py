"""Where a synthetic model's weights come from: seeded random values, or a source GGUF's tensors."""

from __future__ import annotations

import os
import zlib
from pathlib import Path
from typing import Callable

import numpy as np
from gguf import GGMLQuantizationType, GGUFReader, Keys

from . import _vocab
from ._vocab import Vocab


class _Source:
    """Float32 tensors and vocabulary of a llama GGUF whose weights are reused."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self.reader = GGUFReader(os.fspath(path))
        self.tensors = {t.name: t for t in self.reader.tensors}
        tok = self.reader.fields.get(Keys.Tokenizer.LIST)
        self.tokens = [str(t) for t in tok.contents()] if tok is not None else None
        bos = self.reader.fields.get(Keys.Tokenizer.BOS_ID)
        self.bos_id = int(bos.contents()) if bos is not None else None

    def get(self, name: str) -> np.ndarray:
        from gguf.quants import dequantize

        t = self.tensors[name]
        data = dequantize(np.asarray(t.data), GGMLQuantizationType(t.tensor_type))
        shape = tuple(int(x) for x in reversed(t.shape.tolist()))
        return np.asarray(data, dtype=np.float32).reshape(shape)

    def shape(self, name: str) -> tuple[int, ...] | None:
        t = self.tensors.get(name)
        return None if t is None else tuple(int(x) for x in reversed(t.shape.tolist()))


def _rng(seed: int, name: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(name.encode())])


def _normal(seed: int, name: str, shape: tuple[int, ...], std: float) -> np.ndarray:
    out = _rng(seed, name).standard_normal(shape, dtype=np.float32)
    out *= np.float32(std)
    return out


def _rand_fn(seed: int, name: str, shape: tuple[int, ...], std: float) -> Callable[[], np.ndarray]:
    return lambda: _normal(seed, name, shape, std)


def _src_fn(src: _Source, name: str, shape: tuple[int, ...], need: Callable[[str, tuple[int, ...]], None]) -> Callable[[], np.ndarray]:
    def make() -> np.ndarray:
        return src.get(name)

    make.check = lambda: need(name, shape)  # type: ignore[attr-defined]
    return make


def _experts_fn(
    src: _Source, name: str, shape: tuple[int, ...], n_expert: int, seed: int, out_name: str,
    need: Callable[[str, tuple[int, ...]], None],
) -> Callable[[], np.ndarray]:
    def make() -> np.ndarray:
        base = src.get(name)
        noise = _normal(seed, out_name, (n_expert, *shape), 0.02 * float(base.std() or 1.0))
        return base[None, :, :] + noise

    make.check = lambda: need(name, shape)  # type: ignore[attr-defined]
    return make


def _vocab_rows(vocab: Vocab, src: _Source, n_embd: int) -> Callable[..., np.ndarray]:
    """Build token-embedding / output rows for ``vocab`` from the source: rows of tokens the
    source knows (matched by text) are copied; ``<|im_start|>``/``<|im_end|>`` input rows and the
    ``<|im_end|>`` output row borrow the source's BOS row (a base model's text boundary; the output
    row is scaled by 1.25 so at temperature 0 ``<|im_end|>`` wins where the source would start a
    new text, ending the chat turn); other added rows get small random values."""
    src_index: dict[str, int] = {}
    if src.tokens is not None:
        for i, t in enumerate(src.tokens):
            src_index.setdefault(t, i)
    bos = src.bos_id

    def rows(tensor: str, seed: int, output: bool = False) -> np.ndarray:
        base = src.get(tensor)
        std = float(base.std() or 0.02)
        out = np.empty((len(vocab.tokens), n_embd), dtype=np.float32)
        rng = _rng(seed, "added-rows:" + tensor)
        for i, tok in enumerate(vocab.tokens):
            j = src_index.get(tok) if src.tokens is not None else (i if i < base.shape[0] else None)
            if j is not None and j < base.shape[0]:
                out[i] = base[j]
            elif bos is not None and 0 <= bos < base.shape[0] and (
                (tok == _vocab.IM_START and not output) or tok == _vocab.IM_END
            ):
                out[i] = base[bos] * (1.25 if output else 1.0)
            else:
                out[i] = rng.standard_normal(n_embd, dtype=np.float32) * (0.1 * std)
        return out

    return rows
