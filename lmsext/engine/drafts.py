"""Which draft a prediction's ``draftModel`` names: prompt lookup, a loaded instance, or a model loaded JIT.

LM Studio: "You do not need to load the draft model yourself." A key that names a loaded instance
(its identifier or its file) uses that instance; any other key is resolved like a model key and the
file is loaded once with LM Studio's defaults, kept by the engine for later predictions and freed
with it (:meth:`DraftModels.close`).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Callable

from ..config import LoadModelConfig, PredictionConfig
from ..errors import LmsextError
from .lookup import LOOKUP_KEY
from .model import EngineModel
from .speculative import DEFAULT_MIN_CONTINUE, SpeculativeConfig, check_vocabularies


class DraftModels:
    """The instances a draft key can name, and the drafts loaded just in time."""

    def __init__(self, resolve: Callable[[str], Path]) -> None:
        self._resolve = resolve
        self._loaded: dict[str, EngineModel] = {}  # identifier → instance loaded through the engine
        self._jit: dict[Path, EngineModel] = {}
        self._lock = threading.Lock()

    def loaded(self, identifier: str, handle: EngineModel) -> None:
        """Remember an instance the engine loaded (a draft key may name it)."""
        self._loaded[identifier] = handle

    def unloaded(self, handle: EngineModel) -> None:
        """Forget an instance the engine unloaded."""
        for key in [k for k, h in self._loaded.items() if h is handle]:
            del self._loaded[key]

    def find(self, key: str) -> EngineModel:
        """The draft ``key`` names: a loaded instance by identifier or file, else the file loaded JIT."""
        found = self._loaded.get(key)
        if found is not None and not found.closed:
            return found
        try:
            path = Path(self._resolve(key)).resolve()
        except LmsextError as exc:
            raise _named(exc, key) from None
        for handle in list(self._loaded.values()):
            if not handle.closed and Path(handle.path).resolve() == path:
                return handle
        with self._lock:
            draft = self._jit.get(path)
            if draft is None or draft.closed:
                try:
                    draft = self._jit[path] = EngineModel.load(path, LoadModelConfig())[0]
                except LmsextError as exc:
                    raise _named(exc, key) from None
            return draft

    def close(self) -> None:
        """Free the drafts loaded just in time."""
        with self._lock:
            for draft in self._jit.values():
                draft.close()
            self._jit.clear()


def _named(exc: LmsextError, key: str) -> LmsextError:
    """The same error, its one line prefixed with the draftModel it concerns."""
    try:
        return type(exc)(f"draftModel {key!r}: {exc}")
    except TypeError:
        return exc


def speculative_config(target: EngineModel, config: PredictionConfig, drafts: DraftModels) -> SpeculativeConfig | None:
    """The :class:`SpeculativeConfig` of a prediction (None without ``draftModel``)."""
    key = config.draft_model
    if key is None:
        return None
    draft = None if key == LOOKUP_KEY else drafts.find(key)
    if draft is not None:
        check_vocabularies(target, draft, key)
    p_min = config.speculative_decoding_min_continue_drafting_probability
    return SpeculativeConfig(
        draft=draft, key=key, exact=config.speculative_decoding_num_draft_tokens_exact,
        min_length=config.speculative_decoding_min_draft_length_to_consider or 0,
        min_continue=DEFAULT_MIN_CONTINUE if p_min is None else p_min)
