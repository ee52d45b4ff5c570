"""The embedded default model, shipped as package data (provenance and licence: ``MODELS.md`` beside this file).

This module imports nothing heavy (no llama.cpp), so the magics can name the default model cheaply;
:mod:`lmsext.engine.resolve` re-exports both names and lists the model in the catalog.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

#: The key of the embedded default model (llama2.c's stories260K, MIT licence).
EMBEDDED_MODEL_KEY = "stories260K"


def embedded_model_path() -> Path:
    """Path of the embedded default model's GGUF file (``stories260K.gguf``, inside the installed package)."""
    return Path(str(resources.files(__name__) / f"{EMBEDDED_MODEL_KEY}.gguf"))


__all__ = ["EMBEDDED_MODEL_KEY", "embedded_model_path"]
