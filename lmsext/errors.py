"""Exceptions raised by lmsext. Every message is one line that names the problem."""

from __future__ import annotations


class LmsextError(Exception):
    """Base class of every error lmsext raises on purpose."""


class ConfigError(LmsextError, ValueError):
    """A load or prediction setting is unknown, of the wrong type or out of range.

    ``key`` is the offending setting (as the user spelled it), ``value`` what was given and
    ``allowed`` a short description of what is accepted.
    """

    def __init__(self, message: str, *, key: str | None = None, value: object = None,
                 allowed: str | None = None) -> None:
        super().__init__(message)
        self.key = key
        self.value = value
        self.allowed = allowed


class ModelNotFoundError(LmsextError, LookupError):
    """A model key, path or Hugging Face id could not be resolved to a GGUF file."""


class DownloadError(LmsextError):
    """A model download failed (offline, the hub refused, not a GGUF file) or was cancelled; nothing was listed."""


class ModelLoadError(LmsextError):
    """llama.cpp refused to load a model or create its context."""


class InsufficientMemoryError(ModelLoadError):
    """A load was refused because its memory estimate exceeds the available memory (``force`` overrides).

    ``estimate`` is the :class:`~lmsext.engine.estimate.MemoryEstimate` with the numbers.
    """

    def __init__(self, message: str, *, estimate: object = None) -> None:
        super().__init__(message)
        self.estimate = estimate


class ModelNotLoadedError(LmsextError):
    """A model handle was used after it was unloaded."""


class ModelBusyError(LmsextError):
    """A prediction was started on a model that is already generating."""


class PredictionError(LmsextError):
    """A prediction failed inside the engine."""


class RemoteError(LmsextError):
    """A remote server could not be reached, refused a request or failed (one line naming the server)."""
