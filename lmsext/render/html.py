"""The building blocks of every rendering: HTML escaping, display bundles, shared styles, value spellings."""

from __future__ import annotations

import html
from typing import Any

from .gpu_row import format_gpu

#: ANSI colours of the terminal forms.
RED, DIM, BOLD, RESET = "\x1b[31m", "\x1b[2m", "\x1b[1m", "\x1b[0m"
#: Inline styles shared by every HTML form (notebook outputs carry no stylesheet).
CSS = ("font-family:var(--jp-ui-font-family,sans-serif);font-size:13px;line-height:1.4")
TABLE = "border-collapse:collapse;margin:2px 0 8px 0"
TH = "text-align:left;padding:1px 12px 1px 0;font-weight:600"
TD = "text-align:left;padding:1px 12px 1px 0;vertical-align:top"
MUTED = "color:#888"
WARN = "color:#b35900"
#: The keys of seed 002's REST response (shown first, marked).
REST_KEYS = ("context_length", "eval_batch_size", "flash_attention", "num_experts", "offload_kv_cache_to_gpu")


def esc(value: Any) -> str:
    """HTML-escaped ``str(value)``."""
    return html.escape(str(value), quote=True)


def bundle(text: str, html_text: str) -> dict[str, str]:
    """A display bundle with a plain-text and an HTML form."""
    return {"text/plain": text, "text/html": html_text}


# ------------------------------------------------------------------------------ values

def format_value(value: Any) -> str:
    """A setting value as shown in summaries: JSON spellings (true, null), floats without noise."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, dict):
        return ", ".join(f"{k}={format_value(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(format_value(v) for v in value) + "]"
    return str(value)


def format_setting(key: str, value: Any) -> str:
    """An effective load setting, with the meaning of its special values spelled out."""
    if key == "gpu" and isinstance(value, dict) and "layers" in value:
        return format_gpu(value)
    if key == "decode_threads" and isinstance(value, dict) and "max" in value:
        text = (f"1–{value['max']}, adaptive (measured per step)" if value.get("adaptive") and value["max"] > 1
                else f"{value['max']}")
        wait = value.get("barrier_wait")
        if wait:
            text += ("; threads sleep at barriers (OMP_WAIT_POLICY=PASSIVE)" if wait == "passive"
                     else "; threads spin at barriers (OMP_WAIT_POLICY active: slow when other processes hold CPUs)")
        return text
    if key == "seed" and value is None:
        return "null (random per prediction)"
    if key in ("rope_frequency_base", "rope_frequency_scale") and value is False:
        return "false (the model's own)"
    return format_value(value)


def format_requested(key: str, value: Any) -> str:
    """A requested load setting (``gpu`` shows its ratio when that is all that was given)."""
    if key == "gpu" and isinstance(value, dict) and set(value) == {"ratio"}:
        return format_value(value["ratio"])
    return format_value(value)
