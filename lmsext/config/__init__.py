"""Load and prediction settings with LM Studio's names, validated by pydantic.

* :class:`LoadModelConfig` — load-time settings (``contextLength``, ``gpu``, ...).
* :class:`PredictionConfig` — per-prediction settings (``temperature``, ``maxTokens``, ``structured``, ...).
* :class:`GpuSetting`, :class:`StructuredSpec` — the nested ``gpu`` and ``structured`` values.

Keys are accepted in snake_case (Python, LM Studio REST), camelCase (LM Studio SDK) and a few
short aliases; ``Cls.field_names(style)`` and ``Cls.accepted_keys()`` list them. None means "not
set" everywhere (an explicit None is the same as leaving the key out). Values are strictly typed:
``True`` is not an int and ``"4096"`` is not a number. Every problem raises a one-line
:class:`ConfigError` naming the key as the user spelled it. Pure pydantic: no engine import.
"""

from lmsext.errors import ConfigError

from .constants import (CACHE_QUANTIZATION_TYPES, CONTEXT_OVERFLOW_POLICIES, CONTEXT_STEP, DEFAULT_CONTEXT_LENGTH,
                        SAMPLING_DEFAULTS, unescape)
from .gpu import GpuSetting
from .load import LoadModelConfig
from .prediction import PredictionConfig
from .structured import StructuredSpec

__all__ = [
    "GpuSetting",
    "LoadModelConfig",
    "PredictionConfig",
    "StructuredSpec",
    "ConfigError",
    "CACHE_QUANTIZATION_TYPES",
    "CONTEXT_OVERFLOW_POLICIES",
    "CONTEXT_STEP",
    "DEFAULT_CONTEXT_LENGTH",
    "SAMPLING_DEFAULTS",
    "unescape",
]
