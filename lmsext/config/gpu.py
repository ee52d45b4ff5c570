"""GpuSetting: how much of the model goes to the GPU(s), and which GPUs (LM Studio's ``gpu`` load setting)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Literal

from .constants import GPU_SPLIT_STRATEGIES
from .settings_base import SettingsModel, setting
from .value_types import NonNegativeInt, UnitFloat

GPU_ALLOWED = ("a GPU offload ratio from 0 to 1, 'max', 'off', or a dict with ratio/mainGpu/splitStrategy/"
               "disabledGpus")
"""What the ``gpu`` load setting accepts, as quoted in error messages."""

#: What a load response's ``gpu`` reports beside the ratio it derives them from (not settable on their own):
#: the layer counts, and what llama.cpp measurably placed (the layers asked for, each device, the RAM share).
REPORTED_LAYER_KEYS = ("layers", "total_layers", "totalLayers", "layers_requested", "layersRequested", "devices",
                       "ram")


class GpuSetting(SettingsModel):
    """GPU offload settings; also built from the shorthands ``0.5``, ``1``, ``0``, ``"max"`` and ``"off"``.

    ``ratio`` is the share of the model's layers put on the GPU (0 = none, 1 = all), ``"max"`` = all
    layers, ``"off"`` = CPU only. Unset fields leave the choice to the engine.
    """

    setting_kind: ClassVar[str] = "gpu"
    nesting_hint: ClassVar[str] = "it goes inside the load setting gpu={...}"
    root_allowed: ClassVar[str] = GPU_ALLOWED

    ratio: UnitFloat | Literal["max", "off"] | None = setting(
        "a number from 0 to 1, 'max' or 'off'", "Share of the model's layers offloaded to the GPU.")
    main_gpu: NonNegativeInt | None = setting(
        "an integer >= 0 (a GPU index)", "Index of the GPU that holds the non-split parts of the model.")
    split_strategy: Literal[GPU_SPLIT_STRATEGIES] | None = setting(  # type: ignore[valid-type]
        " or ".join(map(repr, GPU_SPLIT_STRATEGIES)), "How layers are spread over several GPUs.")
    disabled_gpus: list[NonNegativeInt] | None = setting(
        "a list of integers >= 0 (GPU indexes)", "Indexes of GPUs not to use.")

    @classmethod
    def expand_shorthand(cls, data: Any) -> Any:
        """A bare value (``0.5``, ``"max"``, ...) means ``{"ratio": value}``. The layer counts a load response
        reports beside its ``ratio`` (derived from it) are dropped, so the response's ``gpu`` loads the same."""
        if isinstance(data, Mapping):
            if "ratio" in data and any(key in data for key in REPORTED_LAYER_KEYS):
                return {key: value for key, value in data.items() if key not in REPORTED_LAYER_KEYS}
            return data
        if isinstance(data, GpuSetting):
            return data
        return {"ratio": data}
