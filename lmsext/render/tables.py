"""Tables for ``%lm_ps``, ``%lm_ls``, ``%lm_config``, ``%lm_chat show``, and the one-line message and
error bundles."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable, Sequence

from ..units import format_bytes, format_params
from .html import CSS, MUTED, RED, REST_KEYS, RESET, TABLE, TD, TH, bundle, esc, format_setting, format_value

if TYPE_CHECKING:
    from ..chat import Chat
    from ..backend import DownloadedModel
    from ..llm import LLM


def table_bundle(headers: Sequence[str], rows: Sequence[Sequence[Any]], *, title: str = "",
                 empty: str = "(none)") -> dict[str, str]:
    """An aligned text table and an HTML table of the same rows."""
    cells = [[str(c) for c in row] for row in rows]
    if not cells:
        text = (title + "\n" if title else "") + empty
        return bundle(text, f'<div style="{CSS}">{esc(title)} <i style="{MUTED}">{esc(empty)}</i></div>')
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    lines = [title] if title else []
    lines.append("  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip())
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    out = [f'<div style="{CSS}">']
    if title:
        out.append(f'<div style="font-weight:600">{esc(title)}</div>')
    out.append(f'<table style="{TABLE}"><tr>' + "".join(f'<th style="{TH}">{esc(h)}</th>' for h in headers) + "</tr>")
    out += ["<tr>" + "".join(f'<td style="{TD}">{esc(c)}</td>' for c in row) + "</tr>" for row in cells]
    out.append("</table></div>")
    return bundle("\n".join(lines), "".join(out))


def loaded_models_bundle(models: Iterable["LLM"], current: str | None = None) -> dict[str, str]:
    """``%lm_ps``: every loaded instance with its effective config."""
    headers = ["identifier", "model", *REST_KEYS, "gpu", "kv cache (K/V)", "threads", "memory", "predictions",
               "other settings"]
    rows = []
    for llm in models:
        lr = llm.load_result
        cfg = lr.config
        shown = set(REST_KEYS) | {"gpu", "llama_k_cache_quantization_type", "llama_v_cache_quantization_type",
                                  "cpu_thread_pool_size", "decode_threads"}
        other = ", ".join(f"{k}={format_value(v)}" for k, v in cfg.items() if k not in shown)
        mark = " (default)" if llm.identifier == current else ""
        rows.append([llm.identifier + mark, lr.model_key, *(format_value(cfg.get(k)) for k in REST_KEYS),
                     format_setting("gpu", cfg.get("gpu")),
                     f"{cfg.get('llama_k_cache_quantization_type')}/{cfg.get('llama_v_cache_quantization_type')}",
                     threads_text(cfg, getattr(llm.engine, "decode_threads", None)),
                     format_bytes(sum(lr.memory.values())), predictions_text(llm), other])
    return table_bundle(headers, rows, title="Loaded models", empty="no model is loaded (%lm_load MODEL)")


def predictions_text(llm: Any) -> str:
    """``2 running · 1 queued (parallel 4)``: the predictions of a loaded instance now."""
    status = getattr(llm, "prediction_status", lambda: None)()
    if not status:
        return "?"
    text = f"{status['running']} running · {status['queued']} queued"
    return text + (f" (parallel {status['slots']})" if status.get("slots", 1) > 1 else "")


def threads_text(cfg: dict[str, Any], tuner: Any = None) -> str:
    """``batch 2 · decode 1–2 adaptive, now 1``: the thread counts of a loaded instance."""
    decode = format_setting("decode_threads", cfg.get("decode_threads")).split(";")[0].replace(" (measured per step)", "")
    text = f"batch {cfg.get('cpu_thread_pool_size')} · decode {decode}"
    if tuner is not None and getattr(tuner, "adaptive", False) and any(tuner.steps.values()):
        text += f", now {tuner.current}"
    return text


def downloaded_models_bundle(models: Iterable["DownloadedModel"], loaded: dict[str, list[str]]) -> dict[str, str]:
    """``%lm_ls``: the GGUF files in the model folders."""
    rows = []
    for m in models:
        info = m.info
        rows.append([m.model_key, format_bytes(m.size_bytes), info.architecture if info else "?",
                     format_params(info.parameter_count) if info else "?", info.quantization if info else "?",
                     ", ".join(loaded.get(m.path, [])), m.error or ""])
    return table_bundle(["model", "size", "architecture", "params", "quantization", "loaded as", "problem"], rows,
                        title="Models in the model folders",
                        empty="no GGUF files found (set LMSEXT_MODELS_PATH or %config LMMagics.models_path)")


def config_bundle(layers: Sequence[tuple[str, dict[str, Any]]]) -> dict[str, str]:
    """``%lm_config``: each layer of settings (name, {key: value}) as a small table."""
    texts, htmls = [], []
    for title, values in layers:
        rows = [[k, format_value(v)] for k, v in values.items()]
        b = table_bundle(["setting", "value"], rows, title=title, empty="(nothing set)")
        texts.append(b["text/plain"])
        htmls.append(b["text/html"])
    return bundle("\n\n".join(texts), "".join(htmls))


def chat_bundle(name: str, chat: "Chat") -> dict[str, str]:
    """``%lm_chat show``: the messages of a chat."""
    messages = chat.messages
    title = f"chat '{name}': {len(messages)} message(s)"
    text = "\n".join([title] + [f"{m['role']:>9}: {m['content']}" for m in messages])
    rows = "".join(f'<tr><td style="{TD};{MUTED}">{esc(m["role"])}</td>'
                   f'<td style="{TD};white-space:pre-wrap">{esc(m["content"])}</td></tr>' for m in messages)
    return bundle(text, f'<div style="{CSS}"><div style="font-weight:600">{esc(title)}</div>'
                        f'<table style="{TABLE}">{rows}</table></div>')


def message_bundle(message: str) -> dict[str, str]:
    """A one-line informational message."""
    return bundle(message, f'<div style="{CSS}">{esc(message)}</div>')


def error_bundle(message: str) -> dict[str, str]:
    """ONE red line: ANSI red in text, a red span in HTML."""
    line = " ".join(str(message).split())
    return bundle(f"{RED}{line}{RESET}", f'<span style="color:red">{esc(line)}</span>')
