"""A prediction and its stats: :func:`stats_line`, the bundles a streaming cell shows, and the
token-probability view of a prediction made with ``log_probs``."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from .html import CSS, MUTED, RESET, bundle, esc
from .reasoning import reasoning_html, reasoning_plain
from .stop_reasons import stop_text

if TYPE_CHECKING:
    from ..results import PredictionResult, PredictionStats


def _seconds(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value * 1000:.1f} ms" if value < 1 else f"{value:.2f} s"


def stats_line(stats: "PredictionStats") -> str:
    """``50 tokens · 5117 tok/s · first token 2.0 ms · stop: maxPredictedTokensReached (hit the token limit)``."""
    parts = [f"{stats.predicted_tokens_count} tokens"]
    parts.append(f"{stats.tokens_per_second:.1f} tok/s" if stats.tokens_per_second else "– tok/s")
    parts.append(f"first token {_seconds(stats.time_to_first_token_sec)}")
    parts.append(stop_text(stats))
    if stats.truncated_prompt_tokens_count:
        parts.append(f"{stats.truncated_prompt_tokens_count} prompt tokens truncated")
    if getattr(stats, "used_draft_model_key", None) is not None:
        parts.append(f"accepted {stats.accepted_draft_tokens_count}/{stats.total_draft_tokens_count} draft tokens "
                     f"({stats.used_draft_model_key})")
    if stats.error:
        parts.append(f"error: {stats.error}")
    return " · ".join(parts)


#: Most characters of a ``%%lm_complete`` prompt shown (dimmed) before its completion: the end of a longer one.
PROMPT_TAIL_CHARS = 300


def prompt_tail(prompt: str) -> str:
    """The end of ``prompt`` shown before the completion that continues it (``…`` + the last
    :data:`PROMPT_TAIL_CHARS` characters of a longer one)."""
    return prompt if len(prompt) <= PROMPT_TAIL_CHARS else "…" + prompt[-PROMPT_TAIL_CHARS:]


def _stats_tail_html(stats: "PredictionStats | None", parse_error: str | None) -> str:
    tail = []
    if parse_error:
        tail.append(f'<div style="color:red">{esc(parse_error)}</div>')
    if stats is not None:
        tail.append(f'<div class="lmsext-stats" style="{MUTED};font-size:11px;margin-top:4px">'
                    f"{esc(stats_line(stats))}</div>")
    return "".join(tail)


def stream_bundle(text: str, stats: "PredictionStats | None" = None, *, markdown: bool = False,
                  parse_error: str | None = None, reasoning: str = "") -> dict[str, str]:
    """A prediction in one output: its ``reasoning`` folded and dimmed (if any), the text, then (at the end) any
    parse error and the stats line."""
    plain = reasoning_plain(reasoning) + text
    if parse_error:
        plain += f"\n{parse_error}"
    if stats is not None:
        plain += f"\n\n[{stats_line(stats)}]"
    if markdown and stats is not None:
        error = f"**{parse_error}**\n\n" if parse_error else ""
        return {"text/plain": plain,
                "text/markdown": f"{reasoning_html(reasoning)}{text}\n\n{error}*{stats_line(stats)}*"}
    return {"text/plain": plain,
            "text/html": (reasoning_html(reasoning)
                          + f'<div class="lmsext-prediction" style="white-space:pre-wrap">{esc(text)}</div>'
                          + _stats_tail_html(stats, parse_error))}


#: Background of a token a draft proposed and the model accepted (the stream view with a draftModel).
DRAFTED_BACKGROUND = "#c8f0c8"


def drafted_bundle(spans: list[tuple[str, bool]], stats: "PredictionStats") -> dict[str, str]:
    """A reply made with speculative decoding, each piece ``(text, drafted)``: the tokens the draft
    proposed and the model accepted on a green background, the others plain, then the stats line."""
    pieces = "".join(f'<span style="background:{DRAFTED_BACKGROUND}">{esc(t)}</span>' if drafted else esc(t)
                     for t, drafted in spans)
    legend = (f'<div style="{MUTED};font-size:11px"><span style="background:{DRAFTED_BACKGROUND}">green</span>: '
              "proposed by the draft, accepted by the model in one batch; plain: chosen by the model itself</div>")
    text = "".join(t for t, _ in spans)
    return bundle(f"{text}\n\n[{stats_line(stats)}]",
                  f'<div class="lmsext-prediction lmsext-drafted" style="white-space:pre-wrap">{pieces}</div>'
                  + legend + _stats_tail_html(stats, None))


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
    return bundle(line, f'<div class="lmsext-live" style="{MUTED};font-size:11px">{esc(line)}</div>')


def prediction_text(result: "PredictionResult") -> str:
    """A prediction result as text: the content and the stats line."""
    return result_bundle(result)["text/plain"]


def prediction_html(result: "PredictionResult") -> str:
    """A prediction result as HTML: the content and the stats line."""
    return result_bundle(result)["text/html"]


def result_bundle(result: "PredictionResult", *, markdown: bool = False) -> dict[str, str]:
    """A finished result in one output: with a reasoning section, the reasoning folded and dimmed above the
    answer; else the whole content; then the stats line."""
    reasoning = getattr(result, "reasoning_content", "")
    text = result.non_reasoning_content if reasoning else result.content
    return stream_bundle(text, result.stats, markdown=markdown, parse_error=result.parse_error, reasoning=reasoning)


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
    """The model's own probability of the token (LM Studio's ``logprobs``)."""
    return math.exp(lp.logprob) if lp is not None else 1.0


def _drawn(lp: Any) -> float:
    """The probability the token was sampled with (after temperature, penalties, top-k/p, min-p), where the engine
    gives it; else the model's own: what ``--probs`` colours by."""
    sampled = getattr(lp, "sampled_probability", None) if lp is not None else None
    return sampled if sampled is not None else _prob(lp)


def _by_sampled(pieces: list[tuple[str, Any]]) -> bool:
    """True when the colours are the sampled probabilities (every token has one)."""
    tokens = [lp for _, lp in pieces if lp is not None]
    return bool(tokens) and all(getattr(lp, "sampled_probability", None) is not None for lp in tokens)


def _alternatives(lp: Any) -> list[tuple[str, float]]:
    return [(text, math.exp(logprob)) for _, text, logprob in lp.top] if lp is not None else []


def token_probs_text(result: "PredictionResult", *, with_stats: bool = True) -> str:
    """Terminal form: the reply coloured by the probability each token was sampled with (ANSI: green ≥ 80 %,
    yellow ≥ 30 %, red), then one line per token with that probability, the model's own and the model's
    alternatives (then the stats line, unless ``with_stats`` is False: under a streamed reply that already
    showed it)."""
    pieces = token_pieces(result)
    coloured = "".join(f"{_ansi_prob(_drawn(lp))}{text}{RESET}" if lp is not None else text for text, lp in pieces)
    sampled = _by_sampled(pieces)
    header = f"{'token':<18} {'drawn':>6} {'model':>6}  alternatives (model)" if sampled else \
        f"{'token':<18} {'p':>6}  alternatives"
    lines = [coloured, "", header]
    for text, lp in pieces:
        if lp is None:
            continue
        alts = " · ".join(f"{t!r} {p:.2f}" for t, p in _alternatives(lp) if t != lp.text)
        probs = f"{_drawn(lp):>6.3f} {_prob(lp):>6.3f}" if sampled else f"{_prob(lp):>6.3f}"
        lines.append(f"{text!r:<18} {probs}  {alts}".rstrip())
    if with_stats:
        lines += ["", f"[{stats_line(result.stats)}]"]
    return "\n".join(lines)


def token_probs_html(result: "PredictionResult", *, with_stats: bool = True) -> str:
    """Notebook form: each token on a background coloured by the probability it was sampled with (after
    temperature, penalties, top-k/p, min-p: ``sampled_probability``; the model's own where the engine does not
    give it); hovering shows it, the model's own probability and the model's top alternatives (the ``title``
    tooltip); the stats line unless ``with_stats`` is False."""
    spans = []
    pieces = token_pieces(result)
    sampled = _by_sampled(pieces)
    for text, lp in pieces:
        if lp is None or not text:
            spans.append(esc(text))
            continue
        p = _drawn(lp)
        first = f"{lp.text!r}  drawn with p={p:.3f} · model p={_prob(lp):.3f}" if sampled else \
            f"{lp.text!r}  p={p:.3f}"
        tip = [first] + [f"{'→' if t == lp.text else ' '} {t!r}  {q:.3f}" for t, q in _alternatives(lp)]
        spans.append(f'<span class="lmsext-token" data-p="{p:.4f}" title="{esc(chr(10).join(tip))}" '
                     f'data-model-p="{_prob(lp):.4f}" '
                     f'style="background:{prob_colour(p)};border-radius:3px;padding:0 1px;cursor:help">'
                     f"{esc(text)}</span>")
    what = ("probability each token was drawn with (after temperature, penalties, top-k/top-p/min-p)" if sampled
            else "token probability (the model's)")
    legend = "".join(f'<span style="background:{prob_colour(q)};padding:0 4px;border-radius:3px">{label}</span> '
                     for q, label in ((0.05, "unlikely"), (0.5, "50 %"), (0.95, "likely")))
    return (f'<div class="lmsext-probs" style="{CSS}">'
            f'<div class="lmsext-prediction" style="white-space:pre-wrap;line-height:1.7">{"".join(spans)}</div>'
            f'<div style="{MUTED};font-size:11px;margin-top:4px">{what}: {legend}· hover a token for '
            f"the model's own probability and alternatives"
            f"{' · ' + esc(stats_line(result.stats)) if with_stats else ''}</div></div>")


def token_probs_bundle(result: "PredictionResult", *, with_stats: bool = True) -> dict[str, str]:
    """Text + HTML of a prediction made with ``log_probs``, every token coloured by its probability (and its
    stats line unless ``with_stats`` is False: ``--probs`` under a streamed reply says each fact once)."""
    return bundle(token_probs_text(result, with_stats=with_stats), token_probs_html(result, with_stats=with_stats))
