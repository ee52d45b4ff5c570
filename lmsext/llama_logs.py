"""Capture llama.cpp's log records (routed to Python logging by the engine) without importing it.

The engine installs a ``llama_log_set`` callback that logs to the ``lmsext.llama_cpp`` logger; UIs
(``%lm_load --verbose``) collect those records with :func:`capture_logs`.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Iterator

#: The logger llama.cpp's output goes to.
LOGGER_NAME = "lmsext.llama_cpp"


class _ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def _logger() -> logging.Logger:
    return logging.getLogger(LOGGER_NAME)


@contextlib.contextmanager
def capture_logs(level: int = logging.DEBUG) -> Iterator[list[logging.LogRecord]]:
    """Collect llama.cpp log records emitted inside the block (for ``--verbose`` and errors)."""
    logger = _logger()
    handler = _ListHandler()
    handler.setLevel(level)
    old = logger.level
    logger.addHandler(handler)
    logger.setLevel(min(level, old) if old else level)
    try:
        yield handler.records
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old)
