"""Fixed value sets of the load and prediction settings (LM Studio's names)."""

from __future__ import annotations

import re

CACHE_QUANTIZATION_TYPES: tuple[str, ...] = ("f32", "f16", "q8_0", "q4_0", "q4_1", "iq4_nl", "q5_0", "q5_1")
"""Accepted values of ``llamaKCacheQuantizationType`` / ``llamaVCacheQuantizationType`` (False = f16)."""

CONTEXT_OVERFLOW_POLICIES: tuple[str, ...] = ("stopAtLimit", "truncateMiddle", "rollingWindow")
"""Accepted values of ``contextOverflowPolicy``: what to do when the chat outgrows the context."""

GPU_SPLIT_STRATEGIES: tuple[str, ...] = ("evenly", "favorMainGpu")
"""Accepted values of ``gpu.splitStrategy``: how layers are spread over several GPUs."""

JSON_SCHEMA_TYPES: tuple[str, ...] = ("array", "boolean", "integer", "null", "number", "object", "string")
"""The ``type`` keywords a JSON schema may use."""

MAX_SEED: int = 2**32 - 1
"""Largest accepted ``seed`` (llama.cpp seeds are unsigned 32-bit)."""

MAX_PARALLEL_PREDICTIONS: int = 256
"""Largest accepted ``maxParallelPredictions`` (llama.cpp's ``LLAMA_MAX_SEQ``: sequences of one context)."""

MAX_LOG_PROBS: int = 20
"""Largest accepted ``logProbs`` (top alternatives reported per generated token)."""

IDENTIFIER_PATTERN: str = r"[^\s\x00-\x1f\x7f]{1,256}"
"""What an instance identifier (``identifier=``, ``%lm_load --identifier``) may be: 1 to 256 characters,
no whitespace or control characters (it appears in URLs, magic lines and messages)."""

MAX_IDENTIFIER_LENGTH: int = 256
"""Longest accepted instance identifier (see :data:`IDENTIFIER_PATTERN`)."""

CONTEXT_STEP: int = 256
"""llama.cpp pads the KV cache to a multiple of this many tokens: context lengths move in these steps."""

DEFAULT_CONTEXT_LENGTH: int = 4096
"""LM Studio's default ``contextLength`` (capped by what the model was trained on)."""

SAMPLING_DEFAULTS: dict[str, float | int] = {
    "temperature": 0.8,
    "top_k_sampling": 40,
    "top_p_sampling": 0.95,
    "min_p_sampling": 0.05,
    "repeat_penalty": 1.1,
    "xtc_probability": 0.0,
    "xtc_threshold": 0.1,
}
"""LM Studio's sampler defaults for its llama.cpp engine (REST snake_case names): what a prediction uses
for a setting it leaves unset."""

_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", "0": "\0"}


def unescape(text: str) -> str:
    r"""``\n``, ``\t``, ``\r``, ``\0`` and ``\\`` in a typed value (stop strings) become the characters."""
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(0)), text)
