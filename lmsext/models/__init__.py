"""The embedded default model, shipped as package data (provenance and licence: ``MODELS.md`` beside this file).

This module imports nothing heavy (no llama.cpp), so the magics can name the default model cheaply;
:mod:`lmsext.engine.resolve` re-exports both names and lists the model in the catalog.
"""

from __future__ import annotations

import functools
import hashlib
import os
from importlib import resources
from pathlib import Path

#: The key of the embedded default model (llama2.c's stories260K, MIT licence).
EMBEDDED_MODEL_KEY = "stories260K"
#: The embedded file's sha256 and size (``MODELS.md``).
EMBEDDED_SHA256 = "270cba1bd5109f42d03350f60406024560464db173c0e387d91f0426d3bd256d"
EMBEDDED_SIZE = 1_185_376
#: The token that ends a story: llama2.c separates its training stories with BOS (id 1) and the model never
#: emits its EOS (id 2), so a prediction with no ``maxTokens`` would otherwise never end.
STORY_END_TOKEN = 1


def embedded_model_path() -> Path:
    """Path of the embedded default model's GGUF file (``stories260K.gguf``, inside the installed package)."""
    return Path(str(resources.files(__name__) / f"{EMBEDDED_MODEL_KEY}.gguf"))


def is_embedded_file(path: str | os.PathLike, size: int) -> bool:
    """Whether ``path`` (of ``size`` bytes) holds the embedded model's bytes, wherever it lies."""
    if size != EMBEDDED_SIZE:
        return False
    try:
        return _sha256(str(path), os.stat(path).st_mtime_ns) == EMBEDDED_SHA256
    except OSError:
        return False


@functools.lru_cache(maxsize=16)
def _sha256(path: str, mtime_ns: int) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


__all__ = ["EMBEDDED_MODEL_KEY", "EMBEDDED_SHA256", "STORY_END_TOKEN", "embedded_model_path", "is_embedded_file"]
