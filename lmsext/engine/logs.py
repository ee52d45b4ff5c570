"""Route llama.cpp / ggml log output through Python :mod:`logging` at the right levels.

llama-cpp-python's own callback maps ggml's levels wrongly (it treats DEBUG as INFO, INFO as WARNING
and WARN as ERROR) and prints to stderr. We install our own ``llama_log_set`` callback: ggml's
``DEBUG/INFO/WARN/ERROR`` become the same Python levels on the ``lmsext.llama_cpp`` logger, ``CONT``
continues the previous record, and partial lines are buffered until their newline. Nothing reaches
a notebook cell unless a handler is attached (see :func:`capture_logs`).
"""

from __future__ import annotations

import ctypes
import logging
import threading

import llama_cpp

from ..llama_logs import LOGGER_NAME, capture_logs  # noqa: F401  (re-exported)

logger = logging.getLogger(LOGGER_NAME)
logger.addHandler(logging.NullHandler())
logger.propagate = False

# enum ggml_log_level (ggml.h): NONE=0, DEBUG=1, INFO=2, WARN=3, ERROR=4, CONT=5
GGML_TO_LOGGING = {
    0: logging.DEBUG,
    1: logging.DEBUG,
    2: logging.INFO,
    3: logging.WARNING,
    4: logging.ERROR,
}
GGML_LOG_CONT = 5

_state = threading.local()


def _emit(level: int, text: str) -> None:
    buf = getattr(_state, "buf", "")
    if level == GGML_LOG_CONT:
        level = getattr(_state, "level", logging.DEBUG)
    else:
        if buf:  # a new record starts: flush the unterminated previous one
            logger.log(getattr(_state, "level", logging.DEBUG), buf)
            buf = ""
        level = GGML_TO_LOGGING.get(level, logging.DEBUG)
    _state.level = level
    buf += text
    *lines, buf = buf.split("\n")
    for line in lines:
        if line.strip():
            logger.log(level, line)
    _state.buf = buf


@llama_cpp.llama_log_callback
def _callback(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
    try:
        _emit(level, text.decode("utf-8", errors="replace"))
    except Exception:  # never let an exception cross into C
        pass


def install() -> None:
    """Make llama.cpp log through :data:`logger` (idempotent)."""
    llama_cpp.llama_log_set(_callback, ctypes.c_void_p(0))
