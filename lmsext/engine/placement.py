"""After a load: replace the planned GPU figures with what llama.cpp reports it did.

:func:`apply_measured` reads the load's llama.cpp log (:func:`.devices.read_placement`) and the GPUs
enumerated (:func:`.devices.gpu_devices`) and rewrites the plan's effective ``gpu`` (same keys as before —
``ratio``, ``layers``, ``total_layers``, ``main_gpu``, ``split_strategy``, ``disabled_gpus`` — with
``layers`` now the layers llama.cpp put on a GPU, plus the measured fields ``layers_requested`` (the ``n_gpu_layers`` asked for), ``devices``
(each GPU: name, description, free/total memory, layers, KV layers, model/KV/compute buffer bytes) and
``ram`` (the same for what stayed on the CPU)), ``offload_kv_cache_to_gpu`` (true when every layer's KV
cache is on a GPU) and, when it was left to llama.cpp (AUTO), ``flash_attention``.
"""

from __future__ import annotations

from typing import Iterable

from . import devices
from .params import LoadPlan, kv_placement_words, no_gpu_reason


def apply_measured(plan: LoadPlan, log_lines: Iterable[str]) -> devices.Placement:
    """Update ``plan.effective`` / ``plan.notes`` from the load log; return the placement read."""
    gpus = devices.gpu_devices()
    placement = devices.read_placement(log_lines, [d.name for d in gpus])
    gpu = plan.effective.setdefault("gpu", {})
    planned = plan.gpu_layers_offloaded
    measured = placement.gpu_layers()
    plan.gpu_layers_offloaded = measured
    gpu.update(layers=measured, layers_requested=plan.gpu_layers_requested,
               devices=[{**d.to_dict(), **placement.devices.get(d.name, devices.DevicePlacement()).to_dict()}
                        for d in gpus],
               ram=placement.devices.get(devices.RAM, devices.DevicePlacement()).to_dict())
    if measured != planned:
        plan.notes.append(f"gpu: llama.cpp placed {measured} of {plan.offloadable_layers} layers on a GPU "
                          f"(planned {planned})" + ("" if gpus else f": {no_gpu_reason()}"))
    kv_gpu, _kv_ram = placement.kv_layers()
    if kv_gpu != plan.kv_layers_on_gpu:
        plan.kv_layers_on_gpu = kv_gpu
        n_layer = plan.info.n_layer
        plan.effective["offload_kv_cache_to_gpu"] = bool(n_layer) and kv_gpu >= n_layer
        if plan.context_params.get("offload_kqv"):
            plan.notes.append(f"offload_kv_cache_to_gpu: {kv_placement_words(kv_gpu, n_layer)}")
    if placement.flash_attention is not None:
        plan.effective["flash_attention"] = placement.flash_attention
        if not placement.flash_attention:
            plan.notes.append("flash_attention auto → off: llama.cpp found a layer whose device does not support it")
    return placement


__all__ = ["apply_measured"]
