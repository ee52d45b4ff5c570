"""A reply's reasoning, folded and dimmed above its answer (HTML) or dimmed (terminal)."""

from __future__ import annotations

from .html import DIM, RESET, esc


def reasoning_plain(reasoning: str) -> str:
    """The reasoning dimmed, then a blank line (empty when there is none)."""
    return f"{DIM}{reasoning.strip()}{RESET}\n\n" if reasoning.strip() else ""


def reasoning_html(reasoning: str) -> str:
    """A folded ``<details>`` block (closed) holding the reasoning, dimmed (empty when there is none)."""
    if not reasoning.strip():
        return ""
    words = len(reasoning.split())
    return (f'<details class="lmsext-reasoning" style="opacity:0.6;margin-bottom:4px">'
            f"<summary>reasoning ({words} words)</summary>"
            f'<div style="white-space:pre-wrap;font-style:italic">{esc(reasoning.strip())}</div></details>')
