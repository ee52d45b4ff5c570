"""lmsext — LM Studio's model-loading and prediction API inside the Jupyter/IPython kernel.

>>> import lmsext
>>> client = lmsext.Client()
>>> model = client.llm.model("stories260K", config={"contextLength": 1024})
>>> model.respond("Tell me a story", config={"temperature": 0.6, "maxTokens": 50}).content

In a notebook: ``%load_ext lmsext`` then ``%lm_load``, ``%%lm_respond`` and friends.
The engine (llama-cpp-python) is imported lazily, on first use of the client API.
"""

from __future__ import annotations

from typing import Any

from . import omp  # noqa: F401  (first: sets OMP_WAIT_POLICY before llama.cpp's libgomp loads)
from .chat import Chat
from .config import GpuSetting, LoadModelConfig, PredictionConfig
from .errors import (ConfigError, DownloadError, InsufficientMemoryError, LmsextError, ModelBusyError, ModelLoadError,
                     ModelNotFoundError, ModelNotLoadedError, PredictionError, RemoteError)

from ._version import __version__

_LAZY = {
    "serve": "server", "current_server": "server",
    "Client": "client", "default_client": "client", "set_default_client": "client", "DownloadedModel": "client", "LLM": "llm",
    "LoadResult": "results", "PredictionResult": "results", "PredictionStats": "results",
    "PredictionFragment": "results", "PredictionStream": "results",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib
        module = importlib.import_module(f".{_LAZY[name]}", __name__)
        return getattr(module, name)
    raise AttributeError(f"module 'lmsext' has no attribute {name!r}")


def load_ipython_extension(ipython) -> None:
    """``%load_ext lmsext``: register the magics."""
    from .magics import load_ipython_extension as load
    load(ipython)


def unload_ipython_extension(ipython) -> None:
    """``%unload_ext lmsext``."""
    from .magics import unload_ipython_extension as unload
    unload(ipython)


__all__ = [
    "Chat", "Client", "ConfigError", "DownloadError", "DownloadedModel", "InsufficientMemoryError", "GpuSetting", "LLM", "LmsextError", "LoadModelConfig",
    "LoadResult", "ModelBusyError", "ModelLoadError", "ModelNotFoundError", "ModelNotLoadedError",
    "PredictionConfig", "PredictionError", "PredictionFragment", "PredictionResult", "PredictionStats",
    "PredictionStream", "RemoteError", "current_server", "default_client", "load_ipython_extension", "serve",
    "set_default_client",
]
