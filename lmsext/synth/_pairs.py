"""Draft/target pairs for speculative decoding, generated from the embedded model (stories260K).

A useful draft must agree with its target, and random weights do not. The *target* here is the
source model's weights plus ``extra_layers`` more transformer blocks appended after its own: each
extra block copies the weights of one of the source's blocks (in turn), with its two output
projections (``attn_output`` and ``ffn_down``) multiplied by ``perturb``. At ``perturb=0`` those
projections are zero, each extra block adds nothing to the residual stream and the target predicts
what the source does, at more compute: the source model is then a perfect draft. A small
``perturb`` lets the extra blocks move the predictions a little, so a draft's acceptance falls
(:data:`PERTURBED` is the value measured to give 60-80 % greedy agreement with stories260K).

The width must stay the source's (the draft's embedding), and a llama GGUF has one feed-forward
width for all blocks: every block's feed-forward is padded with zero units to ``n_ff`` (default
:data:`WIDE_FF`; a zero unit adds exactly nothing). That makes one decode step read tens of MB of
weights, as a real model's step does, so a batch of proposed tokens costs far less than that many
steps — the cost structure speculative decoding exploits (a 64-wide model with its own 172 units is
compute-bound on a CPU and would not show it). Weights stay f32: of the weight types, f32 makes a
decode step most memory-bound (measured: a 9-token batch costs 2-3.5 single f32 steps, 8 in q8_0).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import numpy as np
from gguf import GGMLQuantizationType

from ._builders import _cached, _dense, _source
from ._model import _DTYPES, _add_metadata, _check_shape, _make_vocab, _Plan, _Spec, _write_atomically, read_hparams
from ._weights import _Source

#: Extra blocks of the default target (measured in benchmarks/speculative.py: one decode step of the
#: target costs many of the draft's, a verification batch of 8 tokens a few target steps).
EXTRA_LAYERS = 12
#: Feed-forward width of every block of a target (zero-padded; see the module docstring).
WIDE_FF = 8192
#: ``perturb`` of :func:`perturbed_target`: measured greedy agreement with stories260K 60-80 %
#: (tests/test_speculative.py::test_perturbed_pair_agreement).
PERTURBED = 0.4

_OUTPUT_PROJECTIONS = ("attn_output.weight", "ffn_down.weight")
_COPIED = ("attn_norm.weight", "attn_q.weight", "attn_k.weight", "attn_v.weight", "ffn_norm.weight",
           "ffn_gate.weight", "ffn_up.weight")


def _padded(src: _Source, name: str, n_ff: int, scale: float = 1.0) -> tuple[tuple[int, ...], Callable[[], np.ndarray]]:
    """Shape and values of source tensor ``name`` with its feed-forward axis zero-padded to ``n_ff``."""
    shape = src.shape(name)
    if name.endswith(("ffn_gate.weight", "ffn_up.weight")):
        shape = (n_ff, shape[1])
    elif name.endswith("ffn_down.weight"):
        shape = (shape[0], n_ff)

    def make() -> np.ndarray:
        data = src.get(name) * np.float32(scale)
        if data.shape == shape:
            return data
        out = np.zeros(shape, dtype=np.float32)
        out[:data.shape[0], :data.shape[1]] = data
        return out

    return shape, make


def _block(src: _Source, source_block: int, block: int, n_ff: int, perturb: float | None,
           qtype: GGMLQuantizationType) -> list[_Spec]:
    """Block ``block``'s tensors: source block ``source_block``'s, feed-forward padded to ``n_ff``; an extra
    block (``perturb`` not None) has its output projections × ``perturb`` and its matrices in ``qtype``."""
    specs = []
    for name in _COPIED + _OUTPUT_PROJECTIONS:
        scale = perturb if perturb is not None and name in _OUTPUT_PROJECTIONS else 1.0
        shape, make = _padded(src, f"blk.{source_block}.{name}", n_ff, scale)
        extra_matrix = perturb is not None and len(shape) > 1 and shape[-1] % 32 == 0
        specs.append(_Spec(f"blk.{block}.{name}", shape, qtype if extra_matrix else GGMLQuantizationType.F32, make))
    return specs


def write_layered_target(path: str | os.PathLike[str], source: str | os.PathLike[str], *,
                         extra_layers: int = EXTRA_LAYERS, perturb: float = 0.0, n_ff: int = WIDE_FF,
                         extra_dtype: str = "f32", name: str | None = None) -> Path:
    """Write ``source``'s weights plus ``extra_layers`` appended blocks (see the module docstring) to ``path``."""
    if extra_layers < 0:
        raise ValueError("extra_layers must be >= 0")
    hp = _dense(read_hparams(source))
    context_length = hp.pop("context_length")
    base = _check_shape(**hp, n_expert=0, n_expert_used=0)
    n_ff = max(n_ff, base.n_ff)
    qtype = _DTYPES[extra_dtype][0]
    vocab = _make_vocab(source, None, None)
    src = _Source(source)
    plan = _Plan(base, vocab, GGMLQuantizationType.F32, 0, src)
    specs = [spec for spec in plan.specs if not spec.name.startswith("blk.")]  # embeddings, final norm, output
    for i in range(base.n_layer):
        specs += _block(src, i, i, n_ff, None, qtype)
    for i in range(extra_layers):
        specs += _block(src, i % base.n_layer, base.n_layer + i, n_ff, perturb, qtype)
    total = _check_shape(**{**hp, "n_layer": base.n_layer + extra_layers, "n_ff": n_ff}, n_expert=0, n_expert_used=0)
    ftype = _DTYPES["f32"][1]
    fill: Callable = lambda w: _add_metadata(w, total, vocab, ftype, context_length, name, source)  # noqa: E731
    _write_atomically(Path(path), fill, specs)
    return Path(path)


def identity_target(dest: str | os.PathLike[str] | None = None, *, extra_layers: int = EXTRA_LAYERS,
                    n_ff: int = WIDE_FF) -> Path:
    """stories260K plus ``extra_layers`` identity blocks (cached): same greedy text, more compute per token.
    ``n_ff=0`` keeps the source's feed-forward width (a small, fast target for correctness tests)."""
    return _layered("identity", dest, extra_layers, 0.0, n_ff)


def perturbed_target(dest: str | os.PathLike[str] | None = None, *, extra_layers: int = EXTRA_LAYERS,
                     perturb: float = PERTURBED, n_ff: int = WIDE_FF) -> Path:
    """stories260K plus ``extra_layers`` slightly active blocks (cached): a draft's acceptance falls to 60-80 %."""
    return _layered("perturbed", dest, extra_layers, perturb, n_ff)


def _layered(kind: str, dest: str | os.PathLike[str] | None, extra_layers: int, perturb: float, n_ff: int) -> Path:
    src = _source(True)
    label = f"lmsext-synth-{kind}-target-stories260K+{extra_layers}"

    def build(path: Path) -> Path:
        return write_layered_target(path, src, extra_layers=extra_layers, perturb=perturb, n_ff=n_ff, name=label)

    args = {"extra_layers": extra_layers, "perturb": perturb, "n_ff": n_ff, "extra_dtype": "f32"}
    return _cached(f"{kind}-target", dest, args, src, build)
