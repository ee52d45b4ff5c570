"""``%lm_ps``: one compact card per loaded instance that fits a notebook's width — identifier, model, context,
size, threads, GPU and status on one line — with every other setting in a ``<details>`` that opens on a
click; the text form is the same line with the settings indented under it."""

from __future__ import annotations

import textwrap
from typing import TYPE_CHECKING, Any, Iterable

from ..units import format_bytes
from .html import CSS, MUTED, bundle, esc, format_setting, format_value

if TYPE_CHECKING:
    from ..llm import LLM

#: Settings the card's line says already (the rest go under "details").
ON_THE_LINE = {"context_length", "cpu_thread_pool_size", "decode_threads"}
#: Width of the text form's details lines.
TEXT_WIDTH = 100
_CARD = "border:1px solid #8884;border-radius:6px;padding:3px 8px;margin:3px 0;max-width:100%;overflow-wrap:anywhere"


def _gpu(cfg: dict[str, Any]) -> str:
    """The card's GPU fact, from the layers llama.cpp placed: ``CPU`` or ``GPU 3/6 layers`` (the devices, their
    layers and memory in the details' ``gpu``)."""
    gpu = cfg.get("gpu") or {}
    layers, total = gpu.get("layers"), gpu.get("total_layers")
    if not layers:
        return "CPU"
    return f"GPU {layers}/{total} layers" if total else format_setting("gpu", gpu)


def status(llm: "LLM") -> str:
    """``generating`` while a prediction runs on the instance, ``ready`` otherwise (``unloaded`` once gone); on an
    instance with parallel predictions (or a queue) ``2 running · 1 queued (parallel 4)``."""
    if not llm.loaded:
        return "unloaded"
    try:
        now = llm.prediction_status()  # the engine's own count (None where it cannot tell)
    except Exception:
        return "unloaded"
    if now and (now.get("slots", 1) > 1 or now.get("queued")):
        return predictions_text(now)
    return "generating" if now and now.get("running") else "ready"


def predictions_text(now: dict[str, int]) -> str:
    """``2 running · 1 queued (parallel 4)``: an instance's predictions now (``LLM.prediction_status()``)."""
    text = f"{now['running']} running · {now['queued']} queued"
    return text + (f" (parallel {now['slots']})" if now.get("slots", 1) > 1 else "")


def card_facts(llm: "LLM", threads: str) -> list[str]:
    """The card's line after the identifier: model, context, size, threads, GPU, status (each said once)."""
    lr = llm.load_result
    cfg = lr.config
    facts = [lr.model_key] if lr.model_key != llm.identifier else []
    facts += [f"context {format_value(cfg.get('context_length'))}", format_bytes(sum(lr.memory.values())), f"threads {threads}",
              _gpu(cfg), status(llm)]
    return facts


def details(llm: "LLM") -> list[tuple[str, str]]:
    """Every other effective setting, ``(REST name, value)``, in the load result's order."""
    cfg = llm.load_result.config
    return [(k, format_setting(k, v) if k == "gpu" else format_value(v)) for k, v in cfg.items() if k not in ON_THE_LINE]


def instance_cards_bundle(models: Iterable["LLM"], current: str | None, threads_of: Any) -> dict[str, str]:
    """Text + HTML of the loaded instances as cards (``threads_of(llm)``: the threads text of one instance)."""
    models = list(models)
    if not models:
        empty = "no model is loaded (%lm_load MODEL)"
        return bundle(f"Loaded models\n{empty}", f'<div style="{CSS}">Loaded models <i style="{MUTED}">{esc(empty)}</i></div>')
    lines = [f"Loaded models ({len(models)})"]
    cards = []
    for llm in models:
        mark = " (default)" if llm.identifier == current else ""
        facts = card_facts(llm, threads_of(llm))
        rest = details(llm)
        lines.append(f"● {llm.identifier}{mark} — " + " · ".join(facts))
        lines += textwrap.wrap(" · ".join(f"{k}={v}" for k, v in rest), TEXT_WIDTH, initial_indent="    ",
                               subsequent_indent="    ", break_on_hyphens=False)
        rows = "".join(f'<tr><td style="{MUTED};padding:0 10px 0 0">{esc(k)}</td><td>{esc(v)}</td></tr>' for k, v in rest)
        cards.append(f'<details class="lmsext-instance" style="{_CARD}"><summary style="cursor:pointer">'
                     f'<b>{esc(llm.identifier)}</b>{esc(mark)} <span style="{MUTED}">· {esc(" · ".join(facts))}</span>'
                     f'</summary><table style="font-size:12px;margin:4px 0 2px 14px">{rows}</table></details>')
    html = (f'<div class="lmsext-instances" style="{CSS}"><div style="font-weight:600">{esc(lines[0])}</div>'
            + "".join(cards) + "</div>")
    return bundle("\n".join(lines), html)


__all__ = ["card_facts", "details", "instance_cards_bundle", "status"]
