"""The notebook face of lmsext: IPython magics over the public API (``%load_ext lmsext``).

One family per module, as IPython's own ``IPython.core.magics``; each is registered from :data:`FAMILIES`:

* :mod:`.models` — ``%lm_load MODEL [flags]`` (JIT, or ``--new``; shows the load-config summary),
  ``%lm_unload``, ``%lm_ps``, ``%lm_ls``, ``%lm_get MODEL [--quant Q]`` (a GGUF from the Hugging Face hub).
* :mod:`.predict` — ``%%lm_respond`` / ``%%lm_complete``: stream a chat reply / a raw completion inline.
* :mod:`.chat` — ``%lm_chat show|reset|save``.
* :mod:`.config` — ``%lm_config`` (the session defaults), ``%lm_panel [load|predict]`` (the slider panels).
* :mod:`.serve` — ``%lm_serve``: LM Studio's REST API from the kernel.
* :mod:`.connect` — ``%lm_connect URL [--api-key-env VAR]`` / ``%lm_connect local``: a model server or the
  in-kernel engine behind the other magics and the panels.

Their shared options are one ``Configurable``, :class:`~.shared.LMMagics` (``%config LMMagics.<option>``);
in a Jupyter kernel the load summary and the stream are widgets (``LMMagics.widgets``), with the plain
displays as their fallback. The magics parse arguments (:mod:`.args`, :mod:`.flags`), call
``lmsext.default_client()`` / ``LLM`` / ``Chat`` and display; the session defaults live in
:func:`lmsext.session.get_session`. A user error (bad flag or value, unknown model, validation)
prints ONE red line and changes nothing.
"""

from __future__ import annotations

from typing import Any

from .chat import ChatMagics
from .config import ConfigMagics
from .connect import ConnectMagics
from .models import ModelMagics
from .predict import PredictMagics
from .serve import ServeMagics
from .shared import FamilyMagics, LMMagics

#: The magic families ``%load_ext lmsext`` registers, in this order.
FAMILIES: tuple[type[FamilyMagics], ...] = (ModelMagics, PredictMagics, ChatMagics, ConfigMagics, ServeMagics,
                                             ConnectMagics)

#: id(shell) → (its LMMagics, its registered families)
_loaded: dict[int, tuple[LMMagics, list[FamilyMagics]]] = {}


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext lmsext``: register the magics (once per shell)."""
    if id(ipython) in _loaded:
        return
    lm = LMMagics(shell=ipython)
    families = [family(ipython, lm) for family in FAMILIES]
    for magics in families:
        ipython.register_magics(magics)
    _loaded[id(ipython)] = (lm, families)


def unload_ipython_extension(ipython: Any) -> None:
    """``%unload_ext lmsext``: remove the magics (loaded models stay loaded)."""
    entry = _loaded.pop(id(ipython), None)
    if entry is None:
        return
    lm, families = entry
    manager = ipython.magics_manager
    for magics in families:
        for kind, names in type(magics).magics.items():
            for name in names:
                manager.magics[kind].pop(name, None)
        manager.registry.pop(type(magics).__name__, None)
    lm.close()


def get_magics(ipython: Any) -> LMMagics | None:
    """The :class:`LMMagics` (options and displays) of ``ipython`` (None before ``%load_ext lmsext``)."""
    entry = _loaded.get(id(ipython))
    return entry[0] if entry else None


__all__ = ["FAMILIES", "LMMagics", "get_magics", "load_ipython_extension", "unload_ipython_extension"]
