"""How much memory a load will take — predicted before llama.cpp allocates anything.

:func:`estimate_memory` adds up, for a model file and a :class:`~.params.LoadPlan`:

* **weights** — the bytes of every tensor in the file (with mmap they are file pages, which count in
  the process's resident memory once touched, i.e. after the first prediction);
* **KV cache** — :meth:`LoadPlan.kv_cache_bytes` (cleared, hence resident, at load);
* **compute buffers** — llama.cpp's graph buffer for the worst-case batch (``n_ubatch`` tokens
  attending over the whole context) plus the CPU backend's work buffer and the logits. The graph
  allocator reuses memory, so the buffer is the largest of three phases (4-byte floats,
  ``T`` = n_ubatch, ``K`` = n_ctx, ``H``/``Hkv`` heads, ``E``/``Ekv`` widths, ``F`` the FFN width,
  ``V`` the vocabulary)::

      attention  mask + 4·T·K·H (the KQ matrix, without flash attention) + 4·T·(5.2·E + 1.9·Ekv)
      FFN        mask + 4·T·(3·F·experts_used + 4·E)
      output     4·(V + E) + 4·T·E   (lmsext asks for one row of logits per batch; llama.cpp reserves
                                      T rows, 4·T·V, but never touches them)

  with ``mask`` = 4·T·K bytes (2·T·K with flash attention). Without flash attention the CPU backend
  also converts the soft-maxed KQ matrix to the V cache's type for the KQV product: a work buffer of
  ``T·K·H`` elements. This matches the "compute buffer size" llama.cpp logs within 10 % on the
  generated test models (tests/test_memory.py checks it), and the measured growth of the resident
  set within 20 %;
  With ``maxParallelPredictions`` N the logits and the output phase hold N rows; the KV cache is
  ``contextLength`` cells either way (unified: one pool every sequence draws from; not unified:
  ``contextLength / N`` cells per sequence), so N costs memory only through those rows;
* **VRAM** — on a GPU build, :func:`split_by_device` puts each of these on the device llama.cpp will
  (weights by layer, ``token_embd`` in RAM; a block's KV cache with its layer; a compute buffer per GPU),
  so ``weights``/``kv_cache`` count RAM only and ``vram`` holds each GPU's share;
* **overhead** — llama.cpp's per-model and per-context bookkeeping (tensor metadata, the vocabulary's
  maps, graph metadata, thread scratch): a few MB.

:func:`available_memory` asks psutil (``MemAvailable`` on Linux);
:func:`check_fits` refuses a load whose estimate exceeds it, with the numbers, unless forced.
"""

from __future__ import annotations

from typing import Any

import psutil

from ..backend import MemoryEstimate, ModelInfo
from ..errors import InsufficientMemoryError
from ..units import format_bytes
from . import devices
from .params import CACHE_TYPES, LoadPlan
from .validate import validate_gguf

#: Fixed bookkeeping per loaded instance (model + context), and per vocabulary entry.
BASE_OVERHEAD = 1024 * 1024
PER_TOKEN_OVERHEAD = 48


def _hparam(summary: Any, info: ModelInfo, key: str, default: int = 0) -> int:
    value = summary.metadata.get(f"{info.architecture}.{key}") if summary is not None else None
    if isinstance(value, list):
        value = max(value) if value else default
    try:
        return int(value) if value is not None else default
    except (TypeError, ValueError):
        return default


def compute_bytes(info: ModelInfo, plan: LoadPlan, n_ff: int, n_vocab: int = 0) -> int:
    """llama.cpp's compute buffer + CPU work buffer + logits for ``plan`` (see the module docstring)."""
    ctx = plan.context_params
    T = int(ctx.get("n_ubatch") or ctx.get("n_batch") or 512)
    K = int(plan.effective["context_length"])
    H = max(info.n_head, 1)
    E = info.n_embd
    E_kv = E // H * max(info.n_head_kv, 1)
    V = max(n_vocab or info.n_vocab, 1)
    fa = bool(plan.effective.get("flash_attention"))
    experts = max(int(plan.effective.get("num_experts") or 0), 1) if info.is_moe else 1
    mask = (2 if fa else 4) * T * K
    attention = mask + (0 if fa else 4 * T * K * H) + int(4 * T * (5.2 * E + 1.9 * E_kv))
    ffn = mask + 4 * T * (3 * n_ff * experts + 4 * E) + (4 * T * info.expert_count if info.is_moe else 0)
    # llama.cpp reserves room for T rows of logits, but lmsext asks for the last token's only
    # (llama_batch_get_one): those pages are never touched, so they do not count here
    # continuous batching (maxParallelPredictions N): one row of logits per sequence in a step
    n_seq = max(int(plan.context_params.get("n_seq_max") or 1), 1)
    output = 4 * n_seq * (V + E) + 4 * T * E
    graph = max(attention, ffn, output)
    # the work buffer grows batch by batch as the context fills; the allocator keeps about half of
    # the outgrown buffers around (measured), hence 1.5×
    work = 0 if fa else int(1.5 * T * K * H * CACHE_TYPES[plan.effective["llama_v_cache_quantization_type"]][1])
    logits = 4 * n_seq * (V + E)  # llama.cpp's output buffer holds n_seq_max rows
    return graph + work + logits


def estimate_memory(info: ModelInfo, plan: LoadPlan, *, available: int | None = None) -> MemoryEstimate:
    """Predict what loading ``info``'s file with ``plan`` takes (nothing is loaded)."""
    summary = validate_gguf(info.path)
    n_ff = _hparam(summary, info, "feed_forward_length") or _hparam(summary, info, "expert_feed_forward_length") \
        or 4 * info.n_embd
    n_vocab = summary.array_lengths.get("tokenizer.ggml.tokens") or info.n_vocab
    compute = compute_bytes(info, plan, n_ff, n_vocab)
    weights, kv, vram, vram_free = split_by_device(summary, info, plan, compute)
    return MemoryEstimate(weights=weights, kv_cache=kv, compute=compute,
                          overhead=BASE_OVERHEAD + PER_TOKEN_OVERHEAD * n_vocab,
                          available=available_memory() if available is None else available,
                          vram=vram, vram_free=vram_free)


def split_by_device(summary: Any, info: ModelInfo, plan: LoadPlan, compute: int,
                    gpus: list[devices.Device] | None = None) -> tuple[int, int, dict[str, int], dict[str, int]]:
    """(weights in RAM, KV cache in RAM, bytes per GPU, free bytes per GPU) as llama.cpp will place them:
    each tensor on its layer's device (:func:`.devices.layer_devices`; ``token_embd`` always in RAM, and a
    model without ``output.weight`` copies it to the output layer's device too), each block's KV cache on
    its layer's device when ``offload_kqv`` (else in RAM), and a compute buffer on every GPU holding layers.
    ``gpus``: the GPUs to place on (default: the ones llama.cpp enumerates now)."""
    if gpus is None:
        gpus = devices.gpu_devices() if plan.gpu_layers_offloaded else []
    split = list(plan.model_params.get("tensor_split") or [d.free_bytes or 1 for d in gpus])
    where = devices.layer_devices(info.n_layer, plan.gpu_layers_offloaded, split[:len(gpus)])
    vram = {d.name: 0 for d in gpus}
    ram = 0
    names = {t.name for t in summary.tensors}
    for t in summary.tensors:
        layer = devices.tensor_layer(t.name, info.n_layer)
        dev = where[layer] if layer is not None and layer < len(where) else None
        if dev is None:
            ram += t.nbytes
        else:
            vram[gpus[dev].name] += t.nbytes
        if t.name == "token_embd.weight" and "output.weight" not in names and where and where[-1] is not None:
            vram[gpus[where[-1]].name] += t.nbytes  # tied embeddings: llama.cpp duplicates them as the output
    kv_total = plan.kv_cache_bytes()
    kv_per_layer = kv_total / max(info.n_layer, 1)
    kv_ram = kv_total
    if plan.context_params.get("offload_kqv"):
        for layer in range(info.n_layer):
            if where[layer] is not None:
                vram[gpus[where[layer]].name] += int(kv_per_layer)
                kv_ram -= int(kv_per_layer)
    for i in {d for d in where if d is not None}:
        vram[gpus[i].name] += compute
    return ram, max(kv_ram, 0), {k: v for k, v in vram.items() if v}, {d.name: d.free_bytes for d in gpus}


def available_memory() -> int | None:
    """Bytes the system can give without swapping (``psutil.virtual_memory().available``: Linux's
    ``MemAvailable``), or None where psutil cannot tell."""
    try:
        return int(psutil.virtual_memory().available)
    except (OSError, RuntimeError, AttributeError):  # pragma: no cover - a platform psutil does not know
        return None


def check_fits(estimate: MemoryEstimate, name: str, *, force: bool = False) -> None:
    """Refuse (:class:`InsufficientMemoryError`) a load the estimate says does not fit — in RAM, or on any
    one GPU (the per-device guardrail) — unless ``force``."""
    if force or estimate.fits is not False:
        return
    for dev in estimate.vram_over:
        raise InsufficientMemoryError(
            f"not loading {name}: its share on {dev} needs about {format_bytes(estimate.vram[dev])} but {dev} has "
            f"{format_bytes(estimate.vram_free.get(dev, 0))} free; lower gpu (the offload ratio), contextLength, "
            "or pass force=True (--force) to load anyway", estimate=estimate)
    raise InsufficientMemoryError(
        f"not loading {name}: it needs about {format_bytes(estimate.total)} ({estimate.describe().split(' (')[0]}) "
        f"but only {format_bytes(estimate.available or 0)} is available; lower contextLength (or use flash "
        "attention / a quantized KV cache), free memory, or pass force=True (--force) to load anyway",
        estimate=estimate)


def rss_bytes() -> int:
    """This process's resident set size (psutil)."""
    return int(psutil.Process().memory_info().rss)  # built per call: a forked child is another pid


__all__ = ["MemoryEstimate", "available_memory", "check_fits", "compute_bytes", "estimate_memory", "rss_bytes"]
