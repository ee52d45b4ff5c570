"""The devices llama.cpp sees and what it placed on each — measured, not planned.

* :func:`gpu_devices` asks ggml's backend device registry (``ggml_backend_dev_count/get/name/description/
  memory``, exported by the libraries llama-cpp-python loads) for the devices llama.cpp offloads to, in the
  order ``mainGpu``, ``disabledGpus`` and ``tensor_split`` index them: the discrete GPUs, or the integrated
  ones when there is no discrete GPU (``llama_model_load_from_file``'s own rule). A CPU-only build has none.
* :func:`check_indexes` and :func:`favor_main_split`: ``mainGpu``/``disabledGpus`` against those GPUs, and
  ``splitStrategy: favorMainGpu`` as ``tensor_split`` weights.
* :func:`read_placement` reads llama.cpp's own load log (captured by :mod:`.logs` during every load): the
  device each layer was assigned to (``load_tensors: layer N assigned to device X``), the device of each
  layer's KV cache (``llama_kv_cache: layer N: dev = X``), and the bytes of every model, KV and compute
  buffer (``CUDA0 model buffer size = … MiB``, to llama.cpp's printed 0.01 MiB), and whether an automatic
  flash attention was resolved on.
* :func:`layer_devices` replays llama.cpp's layer split (``llama-model.cpp``: the last ``n_gpu_layers`` of
  the ``n_layer + 1`` layers go to the GPUs, cut by the cumulative ``tensor_split`` or free memory) so the
  memory estimate can say which bytes land on which device before anything is loaded.
"""

from __future__ import annotations

import bisect
import ctypes
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable

import llama_cpp

from ..errors import ConfigError
from . import _lib

#: enum ggml_backend_dev_type (ggml-backend.h)
DEVICE_KINDS = {0: "CPU", 1: "GPU", 2: "IGPU", 3: "ACCEL"}
#: Where the layers and buffers that are not on a GPU live.
RAM = "CPU"


@dataclass(frozen=True)
class Device:
    """One ggml backend device: its index among the GPUs llama.cpp offloads to, names and memory now."""

    index: int
    name: str
    description: str
    kind: str
    free_bytes: int
    total_bytes: int

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON (the load result's ``config["gpu"]["devices"]`` entries)."""
        return asdict(self)


def _bind() -> Any:
    _lib.init()
    lib = llama_cpp.llama_cpp._lib
    lib.ggml_backend_dev_count.restype, lib.ggml_backend_dev_count.argtypes = ctypes.c_size_t, []
    lib.ggml_backend_dev_get.restype, lib.ggml_backend_dev_get.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    for fn in (lib.ggml_backend_dev_name, lib.ggml_backend_dev_description):
        fn.restype, fn.argtypes = ctypes.c_char_p, [ctypes.c_void_p]
    lib.ggml_backend_dev_type.restype, lib.ggml_backend_dev_type.argtypes = ctypes.c_int, [ctypes.c_void_p]
    lib.ggml_backend_dev_memory.restype = None
    lib.ggml_backend_dev_memory.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_size_t),
                                            ctypes.POINTER(ctypes.c_size_t)]
    return lib


def all_devices() -> list[Device]:
    """Every device in ggml's registry (the CPU included), with its free/total memory read now;
    ``index`` is the registry position here. Empty where the build does not export the registry."""
    try:
        lib = _bind()
    except AttributeError:  # a build without ggml's device API
        return []
    out = []
    for i in range(int(lib.ggml_backend_dev_count())):
        dev = lib.ggml_backend_dev_get(i)
        free, total = ctypes.c_size_t(0), ctypes.c_size_t(0)
        lib.ggml_backend_dev_memory(dev, ctypes.byref(free), ctypes.byref(total))
        out.append(Device(i, (lib.ggml_backend_dev_name(dev) or b"").decode(errors="replace"),
                          (lib.ggml_backend_dev_description(dev) or b"").decode(errors="replace"),
                          DEVICE_KINDS.get(int(lib.ggml_backend_dev_type(dev)), "?"),
                          int(free.value), int(total.value)))
    return out


def gpu_devices() -> list[Device]:
    """The devices llama.cpp offloads layers to, indexed as ``mainGpu``/``disabledGpus``/``tensor_split``
    count them: the discrete GPUs, else the integrated ones; ``[]`` on a CPU-only build."""
    devices = all_devices()
    if not devices and _lib.supports_gpu_offload():  # no registry: one anonymous GPU
        return [Device(0, "GPU", "GPU (ggml's device registry is not exported by this build)", "GPU", 0, 0)]
    gpus = [d for d in devices if d.kind == "GPU"] or [d for d in devices if d.kind == "IGPU"]
    return [Device(i, d.name, d.description, d.kind, d.free_bytes, d.total_bytes) for i, d in enumerate(gpus)]


# ------------------------------------------------------------------------------ settings against the devices

def check_indexes(main_gpu: int | None, disabled: list[int], gpus: list[Any]) -> None:
    """``mainGpu`` and ``disabledGpus`` against the GPUs llama.cpp enumerated (one line each)."""
    n = len(gpus)
    names = ", ".join(f"{d.index}={d.name}" for d in gpus)
    if main_gpu is not None and main_gpu >= n:
        raise ConfigError(f"gpu.mainGpu={main_gpu}: llama.cpp sees {n} GPU(s) here ({names}); choose 0..{n - 1}",
                          key="gpu.mainGpu", value=main_gpu, allowed=f"0..{n - 1}")
    bad = [d for d in disabled if d >= n]
    if bad:
        raise ConfigError(f"gpu.disabledGpus={disabled}: llama.cpp sees {n} GPU(s) here ({names}); "
                          f"{bad[0]} is not one of them", key="gpu.disabledGpus", value=disabled)
    if all(i in disabled for i in range(n)):
        raise ConfigError(f"gpu.disabledGpus={disabled}: every GPU is disabled; use gpu='off' instead",
                          key="gpu.disabledGpus", value=disabled)
    if main_gpu is not None and main_gpu in disabled:
        raise ConfigError(f"gpu.mainGpu={main_gpu} is also in gpu.disabledGpus={disabled}; enable it or choose "
                          "another main GPU", key="gpu.mainGpu", value=main_gpu)


def favor_main_split(free: list[int], main: int, need: int) -> list[float]:
    """``splitStrategy: favorMainGpu`` as ``tensor_split`` weights (llama.cpp has no "fill one GPU first"
    mode: ``SPLIT_MODE_NONE`` never spills). The main GPU takes everything while ``need`` bytes fit in 90 %
    of its free memory; beyond that it takes what fits and the other enabled GPUs (free > 0) share the rest
    evenly. ``free`` holds 0 for a disabled GPU."""
    room = int(free[main] * 0.9)
    others = [i for i, f in enumerate(free) if f > 0 and i != main]
    if need <= room or not others:
        return [1.0 if i == main else 0.0 for i in range(len(free))]
    share = (need - room) / len(others)
    return [float(room) if i == main else (share if i in others else 0.0) for i in range(len(free))]


# ------------------------------------------------------------------------------ the load log

_LAYER = re.compile(r"layer\s+(\d+) assigned to device (\S+?),")
_KV_LAYER = re.compile(r"layer\s+(\d+): dev = (\S+)")
_BUFFER = re.compile(r"(\S+)\s+(model|KV|compute|output) buffer size =\s*([\d.]+) MiB")
_FLASH = re.compile(r"Flash Attention (enabled|not supported)")
_OFFLOADED = re.compile(r"offloaded (\d+)/(\d+) layers to GPU")


@dataclass
class DevicePlacement:
    """What llama.cpp put on one device (or in RAM, under the name ``CPU``)."""

    layers: int = 0
    kv_layers: int = 0
    model_bytes: int = 0
    kv_bytes: int = 0
    compute_bytes: int = 0

    def to_dict(self) -> dict[str, int]:
        """Plain JSON."""
        return asdict(self)


@dataclass
class Placement:
    """The layers, KV cache and buffers of one load, per device, as llama.cpp's load log states them."""

    devices: dict[str, DevicePlacement] = field(default_factory=dict)
    #: llama.cpp's own "offloaded X/Y layers to GPU" line (GPU builds only), else None
    offloaded_line: tuple[int, int] | None = None
    #: an automatic flash attention resolved on (True) or off (False); None when it was not automatic
    flash_attention: bool | None = None

    def on(self, name: str) -> DevicePlacement:
        """The entry of device ``name`` (created empty)."""
        return self.devices.setdefault(name, DevicePlacement())

    def gpu_layers(self) -> int:
        """Layers on a device other than the CPU."""
        return sum(p.layers for n, p in self.devices.items() if n != RAM)

    def kv_layers(self) -> tuple[int, int]:
        """(layers whose KV cache is on a GPU, layers whose KV cache is in RAM)."""
        gpu = sum(p.kv_layers for n, p in self.devices.items() if n != RAM)
        return gpu, self.devices.get(RAM, DevicePlacement()).kv_layers


def buffer_device(buffer: str, gpu_names: Iterable[str]) -> str:
    """The device a ggml buffer lives on: a GPU's own buffer (``CUDA0``) is that GPU; host, mapped and
    repacked buffers (``CPU_Mapped``, ``CUDA_Host``, ``CPU_REPACK``) are RAM."""
    for name in gpu_names:
        if buffer == name or (buffer.startswith(name) and "Host" not in buffer):
            return name
    return RAM


def read_placement(lines: Iterable[str], gpu_names: Iterable[str] = ()) -> Placement:
    """Parse one load's llama.cpp log lines (see the module docstring)."""
    gpu_names = tuple(gpu_names)
    placement = Placement()

    def device(name: str) -> str:
        return name if name in gpu_names else buffer_device(name, gpu_names)

    for line in lines:
        if m := _LAYER.search(line):
            placement.on(device(m.group(2))).layers += 1
        elif m := _KV_LAYER.search(line):
            placement.on(device(m.group(2))).kv_layers += 1
        elif m := _BUFFER.search(line):
            entry = placement.on(buffer_device(m.group(1), gpu_names))
            size = round(float(m.group(3)) * 1024 * 1024)
            kind = m.group(2)
            if kind == "model":
                entry.model_bytes += size
            elif kind == "KV":
                entry.kv_bytes += size
            else:
                entry.compute_bytes += size
        elif m := _FLASH.search(line):
            placement.flash_attention = m.group(1) == "enabled"
        elif m := _OFFLOADED.search(line):
            placement.offloaded_line = (int(m.group(1)), int(m.group(2)))
    return placement


# ------------------------------------------------------------------------------ llama.cpp's split, replayed

def layer_devices(n_layer: int, n_gpu_layers: int, split: list[float]) -> list[int | None]:
    """For each of the ``n_layer + 1`` layers (the blocks, then the output layer): the index of the GPU
    llama.cpp puts it on, or None for RAM. ``split`` is one weight per GPU (``tensor_split``, or the
    free memory when that is all zero), as in ``llama_model::load_tensors``."""
    total = n_layer + 1
    if not split or sum(split) <= 0:
        return [None] * total
    start = max(total - n_gpu_layers, 0)
    active = min(n_gpu_layers, total)
    bounds, acc = [], 0.0
    for weight in split:
        acc += weight
        bounds.append(acc / sum(split))
    out: list[int | None] = []
    for il in range(total):
        if il < start or il - start >= active:
            out.append(None)
        else:
            out.append(min(bisect.bisect_right(bounds, (il - start) / active), len(split) - 1))
    return out


def tensor_layer(name: str, n_layer: int) -> int | None:
    """The layer a weight belongs to: ``blk.N.*`` → N, ``output.*``/``output_norm.*`` → the output layer
    (``n_layer``); the input layer (``token_embd``) and the rest → None (llama.cpp keeps them in RAM)."""
    if name.startswith("blk."):
        try:
            return int(name.split(".", 2)[1])
        except ValueError:
            return None
    if name.startswith(("output.", "output_norm.")):
        return n_layer
    return None


__all__ = ["Device", "DevicePlacement", "Placement", "RAM", "all_devices", "buffer_device", "check_indexes",
           "favor_main_split", "gpu_devices",
           "layer_devices", "read_placement", "tensor_layer"]
