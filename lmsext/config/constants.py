"""Fixed value sets of the load and prediction settings (LM Studio's names)."""

from __future__ import annotations

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

MAX_LOG_PROBS: int = 20
"""Largest accepted ``logProbs`` (top alternatives reported per generated token)."""

IDENTIFIER_PATTERN: str = r"[^\s\x00-\x1f\x7f]{1,256}"
"""What an instance identifier (``identifier=``, ``%lm_load --identifier``) may be: 1 to 256 characters,
no whitespace or control characters (it appears in URLs, magic lines and messages)."""

MAX_IDENTIFIER_LENGTH: int = 256
"""Longest accepted instance identifier (see :data:`IDENTIFIER_PATTERN`)."""
