"""libgomp's wait policy: ggml's threads sleep at barriers instead of spinning (set before llama.cpp loads).

This build of llama.cpp runs its CPU threads with OpenMP (``GOMP_barrier`` after every operation of a
token's graph). libgomp's default lets a waiting thread spin; when another process holds a core, the
spinning thread burns the CPU the late thread needs, and a 2-thread decode on a busy 2-core machine
fell to 2-3 tok/s (1 thread: 35-57). With ``OMP_WAIT_POLICY=PASSIVE`` the same decode ran at
24-81 tok/s. libgomp reads the variable once, when it loads, so it is set here, when lmsext is
imported, unless the user set it or libgomp is already loaded (then :data:`WAIT_POLICY` says
what is in effect).
"""

from __future__ import annotations

import os

ENV = "OMP_WAIT_POLICY"


def _libgomp_loaded() -> bool:
    # /proc/self/maps read directly: psutil's Process().memory_maps() parses smaps, 1.9 ms vs 0.13 ms at import
    try:
        with open("/proc/self/maps") as f:
            return "libgomp" in f.read()
    except OSError:  # not Linux: cannot tell; llama.cpp is normally not loaded yet when lmsext is imported
        return False


def _decide() -> str:
    preset = os.environ.get(ENV)
    if preset is not None:
        return "passive" if preset.strip().upper() == "PASSIVE" else "active"
    if _libgomp_loaded():
        return "active"  # loaded before lmsext: libgomp's default (spinning) is in effect
    os.environ[ENV] = "PASSIVE"
    return "passive"


#: ``"passive"`` (threads sleep at barriers) or ``"active"`` (they spin: libgomp's default, or set by the user).
WAIT_POLICY: str = _decide()

__all__ = ["ENV", "WAIT_POLICY"]
