"""THE mapping from LM Studio load settings to llama.cpp parameters.

:data:`LOAD_SETTINGS` is the one table: each row names an LM Studio setting, the llama.cpp
parameter(s) it drives and the function that applies it. :func:`plan_load` runs every row over a
:class:`~lmsext.config.LoadModelConfig` and the file's :class:`~.gguf_info.ModelInfo` and returns
a :class:`LoadPlan`: the ``llama_model_params`` / ``llama_context_params`` values, metadata
overrides, the *effective* value of every setting (defaults included) and a note for every setting
that was requested but applied differently, with the reason. Nothing is dropped silently; settings
that cannot work raise :class:`~lmsext.errors.ConfigError` before llama.cpp is called.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable

import llama_cpp

from ..config import CONTEXT_STEP, DEFAULT_CONTEXT_LENGTH, LoadModelConfig
from ..errors import ConfigError
from . import _lib, devices, threads
from .gguf_info import ModelInfo

# CONTEXT_STEP (llama.cpp pads the KV cache to a multiple of it) and DEFAULT_CONTEXT_LENGTH are facts in lmsext.config
DEFAULT_EVAL_BATCH_SIZE = 512
#: Off on a CPU-only build (measured: ~3× slower for small models on CPU, docs/settings.md); llama.cpp's
#: AUTO where layers go to a GPU (it enables flash attention when every layer's device supports it).
DEFAULT_FLASH_ATTENTION = False
#: Except on an instance that decodes several sequences at once (maxParallelPredictions > 1) of a model whose
#: attention heads are at least this wide: there flash attention is the faster path on CPU too (measured on 2 cores,
#: 4 streams: the 1B-wide Q8_0 slice 206 → 347 tok/s, the 60M F16 model 211 → 241; stories260K, head size 8,
#: 3,433 → 3,041, so it stays off there) — and it is what llama.cpp's server runs (AUTO).
PARALLEL_FLASH_ATTENTION_MIN_HEAD_DIM = 32
#: Quantized cache types store blocks of this many elements; a head size must be a multiple of it.
QUANT_BLOCK = 32

#: LM Studio cache quantization names → ggml types (and bytes per element, for memory estimates).
CACHE_TYPES: dict[str, tuple[int, float]] = {
    "f32": (llama_cpp.GGML_TYPE_F32, 4.0),
    "f16": (llama_cpp.GGML_TYPE_F16, 2.0),
    "q8_0": (llama_cpp.GGML_TYPE_Q8_0, 34 / 32),
    "q4_0": (llama_cpp.GGML_TYPE_Q4_0, 18 / 32),
    "q4_1": (llama_cpp.GGML_TYPE_Q4_1, 20 / 32),
    "iq4_nl": (llama_cpp.GGML_TYPE_IQ4_NL, 18 / 32),
    "q5_0": (llama_cpp.GGML_TYPE_Q5_0, 22 / 32),
    "q5_1": (llama_cpp.GGML_TYPE_Q5_1, 24 / 32),
}


@dataclass
class LoadPlan:
    """Everything needed to load one model instance, and what to report about it."""

    info: ModelInfo
    model_params: dict[str, Any] = field(default_factory=dict)
    context_params: dict[str, Any] = field(default_factory=dict)
    kv_overrides: dict[str, int | float | bool | str] = field(default_factory=dict)
    effective: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    default_seed: int | None = None
    gpu_layers_requested: int = 0
    gpu_layers_offloaded: int = 0
    #: block layers whose KV cache llama.cpp puts on a GPU (planned; measured after the load)
    kv_layers_on_gpu: int = 0

    @property
    def offloadable_layers(self) -> int:
        """Layers llama.cpp counts for offload: the blocks plus the output layer."""
        return self.info.n_layer + 1

    def cache_bytes_per_element(self) -> tuple[float, float]:
        """Bytes per K and per V cache element for the planned cache types."""
        return (CACHE_TYPES[self.effective["llama_k_cache_quantization_type"]][1],
                CACHE_TYPES[self.effective["llama_v_cache_quantization_type"]][1])

    def kv_cache_bytes(self) -> int:
        """Size of the KV cache this plan allocates, from the model's shape and cache types."""
        info = self.info
        per_token_elems = info.n_layer * info.head_dim * info.n_head_kv
        k_b, v_b = self.cache_bytes_per_element()
        return int(self.effective["context_length"] * per_token_elems * (k_b + v_b))


@dataclass(frozen=True)
class Setting:
    """One row of the table: an LM Studio load setting and the llama.cpp parameters it drives."""

    name: str
    llama_params: str
    apply: Callable[[LoadModelConfig, LoadPlan], None] | None
    #: for a setting applied together with another row (``apply`` is then None): that row's name
    applied_with: str | None = None


def _requested(cfg: LoadModelConfig, name: str) -> Any:
    return getattr(cfg, name) if name in cfg.model_fields_set else None


def _apply_context_length(cfg: LoadModelConfig, plan: LoadPlan) -> None:
    trained = plan.info.trained_context or DEFAULT_CONTEXT_LENGTH
    asked = _requested(cfg, "context_length")
    value = asked if asked is not None else min(DEFAULT_CONTEXT_LENGTH, trained)
    allocated = -(-value // CONTEXT_STEP) * CONTEXT_STEP
    if asked is not None and allocated != asked:
        plan.notes.append(
            f"context_length {asked} → {allocated}: llama.cpp allocates the KV cache in "
            f"multiples of {CONTEXT_STEP} tokens")
    if allocated > trained:
        plan.notes.append(
            f"context_length {allocated} exceeds the {trained} tokens the model was trained on: "
            "expect degraded output past that point")
    plan.context_params["n_ctx"] = allocated
    plan.effective["context_length"] = allocated


def _apply_eval_batch_size(cfg: LoadModelConfig, plan: LoadPlan) -> None:
    asked = _requested(cfg, "eval_batch_size")
    value = asked if asked is not None else DEFAULT_EVAL_BATCH_SIZE
    n_ctx = plan.context_params["n_ctx"]
    if value > n_ctx:
        if asked is not None:
            plan.notes.append(f"eval_batch_size {asked} → {n_ctx}: a batch cannot exceed the context length")
        value = n_ctx
    plan.context_params["n_batch"] = value
    plan.context_params["n_ubatch"] = min(value, DEFAULT_EVAL_BATCH_SIZE)
    plan.effective["eval_batch_size"] = value


def _apply_flash_attention(cfg: LoadModelConfig, plan: LoadPlan) -> None:
    """Off by default on CPU; AUTO (llama.cpp decides, the load log says what) when layers go to a GPU."""
    asked = _requested(cfg, "flash_attention")
    if asked is None and plan.gpu_layers_offloaded > 0:
        plan.context_params["flash_attn_type"] = llama_cpp.LLAMA_FLASH_ATTN_TYPE_AUTO
        plan.effective["flash_attention"] = True  # what AUTO resolves to on a GPU; the load log corrects it
        return
    value = _default_flash_attention(cfg, plan) if asked is None else bool(asked)
    plan.context_params["flash_attn_type"] = (
        llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED if value else llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED)
    plan.effective["flash_attention"] = value


def _default_flash_attention(cfg: LoadModelConfig, plan: LoadPlan) -> bool:
    """Off on CPU, but on for parallel predictions on a model with heads wide enough (see the constants)."""
    parallel = _requested(cfg, "max_parallel_predictions") or 1
    return DEFAULT_FLASH_ATTENTION or (parallel > 1 and plan.info.head_dim >= PARALLEL_FLASH_ATTENTION_MIN_HEAD_DIM)


def _gpu_ratio(gpu: Any, has_gpu: bool) -> float:
    ratio: Any = getattr(gpu, "ratio", None) if gpu is not None else None
    if ratio is None:
        ratio = "max" if has_gpu else "off"
    if ratio == "max":
        return 1.0
    if ratio == "off" or ratio is False:
        return 0.0
    return float(ratio)


def _apply_gpu(cfg: LoadModelConfig, plan: LoadPlan) -> None:
    gpu = _requested(cfg, "gpu")
    gpus = devices.gpu_devices()
    has_gpu = bool(gpus)
    total = plan.offloadable_layers
    ratio_value = _gpu_ratio(gpu, has_gpu)
    layers = round(ratio_value * total)
    plan.gpu_layers_requested = layers
    plan.gpu_layers_offloaded = layers if has_gpu else 0
    plan.model_params["n_gpu_layers"] = layers
    main_gpu = getattr(gpu, "main_gpu", None) if gpu is not None else None
    split = getattr(gpu, "split_strategy", None) if gpu is not None else None
    disabled = list(getattr(gpu, "disabled_gpus", None) or []) if gpu is not None else []
    plan.model_params["main_gpu"] = main_gpu or 0
    plan.model_params["split_mode"] = llama_cpp.LLAMA_SPLIT_MODE_LAYER
    if has_gpu:
        devices.check_indexes(main_gpu, disabled, gpus)
        free = [0 if d.index in disabled else (d.free_bytes or 1) for d in gpus]
        if split == "favorMainGpu":
            need = int(plan.info.file_size * layers / max(total, 1))
            plan.model_params["tensor_split"] = devices.favor_main_split(free, main_gpu or 0, need)
        elif disabled:
            plan.model_params["tensor_split"] = [float(f) for f in free]
    plan.effective["gpu"] = {
        "ratio": ratio_value,
        "layers": plan.gpu_layers_offloaded,
        "total_layers": total,
        "main_gpu": main_gpu or 0,
        "split_strategy": split or "evenly",
        "disabled_gpus": disabled,
    }
    if not has_gpu and (layers or main_gpu or split or disabled):
        plan.notes.append(
            f"gpu {_asked_ratio(gpu)} requested → 0 of {total} layers offloaded: {no_gpu_reason()}")


def _asked_ratio(gpu: Any) -> Any:
    ratio = getattr(gpu, "ratio", None) if gpu is not None else None
    return "off" if ratio is None else ratio


def no_gpu_reason(hint: bool = True) -> str:
    """Why nothing goes to a GPU here: a CPU-only build (with how to get a GPU build), or a GPU build that
    found no GPU."""
    if not _lib.supports_gpu_offload():
        return "this build of llama.cpp has no GPU backend" + (
            " (reinstall with CMAKE_ARGS=\"-DGGML_CUDA=on\")" if hint else "")
    return "this GPU build of llama.cpp found no GPU on this machine"


def _apply_gpu_strict_vram_cap(cfg: LoadModelConfig, plan: LoadPlan) -> None:
    asked = _requested(cfg, "gpu_strict_vram_cap")
    plan.effective["gpu_strict_vram_cap"] = bool(asked)
    if asked and not _lib.supports_gpu_offload():
        plan.notes.append("gpu_strict_vram_cap has no effect: this build of llama.cpp has no GPU backend")
    elif asked:
        plan.notes.append("gpu_strict_vram_cap: llama.cpp enforces no VRAM cap; lmsext's per-device memory guardrail "
                          "refuses a load whose estimate exceeds a GPU's free memory (unless forced)")


def _apply_offload_kv(cfg: LoadModelConfig, plan: LoadPlan) -> None:
    """``offload_kqv`` puts a layer's KV cache on that layer's device: with partial offload the CPU layers'
    KV stays in RAM (the output layer, offloaded first, has no KV). Reported true when all of it is on GPUs."""
    asked = _requested(cfg, "offload_kv_cache_to_gpu")
    want = True if asked is None else bool(asked)
    plan.context_params["offload_kqv"] = want
    n_layer = plan.info.n_layer
    plan.kv_layers_on_gpu = max(min(plan.gpu_layers_offloaded, plan.offloadable_layers) - 1, 0) if want else 0
    really = want and n_layer > 0 and plan.kv_layers_on_gpu >= n_layer
    plan.effective["offload_kv_cache_to_gpu"] = really
    if asked and not really:
        plan.notes.append(f"offload_kv_cache_to_gpu true requested → {kv_placement_words(plan.kv_layers_on_gpu, n_layer)}")


def kv_placement_words(on_gpu: int, n_layer: int) -> str:
    """Where the KV cache is, in words, for the notes."""
    if on_gpu <= 0:
        why = no_gpu_reason(hint=False) if not devices.gpu_devices() else "no layers are offloaded to the GPU"
        return f"KV cache stays in RAM: {why}"
    return (f"the KV cache of {on_gpu} of {n_layer} layers is on the GPU, of {n_layer - on_gpu} in RAM (llama.cpp "
            "keeps a CPU layer's KV cache in RAM)")


def _apply_rope(name: str, param: str, metadata_key: str) -> Callable[[LoadModelConfig, LoadPlan], None]:
    def apply(cfg: LoadModelConfig, plan: LoadPlan) -> None:
        asked = _requested(cfg, name)
        if asked:
            plan.context_params[param] = float(asked)
            plan.effective[name] = float(asked)
        else:
            plan.context_params[param] = 0.0  # 0 = the model's own value
            plan.effective[name] = False
    return apply


def _apply_memory_mode(cfg: LoadModelConfig, plan: LoadPlan) -> None:
    mmap_asked = _requested(cfg, "try_mmap")
    keep_asked = _requested(cfg, "keep_model_in_memory")
    use_mmap = True if mmap_asked is None else bool(mmap_asked)
    if use_mmap and not _lib.supports_mmap():
        plan.notes.append("try_mmap: memory mapping is not supported on this platform; reading the file instead")
        use_mmap = False
    mlock = bool(keep_asked)
    if mlock and not _lib.supports_mlock():
        plan.notes.append("keep_model_in_memory: mlock is not supported on this platform")
        mlock = False
    plan.model_params["load_mode"] = {
        (True, False): llama_cpp.LLAMA_LOAD_MODE_MMAP,
        (True, True): llama_cpp.LLAMA_LOAD_MODE_MMAP_MLOCK,
        (False, True): llama_cpp.LLAMA_LOAD_MODE_MLOCK,
        (False, False): llama_cpp.LLAMA_LOAD_MODE_NONE,
    }[(use_mmap, mlock)]
    plan.effective["try_mmap"] = use_mmap
    plan.effective["keep_model_in_memory"] = mlock


def _apply_seed(cfg: LoadModelConfig, plan: LoadPlan) -> None:
    asked = _requested(cfg, "seed")
    plan.default_seed = asked
    plan.effective["seed"] = asked


def _apply_kv_cache_types(cfg: LoadModelConfig, plan: LoadPlan) -> None:
    fp16 = _requested(cfg, "use_fp16_for_kv_cache")
    base = "f32" if fp16 is False else "f16"
    k = _requested(cfg, "llama_k_cache_quantization_type") or base
    v = _requested(cfg, "llama_v_cache_quantization_type") or base
    if v not in ("f16", "f32") and not plan.effective["flash_attention"]:
        raise ConfigError(
            f"llamaVCacheQuantizationType={v!r} needs flash attention: set flashAttention=True "
            "(llama.cpp cannot quantize the V cache without it)",
            key="llama_v_cache_quantization_type", value=v, allowed="f16/f32 without flash attention")
    head_dim = plan.info.head_dim
    for key, kind in (("llama_k_cache_quantization_type", k), ("llama_v_cache_quantization_type", v)):
        if kind not in ("f16", "f32") and head_dim % QUANT_BLOCK:
            raise ConfigError(
                f"{key}={kind!r}: this model's attention head size {head_dim} is not a multiple of the "
                f"{QUANT_BLOCK}-element quantization block; use f16", key=key, value=kind, allowed="f16/f32")
    plan.context_params["type_k"] = CACHE_TYPES[k][0]
    plan.context_params["type_v"] = CACHE_TYPES[v][0]
    plan.effective["use_fp16_for_kv_cache"] = fp16 is not False
    plan.effective["llama_k_cache_quantization_type"] = k
    plan.effective["llama_v_cache_quantization_type"] = v


def _apply_num_experts(cfg: LoadModelConfig, plan: LoadPlan) -> None:
    asked = _requested(cfg, "num_experts") or None  # 0 = the model's default (LM Studio's SDK and REST)
    info = plan.info
    if asked is not None:
        if not info.is_moe:
            raise ConfigError(
                f"numExperts={asked}: {os.path.basename(info.path)} is a dense model with no experts "
                "(omit numExperts)", key="num_experts", value=asked, allowed="only for MoE models")
        if not 1 <= asked <= info.expert_count:
            raise ConfigError(
                f"numExperts={asked}: this model has {info.expert_count} experts; choose 1..{info.expert_count}",
                key="num_experts", value=asked, allowed=f"1..{info.expert_count}")
        if asked != info.expert_used_count:  # the model's own count needs no override (a load response echoed)
            plan.kv_overrides[f"{info.architecture}.expert_used_count"] = int(asked)
    plan.effective["num_experts"] = asked if asked is not None else info.expert_used_count


#: ``maxParallelPredictions`` when unset: one prediction at a time (see docs/parallel.md for why, measured).
DEFAULT_MAX_PARALLEL_PREDICTIONS = 1
#: ``useUnifiedKvCache`` when unset: LM Studio's default, every sequence may use the whole context.
DEFAULT_UNIFIED_KV_CACHE = True


def _apply_parallel(cfg: LoadModelConfig, plan: LoadPlan) -> None:
    """``maxParallelPredictions`` → ``n_seq_max`` (sequences the context holds at once); ``useUnifiedKvCache``
    → ``kv_unified``: one pool of ``n_ctx`` cells for all, or ``n_ctx / N`` cells for each sequence."""
    asked = _requested(cfg, "max_parallel_predictions")
    n = DEFAULT_MAX_PARALLEL_PREDICTIONS if asked is None else int(asked)
    unified_asked = _requested(cfg, "use_unified_kv_cache")
    unified = DEFAULT_UNIFIED_KV_CACHE if unified_asked is None else bool(unified_asked)
    plan.context_params["n_seq_max"] = n
    plan.context_params["kv_unified"] = unified
    plan.effective["max_parallel_predictions"] = n
    plan.effective["use_unified_kv_cache"] = unified
    if not unified and n > 1:
        per_seq = plan.context_params["n_ctx"] // n
        if per_seq < 1:
            raise ConfigError(
                f"maxParallelPredictions={n} with useUnifiedKvCache false: a context of "
                f"{plan.context_params['n_ctx']} tokens cannot be split {n} ways; raise contextLength or use a "
                "unified KV cache", key="max_parallel_predictions", value=n, allowed=f"at most {plan.context_params['n_ctx']}")
        plan.notes.append(f"use_unified_kv_cache false: each of the {n} parallel predictions holds at most "
                          f"{per_seq} tokens (context_length / {n})")


#: Below this many parameters one decode thread is faster than several (thread sync dominates:
#: stories260K decodes at ~3,500 tok/s on 1 thread vs ~2,100 on 2 here).
SINGLE_THREAD_DECODE_BELOW = 20_000_000


def _apply_threads(cfg: LoadModelConfig, plan: LoadPlan) -> None:
    """Threads: the pool is the physical cores (``cpuThreadPoolSize`` sets it, capped by the CPUs this
    process may use); prompt batches use the pool, decode steps adapt between the pool and fewer
    (:class:`~.threads.DecodeThreads`: a process holding a core stalls every ggml barrier)."""
    asked = _requested(cfg, "cpu_thread_pool_size")
    cpus = threads.available_cpus()
    pool = threads.physical_cores() if asked is None else min(asked, cpus)
    if asked is not None and asked > cpus:
        plan.notes.append(
            f"cpu_thread_pool_size {asked} → {cpus}: this process may use {cpus} CPU(s); more threads than "
            "CPUs wait for each other at every step of a token (far slower, see docs/performance.md)")
    small = plan.info.parameter_count < SINGLE_THREAD_DECODE_BELOW
    plan.context_params["n_threads"] = 1 if small else pool
    plan.context_params["n_threads_batch"] = pool
    plan.effective["cpu_thread_pool_size"] = pool
    plan.effective["decode_threads"] = {"max": 1 if small else pool, "adaptive": not small and pool > 1,
                                        "barrier_wait": threads.WAIT_POLICY}


#: THE table. Order matters where a row reads another's result (gpu before flash attention and the KV offload,
#: flash attention before cache types, context length before the batch size).
LOAD_SETTINGS: tuple[Setting, ...] = (
    Setting("context_length", "n_ctx (rounded up to a multiple of 256)", _apply_context_length),
    Setting("eval_batch_size", "n_batch, n_ubatch (≤ 512)", _apply_eval_batch_size),
    Setting("gpu", "n_gpu_layers (ratio × (layers + 1)), main_gpu, split_mode, tensor_split", _apply_gpu),
    Setting("flash_attention", "flash_attn_type", _apply_flash_attention),
    Setting("gpu_strict_vram_cap", "— (GPU builds only)", _apply_gpu_strict_vram_cap),
    Setting("offload_kv_cache_to_gpu", "offload_kqv", _apply_offload_kv),
    Setting("rope_frequency_base", "rope_freq_base (0 = from model)",
            _apply_rope("rope_frequency_base", "rope_freq_base", "rope.freq_base")),
    Setting("rope_frequency_scale", "rope_freq_scale (0 = from model)",
            _apply_rope("rope_frequency_scale", "rope_freq_scale", "rope.scale_linear")),
    Setting("try_mmap", "load_mode (MMAP)", _apply_memory_mode),
    Setting("keep_model_in_memory", "load_mode (MLOCK)", None, applied_with="try_mmap"),
    Setting("seed", "default sampler seed of the instance", _apply_seed),
    Setting("use_fp16_for_kv_cache", "type_k, type_v (f16 or f32)", _apply_kv_cache_types),
    Setting("llama_k_cache_quantization_type", "type_k", None, applied_with="use_fp16_for_kv_cache"),
    Setting("llama_v_cache_quantization_type", "type_v (needs flash attention unless f16/f32)", None,
            applied_with="use_fp16_for_kv_cache"),
    Setting("num_experts", "kv_overrides[<arch>.expert_used_count]", _apply_num_experts),
    Setting("cpu_thread_pool_size", "n_threads_batch; n_threads = the most a decode step uses (adaptive; "
            "cpuThreads per prediction fixes both)", _apply_threads),
    Setting("decode_threads", "n_threads per decode step (1 below 20 M parameters)", None,
            applied_with="cpu_thread_pool_size"),
    Setting("max_parallel_predictions", "n_seq_max (sequences decoded together; 1 = one prediction at a time)",
            _apply_parallel),
    Setting("use_unified_kv_cache", "kv_unified (one KV pool of n_ctx cells, or n_ctx / n_seq_max per sequence)",
            None, applied_with="max_parallel_predictions"),
)


def plan_load(config: LoadModelConfig, info: ModelInfo) -> LoadPlan:
    """Run every row of :data:`LOAD_SETTINGS`; raise :class:`ConfigError` for impossible settings."""
    plan = LoadPlan(info=info)
    for setting in LOAD_SETTINGS:
        if setting.apply is not None:
            setting.apply(config, plan)
    return plan
