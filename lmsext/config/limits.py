"""Upper limits of the settings: what llama.cpp's C parameters can hold. ``LoadModelConfig.parse`` and
``PredictionConfig.parse`` apply them, so a parsed config is always in range (the pydantic fields carry
the lower bounds); the engine adds only what needs llama.cpp at run time (GPU indexes against the devices
present). Kept as checks after validation rather than ``le=`` constraints on the fields so that each
message says "must be at most N" with the key in the caller's spelling, as the bad-input table pins.
"""

from __future__ import annotations

from typing import Any

from ..errors import ConfigError
from .constants import MAX_PARALLEL_PREDICTIONS

#: llama.cpp's ``LLAMA_MAX_EXPERTS``: ``numExperts`` and a model's expert count stay below it.
MAX_EXPERTS = 512

#: Integer settings end up in C ``int32``/``uint32`` parameters: larger values would wrap around.
MAX_INT32 = 2**31 - 1
#: More threads than this is never useful, and far more (100,000) crashes ggml's thread pool.
MAX_THREADS = 512
_PREDICTION_LIMITS = (("max_tokens", "maxTokens", MAX_INT32), ("top_k_sampling", "topKSampling", MAX_INT32),
                      ("cpu_threads", "cpuThreads", MAX_THREADS))
_LOAD_LIMITS = (("context_length", "contextLength", MAX_INT32), ("eval_batch_size", "evalBatchSize", MAX_INT32),
                ("num_experts", "numExperts", MAX_EXPERTS), ("cpu_thread_pool_size", "cpuThreadPoolSize", MAX_THREADS),
                ("max_parallel_predictions", "maxParallelPredictions", MAX_PARALLEL_PREDICTIONS))


def _check_limits(config: Any, limits: tuple[tuple[str, str, int], ...]) -> None:
    for name, label, limit in limits:
        value = getattr(config, name, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > limit:
            raise ConfigError(f"{label}={value}: must be at most {limit:,}", key=name, value=value,
                              allowed=f"at most {limit:,}")


#: Stop strings: matching costs O(1) per character whatever their number (textstream.StopStringMatcher),
#: but its automaton holds one node per character of them: these bound its memory (~100 MB).
MAX_STOP_STRINGS = 100_000
MAX_STOP_STRING_CHARS = 1_000_000


def check_prediction_limits(config: Any) -> None:
    """Refuse prediction settings beyond what llama.cpp can take (the config checks the lower bounds)."""
    _check_limits(config, _PREDICTION_LIMITS)
    for name, label in (("stop_strings", "stopStrings"), ("tool_call_stop_strings", "toolCallStopStrings")):
        stops = getattr(config, name, None) or []
        if len(stops) > MAX_STOP_STRINGS:
            raise ConfigError(f"{label}: {len(stops):,} stop strings; at most {MAX_STOP_STRINGS:,}", key=name,
                              allowed=f"at most {MAX_STOP_STRINGS:,} stop strings")
        chars = sum(map(len, stops))
        if chars > MAX_STOP_STRING_CHARS:
            raise ConfigError(f"{label}: {chars:,} characters in all; at most {MAX_STOP_STRING_CHARS:,}", key=name,
                              allowed=f"at most {MAX_STOP_STRING_CHARS:,} characters")


def check_load_limits(config: Any) -> None:
    """Refuse load settings beyond what llama.cpp can take (the config checks the lower bounds)."""
    _check_limits(config, _LOAD_LIMITS)
