"""Plumbing shared by lmsext's widgets: the front-end files, display bundles with a fallback, the kernel id.

The front end is plain ES modules in ``js/`` of the repository, shipped inside the package as
``lmsext/widgets/static/`` (a link to ``js/`` in a checkout; real files in a wheel): no node at install.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

STATIC = Path(__file__).resolve().parent / "static"


def asset(name: str) -> Path:
    """Path of the front-end file ``name`` (``stream.js``): shipped in the package or ``js/`` of a checkout."""
    for candidate in (STATIC / name, Path(__file__).resolve().parents[2] / "js" / name):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"{name} is missing from the lmsext installation (expected in {STATIC})")


def widget_bundle(widget: Any, fallback: dict[str, str]) -> dict[str, Any]:
    """A display bundle that shows ``widget`` where widgets render, and ``fallback`` (text/HTML) elsewhere:
    in a saved notebook without widget state, nbconvert, a front end without the widget manager."""
    bundle = widget._repr_mimebundle_() or {}
    data = dict(bundle[0] if isinstance(bundle, tuple) else bundle)  # ipywidgets 8 returns (data, metadata)
    data.update(fallback)
    return data


def kernel_id() -> str:
    """The id the Jupyter server knows this kernel by ("" outside a server-started kernel).

    The server names a kernel's connection file ``kernel-<id>.json``; the stream view's Stop button
    uses the id to ask the server for an interrupt.
    """
    if "ipykernel.kernelapp" not in sys.modules:  # not in a kernel (importing it would re-wire the comms)
        return ""
    try:
        from ipykernel import get_connection_file
        name = Path(get_connection_file()).name
    except Exception:
        return ""
    match = re.fullmatch(r"kernel-(.+)\.json", name)
    return match.group(1) if match else ""


__all__ = ["STATIC", "asset", "kernel_id", "widget_bundle"]
