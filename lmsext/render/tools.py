"""The rounds of an ``act()`` loop as a notebook shows them: each round's tool calls (name, arguments,
result, failures in red) and its answer, as plain text and HTML.

It takes plain data — one dict per round: ``{"round": i, "calls": [{"name", "arguments", "result",
"error"}], "answer": str | None, "running": bool}`` — so it needs nothing from :mod:`lmsext.tools`.
"""

from __future__ import annotations

import json
from typing import Any

from .html import CSS, MUTED, RED, RESET, TABLE, TD, TH, bundle, esc

_ERROR_STYLE = "color:#c00"


def _arguments(arguments: Any) -> str:
    return json.dumps(arguments, ensure_ascii=False, default=str)


def act_rounds_text(rounds: list[dict[str, Any]]) -> str:
    """The rounds as terminal text (failed calls in red)."""
    lines: list[str] = []
    for r in rounds:
        lines.append(f"round {r['round'] + 1}{' …' if r.get('running') else ''}")
        for call in r.get("calls", []):
            result = call.get("result")
            shown = "…" if result is None else (f"{RED}{result}{RESET}" if call.get("error") else result)
            lines.append(f"  {call['name']}({_arguments(call['arguments'])}) → {shown}")
        if r.get("answer") is not None:
            lines.append(f"  answer: {r['answer'].strip()}")
    return "\n".join(lines)


def act_rounds_html(rounds: list[dict[str, Any]]) -> str:
    """The rounds as an HTML table: round, tool, arguments, result (failures in red), then the answer."""
    rows: list[str] = []
    for r in rounds:
        label = f"{r['round'] + 1}{' …' if r.get('running') else ''}"
        for call in r.get("calls", []):
            result = call.get("result")
            style = _ERROR_STYLE if call.get("error") else ""
            shown = f'<span style="{MUTED}">running…</span>' if result is None else esc(result)
            rows.append(f'<tr><td style="{TD}">{label}</td><td style="{TD}"><code>{esc(call["name"])}</code></td>'
                        f'<td style="{TD}"><code>{esc(_arguments(call["arguments"]))}</code></td>'
                        f'<td style="{TD};{style}">{shown}</td></tr>')
            label = ""
        if r.get("answer") is not None:
            rows.append(f'<tr><td style="{TD}">{label}</td><td style="{TD};{MUTED}">answer</td>'
                        f'<td style="{TD}" colspan="2">{esc(r["answer"].strip())}</td></tr>')
    head = "".join(f'<th style="{TH}">{h}</th>' for h in ("round", "tool", "arguments", "result"))
    return f'<div style="{CSS}"><table style="{TABLE}"><tr>{head}</tr>{"".join(rows)}</table></div>'


def act_rounds_bundle(rounds: list[dict[str, Any]]) -> dict[str, str]:
    """The display bundle of the rounds."""
    return bundle(act_rounds_text(rounds), act_rounds_html(rounds))
