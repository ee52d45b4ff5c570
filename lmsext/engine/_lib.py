"""One-time initialisation of llama.cpp: backend, logging, capability probes."""

from __future__ import annotations

import ctypes
import functools

import llama_cpp

from . import logs


@functools.cache
def init() -> None:
    """Initialise the llama.cpp backend once per process and install our log callback."""
    logs.install()
    llama_cpp.llama_backend_init()


def supports_gpu_offload() -> bool:
    """True when this llama.cpp build has a GPU backend (CUDA, Metal, Vulkan, …)."""
    init()
    return bool(llama_cpp.llama_supports_gpu_offload())


def supports_mmap() -> bool:
    """True when llama.cpp can memory-map model files on this platform."""
    init()
    return bool(llama_cpp.llama_supports_mmap())


def supports_mlock() -> bool:
    """True when llama.cpp can lock model memory in RAM on this platform."""
    init()
    return bool(llama_cpp.llama_supports_mlock())


def system_info() -> str:
    """llama.cpp's one-line description of the CPU features and backends it was built with."""
    init()
    return (llama_cpp.llama_print_system_info() or b"").decode("utf-8", "replace").strip()


@functools.cache
def _libc():
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc (macOS, musl, Windows)
        return None


def release_memory() -> None:
    """Give the heap memory llama.cpp just freed back to the OS (glibc keeps freed chunks below its mmap
    threshold; without this, load/unload cycles leave the kernel's resident memory tens of MB higher)."""
    trim = getattr(_libc(), "malloc_trim", None)
    if trim is not None:
        trim(0)
