"""LoadModelConfig: how a model is loaded (LM Studio's ``LLMLoadModelConfig``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Literal

from pydantic import ConfigDict, StrictBool

from .constants import CACHE_QUANTIZATION_TYPES, MAX_PARALLEL_PREDICTIONS, MAX_SEED
from .gpu import GPU_ALLOWED, GpuSetting
from .limits import check_load_limits
from .settings_base import SettingsModel, setting
from .spelling import alias_generator
from .value_types import FalseOnly, NonNegativeInt, PositiveFloat, PositiveInt, SeedInt, quoted

_CACHE_TYPE = Literal[CACHE_QUANTIZATION_TYPES]  # type: ignore[valid-type]
_CACHE_ALLOWED = f"one of {quoted(CACHE_QUANTIZATION_TYPES)}, or False for the model default (f16)"
_BOOL = "True or False"

#: Keys a load response's ``config`` reports but no request sets (derived from the settings): dropped on input,
#: so that any load response's config sent back as a request loads the same configuration.
REPORT_ONLY_KEYS = ("decode_threads", "decodeThreads")


class LoadModelConfig(SettingsModel):
    """Load-time settings of a model. Every field defaults to None = not set (engine/model default).

    Keys are accepted in snake_case (``context_length``, also LM Studio's REST names), LM Studio SDK
    camelCase (``contextLength``, ``offloadKVCacheToGpu``) and ``gpuOffload``/``gpu_offload`` for
    ``gpu``. Values are strictly typed: bools are not integers and numeric strings such as ``"4096"``
    are rejected rather than converted. Any problem raises :class:`~lmsext.errors.ConfigError`.
    """

    model_config = ConfigDict(alias_generator=alias_generator({"gpu": ("gpuOffload", "gpu_offload"),
                                                                "use_unified_kv_cache": ("useUnifiedKVCache",)}))
    setting_kind: ClassVar[str] = "load"

    def check_limits(self) -> None:
        """The upper limits of :mod:`lmsext.config.limits` (``parse`` calls this)."""
        check_load_limits(self)
    root_allowed: ClassVar[str] = "a dict (any key spelling), a LoadModelConfig or None"

    @classmethod
    def expand_shorthand(cls, data: Any) -> Any:
        """A load response's ``config`` comes back as a request: its report-only keys are dropped, and LM Studio
        0.4's ``parallel`` is ``max_parallel_predictions`` (where that is not given as well)."""
        if not isinstance(data, Mapping) or not any(key in data for key in (*REPORT_ONLY_KEYS, "parallel")):
            return data
        out = {key: value for key, value in data.items() if key not in REPORT_ONLY_KEYS and key != "parallel"}
        if "parallel" in data and not {"max_parallel_predictions", "maxParallelPredictions"} & set(data):
            out["max_parallel_predictions"] = data["parallel"]
        return out

    gpu: GpuSetting | None = setting(GPU_ALLOWED, "GPU offload: ratio, main GPU, split strategy, disabled GPUs.")
    gpu_strict_vram_cap: StrictBool | None = setting(_BOOL, "Never spill model weights to shared GPU memory.")
    offload_kv_cache_to_gpu: StrictBool | None = setting(_BOOL, "Keep the KV cache in GPU memory.")
    context_length: PositiveInt | None = setting("an integer >= 1", "Context size in tokens.")
    rope_frequency_base: PositiveFloat | FalseOnly | None = setting(
        "a number > 0, or False for the model default", "RoPE frequency base.")
    rope_frequency_scale: PositiveFloat | FalseOnly | None = setting(
        "a number > 0, or False for the model default", "RoPE frequency scale.")
    eval_batch_size: PositiveInt | None = setting("an integer >= 1", "Prompt tokens processed per batch.")
    flash_attention: StrictBool | None = setting(_BOOL, "Use flash attention.")
    keep_model_in_memory: StrictBool | None = setting(_BOOL, "Lock the model in RAM (no swapping).")
    seed: SeedInt | None = setting(f"an integer from 0 to {MAX_SEED}", "Random seed of the context.")
    use_fp16_for_kv_cache: StrictBool | None = setting(_BOOL, "Store the KV cache in 16-bit floats.")
    try_mmap: StrictBool | None = setting(_BOOL, "Memory-map the model file when possible.")
    cpu_thread_pool_size: PositiveInt | None = setting(
        "an integer >= 1", "CPU threads for prompt batches, and the most a decode step uses.")
    num_experts: NonNegativeInt | None = setting(
        "an integer >= 0 (0 or omitted = the model's default)", "Experts used per token by MoE models.")
    llama_k_cache_quantization_type: _CACHE_TYPE | FalseOnly | None = setting(
        _CACHE_ALLOWED, "Data type of the K cache.")
    llama_v_cache_quantization_type: _CACHE_TYPE | FalseOnly | None = setting(
        _CACHE_ALLOWED, "Data type of the V cache.")
    max_parallel_predictions: PositiveInt | None = setting(
        f"an integer from 1 to {MAX_PARALLEL_PREDICTIONS}",
        "Predictions decoded together (continuous batching); more wait in a FIFO queue. 1 = one at a time.")
    use_unified_kv_cache: StrictBool | None = setting(
        _BOOL, "Parallel predictions share one KV cache of contextLength tokens (else contextLength/N each).")
