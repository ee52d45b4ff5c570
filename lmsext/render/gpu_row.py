"""The ``gpu`` row of the load summary and of ``%lm_ps``: what llama.cpp placed, read from the load."""

from __future__ import annotations

from typing import Any

from ..units import format_bytes


def _fmt(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def format_gpu(value: dict[str, Any]) -> str:
    """``0 of 6 layers (no GPU backend)`` on a CPU build; with GPUs ``3 of 6 layers on GPU (ratio 0.5):
    CUDA0 3 layers, KV 2 layers, VRAM 120 MiB · KV cache of 2 of 5 layers on GPU``. A ``gpu`` value without
    the measured fields (a remote server's) reads as before: ``3/6 layers on GPU (ratio 0.5)``."""
    total = value.get("total_layers", "?")
    ratio = _fmt(value.get("ratio"))
    if "devices" not in value:
        text = f"{value['layers']}/{total} layers on GPU (ratio {ratio})"
    elif not value["devices"]:
        text = f"0 of {total} layers (no GPU backend)"
    else:
        per = []
        for d in value["devices"]:
            vram = d.get("model_bytes", 0) + d.get("kv_bytes", 0) + d.get("compute_bytes", 0)
            per.append(f"{d['name']} {d.get('layers', 0)} layers, KV {d.get('kv_layers', 0)} layers, "
                       f"VRAM {format_bytes(vram)}")
        text = f"{value['layers']} of {total} layers on GPU (ratio {ratio}): " + "; ".join(per)
        ram = value.get("ram") or {}
        if ram.get("kv_layers"):
            text += f" · KV cache of {ram['kv_layers']} layers in RAM"
    extra = []
    if value.get("main_gpu"):
        extra.append(f"main GPU {value['main_gpu']}")
    if value.get("split_strategy") not in (None, "evenly"):
        extra.append(f"split {value['split_strategy']}")
    if value.get("disabled_gpus"):
        extra.append(f"disabled [{', '.join(map(str, value['disabled_gpus']))}]")
    return text + (" · " + ", ".join(extra) if extra else "")


def vram_text(value: Any) -> str:
    """`` · VRAM CUDA0 120 MiB`` (what llama.cpp put on each GPU: model, KV and compute buffers) for the
    summary's memory line; empty without GPUs."""
    if not isinstance(value, dict) or not value.get("devices"):
        return ""
    parts = [f"{d['name']} {format_bytes(d.get('model_bytes', 0) + d.get('kv_bytes', 0) + d.get('compute_bytes', 0))}"
             for d in value["devices"]]
    return " · VRAM " + ", ".join(parts)


__all__ = ["format_gpu", "vram_text"]
