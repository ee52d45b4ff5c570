"""Rendering of lmsext objects for notebooks (HTML) and terminals (aligned text). No engine logic.

* :func:`load_summary_html` / :func:`load_summary_text` — the load-config summary of a
  :class:`~lmsext.results.LoadResult`: model info, every effective setting with its REST name, what
  was requested, what was applied differently and why, memory, load time.
* :func:`prediction_html` / :func:`prediction_text` and :func:`stats_line` — a prediction and its stats;
  :func:`stream_bundle`, :func:`stats_bundle` and :func:`live_stats_bundle` — what a streaming cell shows.
* Tables for ``%lm_ps``, ``%lm_ls``, ``%lm_config``, ``%lm_chat show``; :func:`error_bundle` for the one
  red line of a user error.

Every ``*_bundle`` function returns a display bundle ``{"text/plain": ..., "text/html": ...}`` for
``IPython.display.display(bundle, raw=True)``.
"""

from __future__ import annotations

import html
import json
from typing import TYPE_CHECKING, Any, Iterable, Sequence

from ..engine.gguf_info import format_bytes, format_params

if TYPE_CHECKING:
    from ..chat import Chat
    from ..client import DownloadedModel
    from ..llm import LLM
    from ..results import LoadResult, PredictionResult, PredictionStats

RED, DIM, BOLD, RESET = "\x1b[31m", "\x1b[2m", "\x1b[1m", "\x1b[0m"
_CSS = ("font-family:var(--jp-ui-font-family,sans-serif);font-size:13px;line-height:1.4")
_TABLE = "border-collapse:collapse;margin:2px 0 8px 0"
_TH = "text-align:left;padding:1px 12px 1px 0;font-weight:600"
_TD = "text-align:left;padding:1px 12px 1px 0;vertical-align:top"
_MUTED = "color:#888"
_WARN = "color:#b35900"
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
        text = f"{value['layers']}/{value.get('total_layers', '?')} layers on GPU (ratio {format_value(value.get('ratio'))})"
        extra = []
        if value.get("main_gpu"):
            extra.append(f"main GPU {value['main_gpu']}")
        if value.get("split_strategy") not in (None, "evenly"):
            extra.append(f"split {value['split_strategy']}")
        if value.get("disabled_gpus"):
            extra.append(f"disabled {format_value(value['disabled_gpus'])}")
        return text + (" · " + ", ".join(extra) if extra else "")
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


def _note_key(note: str) -> str:
    return note.split(" ", 1)[0].rstrip(":")


def _seconds(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value * 1000:.1f} ms" if value < 1 else f"{value:.2f} s"


# ------------------------------------------------------------------------------ load summary

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
    from ..client import LOAD_SETTINGS  # the public table: which llama.cpp parameters each setting drives
    llama = {row.name: row.llama_params for row in LOAD_SETTINGS}
    s = _load_sections(lr)
    out = [f'<div class="lmsext-load-summary" style="{_CSS}">',
           f'<div style="font-weight:600;margin-bottom:4px">{esc(s["header"])}</div>',
           f'<table style="{_TABLE}"><tr><th colspan="2" style="{_TH}">Model</th></tr>']
    out += [f'<tr><td style="{_TD};{_MUTED}">{esc(k)}</td><td style="{_TD}">{esc(v)}</td></tr>' for k, v in s["model"]]
    out.append("</table>")
    out.append(f'<table style="{_TABLE}"><tr><th style="{_TH}">setting (REST name)</th><th style="{_TH}">effective</th>'
               f'<th style="{_TH}">requested</th><th style="{_TH};{_MUTED}">llama.cpp</th></tr>')
    for key, value, requested, noted, rest in s["config"]:
        style = f"{_TD};{_WARN}" if noted else _TD
        name = f"<b>{esc(key)}</b>" if rest else esc(key)
        flag = " ⚠" if noted else ""
        out.append(f'<tr><td style="{style}"><code>{name}</code>{flag}</td><td style="{style}">{esc(value)}</td>'
                   f'<td style="{_TD}">{esc(requested)}</td>'
                   f'<td style="{_TD};{_MUTED};font-size:11px">{esc(llama.get(key, ""))}</td></tr>')
    out.append("</table>")
    if s["notes"]:
        out.append(f'<div style="font-weight:600">Applied differently / notes</div><ul style="margin:2px 0 8px 0">')
        out += [f'<li style="{_WARN}">{esc(n)}</li>' for n in s["notes"]]
        out.append("</ul>")
    out.append(f'<div><b>Memory</b> {esc(s["memory"])} &nbsp; <b>Load time</b> {esc(s["load_time"])}</div>')
    if lr.llama_params:
        out.append(f'<details><summary style="{_MUTED}">llama.cpp parameters</summary>'
                   f'<pre style="font-size:11px">{esc(json.dumps(lr.llama_params, indent=1, default=str))}</pre>'
                   "</details>")
    out.append("</div>")
    return "".join(out)


def load_summary_data(lr: "LoadResult") -> dict[str, Any]:
    """The load-config summary as plain JSON for front ends (the LoadSummaryView widget): ``header``,
    ``model`` rows, ``config`` rows (``key``, ``effective``, ``requested``, ``differs``, ``rest``, ``llama``),
    ``notes``, ``memory`` and ``load_time`` — the same content as the HTML and text summaries."""
    from ..client import LOAD_SETTINGS
    llama = {row.name: row.llama_params for row in LOAD_SETTINGS}
    s = _load_sections(lr)
    rows = [{"key": key, "effective": value, "requested": requested, "differs": noted, "rest": rest,
             "llama": llama.get(key, "")} for key, value, requested, noted, rest in s["config"]]
    return {"header": s["header"], "model": [list(row) for row in s["model"]], "config": rows,
            "notes": s["notes"], "memory": s["memory"], "load_time": s["load_time"]}


def load_summary_bundle(lr: "LoadResult") -> dict[str, str]:
    """Text + HTML of the summary (no ``application/json``: JupyterLab would prefer it to the HTML)."""
    return bundle(load_summary_text(lr), load_summary_html(lr))


# ------------------------------------------------------------------------------ predictions

def stats_line(stats: "PredictionStats") -> str:
    """``50 tokens · 5117 tok/s · first token 2.0 ms · stop: maxPredictedTokensReached``."""
    parts = [f"{stats.predicted_tokens_count} tokens"]
    parts.append(f"{stats.tokens_per_second:.1f} tok/s" if stats.tokens_per_second else "– tok/s")
    parts.append(f"first token {_seconds(stats.time_to_first_token_sec)}")
    stop = f"stop: {stats.stop_reason}"
    if stats.stop_string is not None:
        stop += f" ({stats.stop_string!r})"
    parts.append(stop)
    if stats.truncated_prompt_tokens_count:
        parts.append(f"{stats.truncated_prompt_tokens_count} prompt tokens truncated")
    if stats.error:
        parts.append(f"error: {stats.error}")
    return " · ".join(parts)


def _stats_tail_html(stats: "PredictionStats | None", parse_error: str | None) -> str:
    tail = []
    if parse_error:
        tail.append(f'<div style="color:red">{esc(parse_error)}</div>')
    if stats is not None:
        tail.append(f'<div class="lmsext-stats" style="{_MUTED};font-size:11px;margin-top:4px">'
                    f"{esc(stats_line(stats))}</div>")
    return "".join(tail)


def stream_bundle(text: str, stats: "PredictionStats | None" = None, *, markdown: bool = False,
                  parse_error: str | None = None) -> dict[str, str]:
    """A prediction in one output: the text, then (at the end) any parse error and the stats line."""
    plain = text
    if parse_error:
        plain += f"\n{parse_error}"
    if stats is not None:
        plain += f"\n\n[{stats_line(stats)}]"
    if markdown and stats is not None:
        error = f"**{parse_error}**\n\n" if parse_error else ""
        return {"text/plain": plain, "text/markdown": f"{text}\n\n{error}*{stats_line(stats)}*"}
    return {"text/plain": plain,
            "text/html": (f'<div class="lmsext-prediction" style="white-space:pre-wrap">{esc(text)}</div>'
                          + _stats_tail_html(stats, parse_error))}


def stats_bundle(stats: "PredictionStats", *, parse_error: str | None = None) -> dict[str, str]:
    """The output under a streamed text (plain stream view): any parse error, then the stats line."""
    plain = (f"{parse_error}\n" if parse_error else "") + f"[{stats_line(stats)}]"
    return bundle(plain, _stats_tail_html(stats, parse_error))


def live_stats_bundle(tokens: int, seconds: float, tokens_per_second: float | None = None) -> dict[str, str]:
    """The small line a plain stream view updates while tokens arrive: ``… 120 tokens · 85.2 tok/s · 1.4 s``."""
    if tokens:
        rate = f"{tokens_per_second:.1f} tok/s" if tokens_per_second else "– tok/s"
        line = f"… {tokens} tokens · {rate} · {seconds:.1f} s"
    else:
        line = "… generating"
    return bundle(line, f'<div class="lmsext-live" style="{_MUTED};font-size:11px">{esc(line)}</div>')


def prediction_text(result: "PredictionResult") -> str:
    """A prediction result as text: the content and the stats line."""
    return stream_bundle(result.content, result.stats, parse_error=result.parse_error)["text/plain"]


def prediction_html(result: "PredictionResult") -> str:
    """A prediction result as HTML: the content and the stats line."""
    return stream_bundle(result.content, result.stats, parse_error=result.parse_error)["text/html"]


# ------------------------------------------------------------------------------ token probabilities

def prob_colour(p: float) -> str:
    """Background colour of a token of probability ``p``: red (unlikely) → yellow → green (likely)."""
    return f"hsl({round(120 * min(max(p, 0.0), 1.0))},85%,82%)"


def _ansi_prob(p: float) -> str:
    return "\x1b[32m" if p >= 0.8 else ("\x1b[33m" if p >= 0.3 else "\x1b[31m")


def token_pieces(result: "PredictionResult") -> list[tuple[str, Any]]:
    """``[(visible text, TokenLogProb)]`` of a prediction made with ``log_probs``: each generated token's
    text, clipped so that the pieces add up to ``result.content`` (a stop string is not shown)."""
    pieces: list[list[Any]] = []
    content, pos = result.content, 0
    for lp in result.logprobs or []:
        if pos >= len(content):
            break
        text = lp.text
        if text and content.startswith(text, pos):
            pieces.append([text, lp])
            pos += len(text)
        elif text and text.startswith(content[pos:]):  # the last token runs into a stop string
            pieces.append([content[pos:], lp])
            pos = len(content)
        else:  # part of a character split over tokens: the text shows up with a later token
            j = content.find(text, pos) if text and "\ufffd" not in text else -1
            if j > pos:
                gap = content[pos:j]
                if pieces and pieces[-1][0] == "":
                    pieces[-1][0] = gap
                else:
                    pieces.append([gap, None])
                pieces.append([text, lp])
                pos = j + len(text)
            else:
                pieces.append(["", lp])
    if pos < len(content):
        if pieces and pieces[-1][0] == "":
            pieces[-1][0] = content[pos:]
        else:
            pieces.append([content[pos:], None])
    return [(text, lp) for text, lp in pieces]


def _prob(lp: Any) -> float:
    import math
    return math.exp(lp.logprob) if lp is not None else 1.0


def _alternatives(lp: Any) -> list[tuple[str, float]]:
    import math
    return [(text, math.exp(logprob)) for _, text, logprob in lp.top] if lp is not None else []


def token_probs_text(result: "PredictionResult") -> str:
    """Terminal form: the reply coloured by probability (ANSI: green ≥ 80 %, yellow ≥ 30 %, red), then one
    line per token with its probability and the alternatives."""
    pieces = token_pieces(result)
    coloured = "".join(f"{_ansi_prob(_prob(lp))}{text}{RESET}" if lp is not None else text for text, lp in pieces)
    lines = [coloured, "", f"{'token':<18} {'p':>6}  alternatives"]
    for text, lp in pieces:
        if lp is None:
            continue
        alts = " · ".join(f"{t!r} {p:.2f}" for t, p in _alternatives(lp) if t != lp.text)
        lines.append(f"{text!r:<18} {_prob(lp):>6.3f}  {alts}".rstrip())
    lines += ["", f"[{stats_line(result.stats)}]"]
    return "\n".join(lines)


def token_probs_html(result: "PredictionResult") -> str:
    """Notebook form: each token on a background coloured by its probability; hovering shows the
    probability and the top alternatives (the ``title`` tooltip)."""
    spans = []
    for text, lp in token_pieces(result):
        if lp is None or not text:
            spans.append(esc(text))
            continue
        p = _prob(lp)
        tip = [f"{lp.text!r}  p={p:.3f}"] + [f"{'→' if t == lp.text else ' '} {t!r}  {q:.3f}"
                                               for t, q in _alternatives(lp)]
        spans.append(f'<span class="lmsext-token" data-p="{p:.4f}" title="{esc(chr(10).join(tip))}" '
                     f'style="background:{prob_colour(p)};border-radius:3px;padding:0 1px;cursor:help">'
                     f"{esc(text)}</span>")
    legend = "".join(f'<span style="background:{prob_colour(q)};padding:0 4px;border-radius:3px">{label}</span> '
                     for q, label in ((0.05, "unlikely"), (0.5, "50 %"), (0.95, "likely")))
    return (f'<div class="lmsext-probs" style="{_CSS}">'
            f'<div class="lmsext-prediction" style="white-space:pre-wrap;line-height:1.7">{"".join(spans)}</div>'
            f'<div style="{_MUTED};font-size:11px;margin-top:4px">token probability: {legend}· hover a token for '
            f"its alternatives · {esc(stats_line(result.stats))}</div></div>")


def token_probs_bundle(result: "PredictionResult") -> dict[str, str]:
    """Text + HTML of a prediction made with ``log_probs``, every token coloured by its probability."""
    return bundle(token_probs_text(result), token_probs_html(result))


# ------------------------------------------------------------------------------ tables

def table_bundle(headers: Sequence[str], rows: Sequence[Sequence[Any]], *, title: str = "",
                 empty: str = "(none)") -> dict[str, str]:
    """An aligned text table and an HTML table of the same rows."""
    cells = [[str(c) for c in row] for row in rows]
    if not cells:
        text = (title + "\n" if title else "") + empty
        return bundle(text, f'<div style="{_CSS}">{esc(title)} <i style="{_MUTED}">{esc(empty)}</i></div>')
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    lines = [title] if title else []
    lines.append("  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip())
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    out = [f'<div style="{_CSS}">']
    if title:
        out.append(f'<div style="font-weight:600">{esc(title)}</div>')
    out.append(f'<table style="{_TABLE}"><tr>' + "".join(f'<th style="{_TH}">{esc(h)}</th>' for h in headers) + "</tr>")
    out += ["<tr>" + "".join(f'<td style="{_TD}">{esc(c)}</td>' for c in row) + "</tr>" for row in cells]
    out.append("</table></div>")
    return bundle("\n".join(lines), "".join(out))


def loaded_models_bundle(models: Iterable["LLM"], current: str | None = None) -> dict[str, str]:
    """``%lm_ps``: every loaded instance with its effective config."""
    headers = ["identifier", "model", *REST_KEYS, "gpu", "kv cache (K/V)", "threads", "memory", "other settings"]
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
                     format_bytes(sum(lr.memory.values())), other])
    return table_bundle(headers, rows, title="Loaded models", empty="no model is loaded (%lm_load MODEL)")


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
    rows = "".join(f'<tr><td style="{_TD};{_MUTED}">{esc(m["role"])}</td>'
                   f'<td style="{_TD};white-space:pre-wrap">{esc(m["content"])}</td></tr>' for m in messages)
    return bundle(text, f'<div style="{_CSS}"><div style="font-weight:600">{esc(title)}</div>'
                        f'<table style="{_TABLE}">{rows}</table></div>')


def message_bundle(message: str) -> dict[str, str]:
    """A one-line informational message."""
    return bundle(message, f'<div style="{_CSS}">{esc(message)}</div>')


def error_bundle(message: str) -> dict[str, str]:
    """ONE red line: ANSI red in text, a red span in HTML."""
    line = " ".join(str(message).split())
    return bundle(f"{RED}{line}{RESET}", f'<span style="color:red">{esc(line)}</span>')


__all__ = [
    "bundle", "chat_bundle", "config_bundle", "downloaded_models_bundle", "error_bundle", "format_setting",
    "format_value", "load_summary_bundle", "load_summary_data", "load_summary_html", "load_summary_text",
    "live_stats_bundle", "loaded_models_bundle",
    "message_bundle", "prediction_html", "prediction_text", "prob_colour", "stats_bundle", "stats_line",
    "stream_bundle",
    "table_bundle", "token_pieces", "token_probs_bundle", "token_probs_html", "token_probs_text",
]
