"""Writing small llama-architecture GGUF models (random or derived weights) with the ``gguf`` package."""

from __future__ import annotations

import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
from gguf import (
    GGMLQuantizationType,
    GGUFReader,
    GGUFValueType,
    GGUFWriter,
    Keys,
    LlamaFileType,
    TokenType,
)

from . import _vocab
from ._vocab import Vocab
from ._weights import _experts_fn, _normal, _rand_fn, _Source, _src_fn, _vocab_rows

ARCH = "llama"
RMS_EPS = 1e-5
ROPE_FREQ_BASE = 10000.0

_DTYPES = {
    "f32": (GGMLQuantizationType.F32, LlamaFileType.ALL_F32),
    "f16": (GGMLQuantizationType.F16, LlamaFileType.MOSTLY_F16),
    "q8_0": (GGMLQuantizationType.Q8_0, LlamaFileType.MOSTLY_Q8_0),
}


def default_n_ff(n_embd: int) -> int:
    """Llama-style feed-forward width: 8/3 * n_embd rounded up to a multiple of 32."""
    return int(math.ceil(8 * n_embd / 3 / 32) * 32)


def read_hparams(path: str | os.PathLike[str]) -> dict[str, int]:
    """Shape hyper-parameters of a llama GGUF, as ``write_model`` keyword arguments
    (n_layer, n_embd, n_head, n_head_kv, n_ff, context_length, n_expert, n_expert_used)."""
    reader = GGUFReader(os.fspath(path))
    arch = str(reader.fields[Keys.General.ARCHITECTURE].contents())

    def get(key: str, default: Any = None) -> Any:
        f = reader.fields.get(key.format(arch=arch))
        return default if f is None else f.contents()

    n_head = int(get(Keys.Attention.HEAD_COUNT))
    return {
        "n_layer": int(get(Keys.LLM.BLOCK_COUNT)),
        "n_embd": int(get(Keys.LLM.EMBEDDING_LENGTH)),
        "n_head": n_head,
        "n_head_kv": int(get(Keys.Attention.HEAD_COUNT_KV, n_head)),
        "n_ff": int(get(Keys.LLM.FEED_FORWARD_LENGTH)),
        "context_length": int(get(Keys.LLM.CONTEXT_LENGTH, 2048)),
        "n_expert": int(get(Keys.LLM.EXPERT_COUNT, 0)),
        "n_expert_used": int(get(Keys.LLM.EXPERT_USED_COUNT, 0)),
    }


@dataclass
class _Spec:
    name: str
    shape: tuple[int, ...]  # numpy order (ggml ne reversed)
    qtype: GGMLQuantizationType
    make: Callable[[], np.ndarray]  # float32 values of ``shape``

    @property
    def nbytes(self) -> int:
        if self.qtype == GGMLQuantizationType.F32:
            return int(np.prod(self.shape)) * 4
        if self.qtype == GGMLQuantizationType.F16:
            return int(np.prod(self.shape)) * 2
        from gguf.quants import quant_shape_to_byte_shape

        return int(np.prod(quant_shape_to_byte_shape(self.shape, self.qtype)))

    def encode(self) -> np.ndarray:
        data = np.ascontiguousarray(self.make(), dtype=np.float32)
        assert data.shape == self.shape, (self.name, data.shape, self.shape)
        if self.qtype == GGMLQuantizationType.F32:
            return data
        if self.qtype == GGMLQuantizationType.F16:
            return data.astype(np.float16)
        from gguf.quants import quantize

        return quantize(data, self.qtype)


@dataclass
class _Shape:
    """Checked hyper-parameters of the model being written."""

    n_layer: int
    n_embd: int
    n_head: int
    n_head_kv: int
    n_ff: int
    n_expert: int
    n_expert_used: int

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head


def _check_shape(n_layer: int, n_embd: int, n_head: int, n_head_kv: int | None, n_ff: int | None,
                 n_expert: int, n_expert_used: int) -> _Shape:
    """The hyper-parameters with their defaults filled in; ValueError for a shape llama.cpp cannot run."""
    n_head_kv = n_head if n_head_kv is None else n_head_kv
    n_ff = default_n_ff(n_embd) if n_ff is None else n_ff
    if n_embd % n_head or (n_embd // n_head) % 2:
        raise ValueError("n_embd must be a multiple of n_head with an even head size")
    if n_head_kv <= 0 or n_head % n_head_kv:
        raise ValueError("n_head must be a multiple of n_head_kv")
    if n_expert < 0 or n_expert_used < 0:
        raise ValueError("n_expert and n_expert_used must be >= 0")
    if n_expert > 0:
        n_expert_used = n_expert_used or min(2, n_expert)
        if n_expert_used > n_expert:
            raise ValueError("n_expert_used must be <= n_expert")
    else:
        n_expert_used = 0
    return _Shape(n_layer, n_embd, n_head, n_head_kv, n_ff, n_expert, n_expert_used)


def _make_vocab(tokenizer_from: str | os.PathLike[str] | None, chat_template: str | None,
                n_vocab: int | None) -> Vocab:
    """The vocabulary: built in or copied, with the ChatML tokens when the template uses them."""
    vocab = _vocab.vocab_from_gguf(tokenizer_from) if tokenizer_from is not None else _vocab.builtin_vocab()
    if chat_template is not None:
        vocab.set_str(Keys.Tokenizer.CHAT_TEMPLATE, chat_template)
    template = vocab.get(Keys.Tokenizer.CHAT_TEMPLATE)
    if isinstance(template, str) and _vocab.IM_START in template:
        _vocab.add_chatml(vocab)
    if n_vocab is not None:
        if tokenizer_from is not None or n_vocab < len(vocab.tokens):
            raise ValueError(f"n_vocab={n_vocab}: only grows the built-in vocabulary "
                             f"({len(vocab.tokens)} tokens)")
        _vocab.pad_vocab(vocab, n_vocab)
    return vocab


class _Plan:
    """The tensors to write, in order, each with how to make its values (seeded random or from a source)."""

    def __init__(self, shape: _Shape, vocab: Vocab, qtype: GGMLQuantizationType, seed: int, src: _Source | None):
        self.shape, self.vocab, self.qtype, self.seed, self.src = shape, vocab, qtype, seed, src
        self.n_vocab = len(vocab.tokens)
        self.resid_scale = 1.0 / math.sqrt(2 * shape.n_layer)
        self.specs: list[_Spec] = []
        if src is not None:
            n_embd = shape.n_embd
            self.need("token_embd.weight",
                      (len(src.tokens) if src.tokens else src.shape("token_embd.weight")[0], n_embd))
        self._head()
        for i in range(shape.n_layer):
            self._layer(f"blk.{i}.")
        if src is not None:  # validate shapes of every source tensor before writing anything
            for s in self.specs:
                getattr(s.make, "check", lambda: None)()

    def _mat_type(self, shape: tuple[int, ...]) -> GGMLQuantizationType:
        if self.qtype == GGMLQuantizationType.Q8_0 and shape[-1] % 32:
            return GGMLQuantizationType.F16  # Q8_0 needs rows that are a multiple of 32
        return self.qtype

    def add(self, name: str, shape: tuple[int, ...], make: Callable[[], np.ndarray], *, f32: bool = False) -> None:
        qtype = GGMLQuantizationType.F32 if f32 or len(shape) == 1 else self._mat_type(shape)
        self.specs.append(_Spec(name, shape, qtype, make))

    def need(self, src_name: str, shape: tuple[int, ...]) -> None:
        """ValueError unless the source's tensor ``src_name`` has ``shape``."""
        src = self.src
        got = src.shape(src_name) if src is not None else None
        if got != shape:
            raise ValueError(
                f"weights_from {src.path if src else None}: tensor {src_name} has shape {got}, expected {shape}; "
                f"pass the source's shapes (read_hparams() gives {read_hparams(src.path) if src else None})"
            )

    def _norm(self, name: str) -> Callable[[], np.ndarray]:
        n_embd = self.shape.n_embd
        if self.src is None:
            return lambda: np.ones(n_embd, dtype=np.float32)
        return _src_fn(self.src, name, (n_embd,), self.need)

    def _matrix(self, name: str, shape: tuple[int, ...], residual: bool) -> Callable[[], np.ndarray]:
        if self.src is not None:
            return _src_fn(self.src, name, shape, self.need)
        std = 1.0 / math.sqrt(shape[1]) * (self.resid_scale if residual else 1.0)
        return _rand_fn(self.seed, name, shape, std)

    def _head(self) -> None:
        """Token embeddings, the final norm and the output head."""
        n_vocab, n_embd, seed, src = self.n_vocab, self.shape.n_embd, self.seed, self.src
        if src is None:
            self.add("token_embd.weight", (n_vocab, n_embd),
                     lambda: _normal(seed, "token_embd.weight", (n_vocab, n_embd), 1.0))
            self.add("output_norm.weight", (n_embd,), self._norm("output_norm.weight"))
            self.add("output.weight", (n_vocab, n_embd), self._random_output)
            return
        rows = _vocab_rows(self.vocab, src, n_embd)
        self.add("token_embd.weight", (n_vocab, n_embd), lambda: rows("token_embd.weight", seed))
        self.add("output_norm.weight", (n_embd,), lambda: src.get("output_norm.weight"))
        out_name = "output.weight" if "output.weight" in src.tensors else "token_embd.weight"
        self.add("output.weight", (n_vocab, n_embd), lambda: rows(out_name, seed + 1, output=True))

    def _random_output(self) -> np.ndarray:
        n_embd = self.shape.n_embd
        normal_out = 3.0 / math.sqrt(n_embd)  # final-norm output has unit RMS -> logits ~ N(0, 3)
        out = _normal(self.seed, "output.weight", (self.n_vocab, n_embd), normal_out)
        # Only NORMAL tokens get random rows: control/byte tokens then never win at
        # temperature 0, so greedy text is readable and never stops at once.
        keep = np.asarray(self.vocab.types) == int(TokenType.NORMAL)
        out[~keep] = 0.0
        return out

    def _layer(self, p: str) -> None:
        """One transformer block: attention, then a dense or a mixture-of-experts feed-forward."""
        sh = self.shape
        n_embd, head_dim = sh.n_embd, sh.head_dim
        attention = {
            "attn_q.weight": (sh.n_head * head_dim, n_embd),
            "attn_k.weight": (sh.n_head_kv * head_dim, n_embd),
            "attn_v.weight": (sh.n_head_kv * head_dim, n_embd),
            "attn_output.weight": (n_embd, sh.n_head * head_dim),
        }
        self.add(p + "attn_norm.weight", (n_embd,), self._norm(p + "attn_norm.weight"))
        for t, shape in attention.items():
            self.add(p + t, shape, self._matrix(p + t, shape, residual=t == "attn_output.weight"))
        self.add(p + "ffn_norm.weight", (n_embd,), self._norm(p + "ffn_norm.weight"))
        ffn = {"ffn_gate": (sh.n_ff, n_embd), "ffn_up": (sh.n_ff, n_embd), "ffn_down": (n_embd, sh.n_ff)}
        if sh.n_expert == 0:
            for t, shape in ffn.items():
                nm = p + t + ".weight"
                self.add(nm, shape, self._matrix(nm, shape, residual=t == "ffn_down"))
            return
        nm = p + "ffn_gate_inp.weight"
        self.add(nm, (sh.n_expert, n_embd), _rand_fn(self.seed, nm, (sh.n_expert, n_embd), 1.0 / math.sqrt(n_embd)),
                 f32=True)
        for t, shape in ffn.items():
            nm = p + t + "_exps.weight"
            eshape = (sh.n_expert, *shape)
            if self.src is None:
                std = 1.0 / math.sqrt(shape[1]) * (self.resid_scale if t == "ffn_down" else 1.0)
                self.add(nm, eshape, _rand_fn(self.seed, nm, eshape, std))
            else:
                self.add(nm, eshape, _experts_fn(self.src, p + t + ".weight", shape, sh.n_expert, self.seed, nm,
                                                 self.need))


def _add_metadata(w: GGUFWriter, sh: _Shape, vocab: Vocab, ftype: LlamaFileType, context_length: int,
                  name: str | None, weights_from: str | os.PathLike[str] | None) -> None:
    """The model's GGUF metadata: names, hyper-parameters, the tokenizer."""
    w.add_name(name or f"lmsext-synth-{sh.n_layer}x{sh.n_embd}" + (f"-{sh.n_expert}x-moe" if sh.n_expert else ""))
    w.add_description("Synthetic model generated by lmsext.synth"
                      + (f" from {Path(weights_from).name}" if weights_from else " (random weights)"))
    w.add_file_type(int(ftype))
    w.add_quantization_version(2)
    w.add_vocab_size(len(vocab.tokens))
    w.add_context_length(int(context_length))
    w.add_embedding_length(sh.n_embd)
    w.add_block_count(sh.n_layer)
    w.add_feed_forward_length(sh.n_ff)
    w.add_head_count(sh.n_head)
    w.add_head_count_kv(sh.n_head_kv)
    w.add_rope_dimension_count(sh.head_dim)
    w.add_rope_freq_base(ROPE_FREQ_BASE)
    w.add_layer_norm_rms_eps(RMS_EPS)
    if sh.n_expert:
        w.add_expert_count(sh.n_expert)
        w.add_expert_used_count(sh.n_expert_used)
    w.add_key_value(Keys.Tokenizer.LIST, vocab.tokens, GGUFValueType.ARRAY, GGUFValueType.STRING)
    w.add_key_value(Keys.Tokenizer.SCORES, vocab.scores, GGUFValueType.ARRAY, GGUFValueType.FLOAT32)
    w.add_key_value(Keys.Tokenizer.TOKEN_TYPE, vocab.types, GGUFValueType.ARRAY, GGUFValueType.INT32)
    for key, (value, vtype, sub) in sorted(vocab.extra.items()):
        w.add_key_value(key, value, vtype, sub)


def _write_atomically(path: Path, fill: Callable[[GGUFWriter], None], specs: list[_Spec]) -> None:
    """Write the GGUF to a temporary file beside ``path``, then rename it into place (no half-written model)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".part", dir=path.parent)
    os.close(fd)
    try:
        w = GGUFWriter(tmp, ARCH)
        fill(w)
        # tensors, streamed one at a time (bounded memory for large random models)
        for s in specs:
            w.add_tensor_info(s.name, s.shape, np.dtype(np.float32), s.nbytes, raw_dtype=s.qtype)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_ti_data_to_file()
        for s in specs:
            data = s.encode()
            assert data.nbytes == s.nbytes, (s.name, data.nbytes, s.nbytes)
            w.write_tensor_data(data)
        w.close()
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def write_model(
    path: str | os.PathLike[str],
    *,
    n_layer: int = 2,
    n_embd: int = 64,
    n_head: int = 4,
    n_head_kv: int | None = None,
    n_ff: int | None = None,
    context_length: int = 2048,
    n_expert: int = 0,
    n_expert_used: int = 0,
    chat_template: str | None = None,
    dtype: str = "f32",
    tokenizer_from: str | os.PathLike[str] | None = None,
    weights_from: str | os.PathLike[str] | None = None,
    seed: int = 0,
    name: str | None = None,
    n_vocab: int | None = None,
) -> Path:
    """Write a llama-architecture GGUF model to ``path`` and return it.

    Weights are seeded random values (scaled so logits are finite and varied), or copied from
    the llama GGUF ``weights_from`` (shapes must match; see :func:`read_hparams`). The tokenizer
    is the built-in SentencePiece-style one, or copied from ``tokenizer_from`` (default: from
    ``weights_from``). A ChatML ``chat_template`` adds ``<|im_start|>``/``<|im_end|>`` as control
    tokens with ``<|im_end|>`` as eos/eot. ``n_expert > 0`` writes a Mixtral-style MoE.
    ``dtype`` is "f32", "f16" or "q8_0" (norms and the router stay F32). ``n_vocab`` grows the
    built-in vocabulary to that many tokens (filler pieces; see :func:`~._vocab.pad_vocab`).
    """
    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, not {dtype!r}")
    sh = _check_shape(n_layer, n_embd, n_head, n_head_kv, n_ff, n_expert, n_expert_used)
    qtype, ftype = _DTYPES[dtype]
    if tokenizer_from is None and weights_from is not None:
        tokenizer_from = weights_from
    vocab = _make_vocab(tokenizer_from, chat_template, n_vocab)
    src = _Source(weights_from) if weights_from is not None else None
    plan = _Plan(sh, vocab, qtype, seed, src)
    path = Path(path)
    _write_atomically(path, lambda w: _add_metadata(w, sh, vocab, ftype, context_length, name, weights_from),
                      plan.specs)
    return path
