"""``NextTokenExplorer``: the sampling lab's widget — what the next token could be, and why.

The top-N next-token candidates as probability bars, re-shaped live by sliders for temperature,
top-k, top-p, min-p and repeat penalty: the tokens a sampler cuts are greyed (and say which sampler
cut them), the others show their renormalised probability. "Step" appends the sampled token,
clicking a bar appends that token instead, "Back" rewinds, "Sample 100" draws 100 tokens with the
seed and shows their histogram beside the theoretical distribution.

Everything comes from :meth:`lmsext.LLM.next_token_distribution`: llama.cpp's own sampler chain on the
last position's logits — the distribution shown is the one the engine samples from. The front end is
``explorer.js`` (an anywidget ES module shipped with the package; no node needed).

>>> from lmsext.widgets import NextTokenExplorer
>>> explorer = NextTokenExplorer(model, "Once upon a time, there was a")
>>> explorer                      # the widget
>>> explorer.step(); explorer.pick(explorer.candidates[1].token); explorer.back()
>>> explorer.sample(100)          # {token: count}
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anywidget
import traitlets as t

from ..config import SAMPLING_DEFAULTS
from ..errors import LmsextError
from .frontend import asset, widget_bundle

#: Prediction-config keys the sliders drive (their PredictionConfig spelling).
SLIDER_KEYS = {"temperature": "temperature", "top_k": "top_k_sampling", "top_p": "top_p_sampling",
               "min_p": "min_p_sampling", "repeat_penalty": "repeat_penalty"}
#: LM Studio's defaults (lmsext.config.SAMPLING_DEFAULTS), the sliders' starting values.
SLIDER_DEFAULTS = {name: SAMPLING_DEFAULTS[key] for name, key in SLIDER_KEYS.items()}
#: llama.cpp's sampler names in words (explorer.js's STAGE_LABELS)
#: The most tokens one "Play" appends.
MAX_PLAY = 500
STAGE_WORDS = {"penalties": "repeat penalty", "temp": "temperature", "xtc": "XTC", "grammar": "structured"}


def fate(candidate: Any, stages: list) -> str:
    """What the samplers did to ``candidate``, in words, as the front end says it (``fateText``): "cut by
    top-p", "lowered by repeat penalty, then cut by top-p", "lowered by repeat penalty" or ""."""
    names = [s.name for s in stages]
    i = names.index("penalties") if "penalties" in names else -1
    lowered = 0 <= i < len(candidate.stage_probs) and candidate.stage_probs[i] < candidate.prob * 0.98
    cut = f"cut by {STAGE_WORDS.get(candidate.cut_by, candidate.cut_by)}" if candidate.cut_by else ""
    if lowered and candidate.cut_by == "penalties":
        return cut
    if lowered:
        return f"lowered by repeat penalty, then {cut}" if cut else "lowered by repeat penalty"
    return cut


def spread(probs: Any, bits_key: str, choices_key: str) -> dict[str, float]:
    """Entropy in bits of the probabilities ``probs`` and the effective number of choices, ``2 ** bits``
    (= exp of the entropy in nats): 1 for a sure token, N for N equally likely ones."""
    import numpy as np
    p = np.asarray(probs, dtype=np.float64)
    p = p[p > 0]
    bits = float(-(p * np.log2(p)).sum()) if p.size else 0.0
    return {bits_key: bits, choices_key: float(2.0 ** bits)}


def _resolve_model(model: Any):
    if isinstance(model, (str, Path)):
        from ..client import default_client
        return default_client().llm.model(str(model))
    if not hasattr(model, "next_token_distribution"):
        raise TypeError(f"model must be an lmsext LLM or a model key, got {type(model).__name__}")
    return model


class NextTokenExplorer(anywidget.AnyWidget):
    """Explore the next-token distribution of ``model`` after ``prompt`` (raw text or a Chat).

    ``config``: any further prediction settings (XTC, structured output…); the slider values
    (``temperature``, ``top_k``, ``top_p``, ``min_p``, ``repeat_penalty``, ``seed``) start from it or
    from LM Studio's defaults. ``top_p=1``, ``top_k=0``, ``min_p=0``, ``repeat_penalty=1`` turn a
    sampler off; ``temperature=0`` is greedy.
    """

    _esm = asset("explorer.js")

    temperature = t.Float(SLIDER_DEFAULTS["temperature"], min=0.0, max=2.0).tag(sync=True)
    top_k = t.Int(SLIDER_DEFAULTS["top_k"], min=0).tag(sync=True)
    top_p = t.Float(SLIDER_DEFAULTS["top_p"], min=0.01, max=1.0).tag(sync=True)
    min_p = t.Float(SLIDER_DEFAULTS["min_p"], min=0.0, max=1.0).tag(sync=True)
    repeat_penalty = t.Float(SLIDER_DEFAULTS["repeat_penalty"], min=0.1, max=3.0).tag(sync=True)
    seed = t.Int(0, min=0).tag(sync=True)
    #: "fixed": Step uses ``seed`` + position (replayable: Back then Step gives the same token);
    #: "random": a fresh random seed per Step
    seed_mode = t.Enum(("fixed", "random"), "fixed").tag(sync=True)
    top_n = t.Int(20, min=1, max=200).tag(sync=True)
    #: the bars' axis: "auto" (scaled to the largest bar), "fixed" (0–100 %), "log" (10⁻⁶–1)
    scale = t.Enum(("auto", "fixed", "log"), "auto").tag(sync=True)
    #: how many tokens "Play" appends, one Step after another
    play_n = t.Int(20, min=1, max=MAX_PLAY).tag(sync=True)
    samples_n = t.Int(100, min=1, max=10_000).tag(sync=True)

    model_name = t.Unicode("").tag(sync=True)
    prompt_text = t.Unicode("").tag(sync=True)
    #: the appended tokens: ``[{"token", "text", "prob", "how": "step"|"pick"}]``
    generated = t.List(t.Dict()).tag(sync=True)
    #: :meth:`NextTokenDistribution.to_dict` of the current context and settings
    distribution = t.Dict().tag(sync=True)
    #: the last "Sample N": ``{"n", "seed", "counts": {token: count}, "texts": {token: text}}``
    histogram = t.Dict().tag(sync=True)
    error = t.Unicode("").tag(sync=True)

    def __init__(self, model: Any, prompt: Any = "", config: Any = None, *, top_n: int = 20, seed: int = 0,
                 **kwargs: Any) -> None:
        from ..config import PredictionConfig
        self.llm = _resolve_model(model)
        base = PredictionConfig.parse(config)
        values = {}
        for name, key in SLIDER_KEYS.items():
            value = getattr(base, key)
            if value is False:  # "off"
                value = {"top_k": 0, "top_p": 1.0, "min_p": 0.0, "repeat_penalty": 1.0}[name]
            if value is not None:
                values[name] = value
        if base.seed is not None:
            seed = base.seed
        self._extra = {k: v for k, v in base.explicit().items()
                       if k not in set(SLIDER_KEYS.values()) | {"seed", "max_tokens"}}
        self._ready = False
        super().__init__(top_n=top_n, seed=seed, **values, **kwargs)
        self.model_name = self.llm.identifier
        self._dist = None
        self.set_prompt(prompt)
        self._ready = True
        self.on_msg(self._on_front_end_msg)

    # -- state ---------------------------------------------------------------------------------

    @property
    def config(self) -> dict[str, Any]:
        """The prediction config the explorer shows the distribution of (the sliders + ``config``)."""
        return {**self._extra, "temperature": self.temperature, "top_k_sampling": self.top_k,
                "top_p_sampling": self.top_p, "min_p_sampling": self.min_p,
                "repeat_penalty": self.repeat_penalty, "seed": self.seed}

    @property
    def tokens(self) -> list[int]:
        """The context: the prompt's tokens and the appended ones."""
        return self._prompt_tokens + [g["token"] for g in self.generated]

    @property
    def text(self) -> str:
        """The prompt text and the appended tokens' text."""
        return self.prompt_text + "".join(g["text"] for g in self.generated)

    @property
    def dist(self):
        """The current :class:`~lmsext.engine.distribution.NextTokenDistribution`."""
        return self._dist

    @property
    def candidates(self) -> list:
        """The bars: the most likely next tokens with their sampler fates."""
        return list(self._dist.candidates) if self._dist is not None else []

    # -- actions -------------------------------------------------------------------------------

    def refresh(self) -> None:
        """Recompute the distribution for the current context and sliders."""
        try:
            self._dist = self.llm.next_token_distribution(self.tokens, self.config, top_n=self.top_n)
        except (LmsextError, ValueError) as exc:
            self.error = str(exc)
            return
        self.error = ""
        data = self._dist.to_dict()
        data.pop("prompt_tokens", None)
        data["context_tokens"] = len(self._dist.prompt_tokens)
        data["eog"] = [c.token for c in self._dist.candidates if self.llm.is_end_of_generation(c.token)]
        data.update(spread(self._dist.probs, "entropy_bits", "effective_choices"))
        data.update(self._model_spread())
        self.distribution = data
        if self.histogram and self.histogram.get("key") != self._key():
            self.histogram = {}

    def step(self) -> int:
        """Append a token sampled from the shown distribution (``seed_mode`` "fixed": seed = ``seed`` +
        position, replayable; "random": a fresh seed)."""
        dist = self.llm.next_token_distribution(self.tokens, {**self.config, "seed": self._step_seed()},
                                                top_n=0, samples=1)
        token = dist.samples[0]
        self._append(token, dist.prob(token), "step", dist.text(token))
        return token

    def pick(self, token: int) -> int:
        """Append ``token`` (a clicked bar) instead of a sampled one."""
        token = int(token)
        if not 0 <= token < self.llm.vocab_size():
            raise ValueError(f"token {token} is outside the vocabulary")
        prob = self._dist.prob(token) if self._dist is not None else 0.0
        self._append(token, prob, "pick")
        return token

    def back(self) -> int | None:
        """Remove the last appended token (None when there is none)."""
        if not self.generated:
            return None
        last = self.generated[-1]["token"]
        self.generated = self.generated[:-1]
        self.refresh()
        return last

    def reset(self) -> None:
        """Back to the prompt."""
        self.generated = []
        self.refresh()

    def set_prompt(self, prompt: Any) -> None:
        """Start again from ``prompt`` (raw text, or a Chat through the model's template): the edited prompt."""
        if isinstance(prompt, str):
            tokens, text = self.llm.tokenize(prompt), prompt
        else:
            from ..chat import Chat
            messages = Chat.from_history(prompt).messages
            tokens, text = self.llm.tokenize_chat(messages), self.llm.apply_prompt_template(messages)
        if not tokens:
            raise ValueError("the prompt is empty (and the model adds no BOS token): give some text")
        self._prompt_tokens, self.prompt_text = tokens, text
        self.generated = []
        self.refresh()

    def play(self, n: int | None = None) -> list[int]:
        """Step ``n`` times (default ``play_n``, at most :data:`MAX_PLAY`), stopping after an end-of-text token;
        each Step updates the bars as it goes. Returns the tokens appended."""
        n = self.play_n if n is None else int(n)
        if not 1 <= n <= MAX_PLAY:
            raise ValueError(f"play {n}: give 1 to {MAX_PLAY} steps")
        tokens = []
        for _ in range(n):
            tokens.append(self.step())
            if self.llm.is_end_of_generation(tokens[-1]):
                break
        return tokens

    @property
    def entropy(self) -> float:
        """Entropy (bits) of the distribution sampled from; ``2 ** entropy`` = the effective number of choices."""
        return spread(self._dist.probs, "bits", "choices")["bits"] if self._dist is not None else 0.0

    def sample(self, n: int | None = None) -> dict[int, int]:
        """Draw ``n`` (default ``samples_n``) next tokens through the engine's sampler chain with ``seed``;
        the histogram shows them beside the theoretical distribution. Returns ``{token: count}``."""
        n = self.samples_n if n is None else int(n)
        dist = self.llm.next_token_distribution(self.tokens, self.config, top_n=self.top_n, samples=n)
        counts = dist.sample_counts()
        self.histogram = {"n": n, "seed": self.seed, "key": self._key(),
                          "counts": {str(k): v for k, v in counts.items()},
                          "texts": {str(k): dist.text(k) for k in counts}}
        return counts

    # -- plumbing ------------------------------------------------------------------------------

    def _model_spread(self) -> dict[str, float]:
        """The model's own entropy: it depends on the context only, so a slider move reuses it (over a
        262K-token vocabulary it costs ~12 ms)."""
        key = tuple(self.tokens)
        if getattr(self, "_spread_key", None) != key:
            self._spread_key = key
            self._spread = spread(self._dist.model_probs, "model_entropy_bits", "model_effective_choices")
        return self._spread

    def _step_seed(self) -> int:
        if self.seed_mode == "random":
            import secrets
            return secrets.randbelow(2**32)
        return (self.seed + len(self.generated)) % (2**32)

    def _key(self) -> list:
        return [self.tokens, {k: v for k, v in self.config.items() if k != "structured"}]

    def _append(self, token: int, prob: float, how: str, text: str | None = None) -> None:
        if text is None:
            text = self.llm.token_text(token)
        self.generated = [*self.generated, {"token": token, "text": text, "prob": prob, "how": how}]
        self.refresh()

    @t.observe("temperature", "top_k", "top_p", "min_p", "repeat_penalty", "seed", "top_n")
    def _settings_changed(self, change: dict) -> None:
        if self._ready:
            self.refresh()

    def _on_front_end_msg(self, _widget: Any, content: Any, _buffers: Any) -> None:
        if not isinstance(content, dict):
            return
        action = content.get("action")
        try:
            if action == "step":
                self.step()
            elif action == "pick":
                self.pick(content["token"])
            elif action == "back":
                self.back()
            elif action == "reset":
                self.reset()
            elif action == "sample":
                self.sample(content.get("n"))
            elif action == "prompt":
                self.set_prompt(str(content.get("text", "")))
            elif action == "play":
                self.play(content.get("n"))
        except (LmsextError, ValueError, KeyError, TypeError) as exc:
            self.error = f"{action}: {exc}"

    def __repr__(self) -> str:
        return f"NextTokenExplorer({self.model_name!r}, {self.text[-60:]!r})"

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        """The widget, with a static text/HTML picture of the bars where widgets do not render."""
        return widget_bundle(super(), {"text/plain": self.summary_text(), "text/html": self.summary_html()})

    def summary_text(self) -> str:
        """The context and the candidates as text."""
        head = f"NextTokenExplorer on {self.model_name}: {self.text[-80:]!r}"
        return head + ("\n" + str(self._dist) if self._dist is not None else "")

    def summary_html(self) -> str:
        """A static picture of the bars (model probability in grey, sampled probability in blue)."""
        from html import escape
        rows = []
        scale = max([max(c.prob, c.final_prob) for c in self.candidates] or [1.0]) or 1.0
        for c in self.candidates:
            words = fate(c, self._dist.stages)
            cut = (f'<span style="color:#b35900">{escape(words)}</span>' if c.cut_by
                   else f"{c.final_prob:.1%}" + (f' <span style="color:#b35900">({escape(words)})</span>' if words else ""))
            rows.append(
                f'<tr style="{"opacity:.45" if c.cut_by else ""}"><td><code>{escape(repr(c.text))}</code></td>'
                f'<td style="width:300px"><div style="background:#c9c9c9;height:6px;width:{100 * c.prob / scale:.1f}%">'
                f'</div><div style="background:#2f7ed8;height:6px;width:{100 * c.final_prob / scale:.1f}%"></div></td>'
                f"<td>{c.prob:.1%}</td><td>{cut}</td></tr>")
        return (f'<div class="lmsext-explorer-static"><div><code>{escape(self.text[-200:])}</code></div>'
                '<table><tr><th>token</th><th></th><th>model</th><th>sampled</th></tr>' + "".join(rows)
                + "</table></div>")


__all__ = ["MAX_PLAY", "NextTokenExplorer", "SLIDER_DEFAULTS", "SLIDER_KEYS", "fate", "spread"]
