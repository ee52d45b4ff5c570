"""The load-config summary of a :class:`~lmsext.results.LoadResult`: model info, every effective setting
with its REST name, what was requested, what was applied differently and why, memory, load time."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from ..units import format_bytes, format_params
from .gpu_row import vram_text
from .html import CSS, MUTED, REST_KEYS, TABLE, TD, TH, WARN, bundle, esc, format_requested, format_setting

if TYPE_CHECKING:
    from ..results import LoadResult


def _note_key(note: str) -> str:
    return note.split(" ", 1)[0].rstrip(":")


def _load_sections(lr: "LoadResult") -> dict[str, Any]:
    info = lr.model_info
    experts = (f"{info.expert_count} ({info.expert_used_count} used per token by default)" if info.is_moe
               else "none (dense)")
    model_rows = [
        ("model", lr.model_key),
        ("architecture", info.architecture),
        ("parameters", format_params(info.parameter_count)),
        ("quantization", info.quantization),
        ("file size", format_bytes(info.file_size)),
        ("layers", str(info.n_layer)),
        ("trained context", f"{info.trained_context} tokens"),
        ("experts", experts),
        ("chat template", lr.chat_template),
        ("path", lr.path),
    ]
    config = lr.to_rest()["config"]
    noted = {_note_key(n) for n in lr.notes}
    config_rows = []
    for key, value in config.items():
        requested = format_requested(key, lr.requested[key]) if key in lr.requested else ""
        config_rows.append((key, format_setting(key, value), requested, key in noted, key in REST_KEYS))
    memory = dict(lr.memory)
    total = sum(v for v in memory.values() if isinstance(v, (int, float)))
    memory_text = " · ".join([f"weights {format_bytes(memory.get('weights', 0))}",
                              f"KV cache {format_bytes(memory.get('kv_cache', 0))}",
                              f"total {format_bytes(total)}"])
    memory_text += vram_text(lr.config.get("gpu"))
    if lr.reused:
        header = f"'{lr.model_instance_id}' was already loaded: this is that instance"
    else:
        header = f"loaded {lr.model_key} as '{lr.model_instance_id}' in {lr.load_time_seconds:.3f} s"
    return {"header": header, "model": model_rows, "config": config_rows, "notes": list(lr.notes),
            "memory": memory_text, "load_time": f"{lr.load_time_seconds:.3f} s"}


def load_summary_text(lr: "LoadResult") -> str:
    """The load-config summary as aligned text (terminal IPython, ``print(load_result)``)."""
    s = _load_sections(lr)
    lines = [s["header"], "", "Model"]
    width = max(len(k) for k, _ in s["model"])
    lines += [f"  {k:<{width}}  {v}" for k, v in s["model"]]
    rows = s["config"]
    kw = max(len(r[0]) for r in rows)
    vw = max(len(r[1]) for r in rows)
    lines += ["", "Effective config (REST names; * = in the REST response, ! = applied differently)",
              f"  {'setting':<{kw}}  {'effective':<{vw}}  requested"]
    for key, value, requested, noted, rest in rows:
        mark = "!" if noted else ("*" if rest else " ")
        lines.append(f" {mark}{key:<{kw}}  {value:<{vw}}  {requested}".rstrip())
    if s["notes"]:
        lines += ["", "Applied differently / notes"]
        lines += [f"  ! {n}" for n in s["notes"]]
    lines += ["", f"Memory     {s['memory']}", f"Load time  {s['load_time']}"]
    return "\n".join(lines)


def load_summary_html(lr: "LoadResult") -> str:
    """The load-config summary as an HTML table (Jupyter front ends)."""
    llama = lr.setting_params  # which engine (llama.cpp) parameters each setting drives
    s = _load_sections(lr)
    out = [f'<div class="lmsext-load-summary" style="{CSS}">',
           f'<div style="font-weight:600;margin-bottom:4px">{esc(s["header"])}</div>',
           f'<table style="{TABLE}"><tr><th colspan="2" style="{TH}">Model</th></tr>']
    out += [f'<tr><td style="{TD};{MUTED}">{esc(k)}</td><td style="{TD}">{esc(v)}</td></tr>' for k, v in s["model"]]
    out.append("</table>")
    out.append(f'<table style="{TABLE}"><tr><th style="{TH}">setting (REST name)</th><th style="{TH}">effective</th>'
               f'<th style="{TH}">requested</th><th style="{TH};{MUTED}">llama.cpp</th></tr>')
    for key, value, requested, noted, rest in s["config"]:
        style = f"{TD};{WARN}" if noted else TD
        name = f"<b>{esc(key)}</b>" if rest else esc(key)
        flag = " ⚠" if noted else ""
        out.append(f'<tr><td style="{style}"><code>{name}</code>{flag}</td><td style="{style}">{esc(value)}</td>'
                   f'<td style="{TD}">{esc(requested)}</td>'
                   f'<td style="{TD};{MUTED};font-size:11px">{esc(llama.get(key, ""))}</td></tr>')
    out.append("</table>")
    if s["notes"]:
        out.append(f'<div style="font-weight:600">Applied differently / notes</div><ul style="margin:2px 0 8px 0">')
        out += [f'<li style="{WARN}">{esc(n)}</li>' for n in s["notes"]]
        out.append("</ul>")
    out.append(f'<div><b>Memory</b> {esc(s["memory"])} &nbsp; <b>Load time</b> {esc(s["load_time"])}</div>')
    if lr.llama_params:
        out.append(f'<details><summary style="{MUTED}">llama.cpp parameters</summary>'
                   f'<pre style="font-size:11px">{esc(json.dumps(lr.llama_params, indent=1, default=str))}</pre>'
                   "</details>")
    out.append("</div>")
    return "".join(out)


def load_summary_data(lr: "LoadResult") -> dict[str, Any]:
    """The load-config summary as plain JSON for front ends (the LoadSummaryView widget): ``header``,
    ``model`` rows, ``config`` rows (``key``, ``effective``, ``requested``, ``differs``, ``rest``, ``llama``),
    ``notes``, ``memory`` and ``load_time`` — the same content as the HTML and text summaries."""
    llama = lr.setting_params
    s = _load_sections(lr)
    rows = [{"key": key, "effective": value, "requested": requested, "differs": noted, "rest": rest,
             "llama": llama.get(key, "")} for key, value, requested, noted, rest in s["config"]]
    return {"header": s["header"], "model": [list(row) for row in s["model"]], "config": rows,
            "notes": s["notes"], "memory": s["memory"], "load_time": s["load_time"]}


def load_summary_bundle(lr: "LoadResult") -> dict[str, str]:
    """Text + HTML of the summary (no ``application/json``: JupyterLab would prefer it to the HTML)."""
    return bundle(load_summary_text(lr), load_summary_html(lr))
