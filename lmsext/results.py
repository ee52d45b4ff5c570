"""Result objects: load results (seed 002's REST response and more) and prediction results."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from .backend import ModelInfo
from .render import REST_KEYS, load_summary_html, load_summary_text, prediction_html, prediction_text

#: The config keys of seed 002's REST response, in its order (the one table is :data:`lmsext.render.REST_KEYS`).
REST_CONFIG_KEYS = REST_KEYS


@dataclass
class LoadResult:
    """What loading a model produced.

    ``model_instance_id``, ``config`` (every effective setting, defaults included) and
    ``load_time_seconds`` mirror LM Studio's ``POST /api/v1/models/load`` response; ``requested`` is
    what was asked, ``notes`` every place the engine applied something other than what was asked
    (with the reason), ``model_info`` the GGUF metadata. Its reprs are :mod:`lmsext.render`'s.
    """

    model_instance_id: str
    model_key: str
    path: str
    config: dict[str, Any]
    load_time_seconds: float
    requested: dict[str, Any]
    notes: list[str]
    model_info: ModelInfo
    memory: dict[str, int]
    chat_template: str
    llama_params: dict[str, Any] = field(default_factory=dict)
    reused: bool = False
    #: per setting, the engine parameters it drives (llama.cpp's, for the in-kernel engine)
    setting_params: dict[str, str] = field(default_factory=dict)

    def to_rest(self) -> dict[str, Any]:
        """Seed 002's JSON: ``model_instance_id``, ``config`` (its five keys first), ``load_time_seconds``."""
        config = {k: self.config.get(k) for k in REST_CONFIG_KEYS}  # a server may echo only what applied
        config.update({k: v for k, v in self.config.items() if k not in config})
        if "max_parallel_predictions" in self.config:  # LM Studio's REST name of maxParallelPredictions
            config["parallel"] = self.config["max_parallel_predictions"]
        return {"model_instance_id": self.model_instance_id, "config": config,
                "load_time_seconds": round(self.load_time_seconds, 3)}

    def to_dict(self) -> dict[str, Any]:
        """Everything, JSON-able."""
        out = self.to_rest()
        out.update(model_key=self.model_key, path=self.path, requested=self.requested, notes=list(self.notes),
                   model_info={k: v for k, v in self.model_info.to_dict().items() if k != "chat_template"},
                   memory=dict(self.memory), chat_template=self.chat_template, reused=self.reused,
                   llama_params=self.llama_params)
        return out

    def with_note(self, note: str, reused: bool = True) -> "LoadResult":
        """A copy with one more note (used when a JIT ``.model()`` call reuses this instance)."""
        return dataclasses.replace(self, notes=[*self.notes, note], reused=reused)

    def _repr_html_(self) -> str:
        return load_summary_html(self)

    def _repr_json_(self) -> dict[str, Any]:
        return self.to_dict()

    def __str__(self) -> str:
        return load_summary_text(self)

    def _repr_pretty_(self, p, cycle) -> None:
        p.text(str(self))


#: The speculative-decoding stats (snake_case), absent from :meth:`PredictionStats.to_dict` without a draft.
DRAFT_STATS = ("used_draft_model_key", "accepted_draft_tokens_count", "rejected_draft_tokens_count",
               "ignored_draft_tokens_count", "total_draft_tokens_count")


def draft_stats(stats: Any) -> dict[str, Any]:
    """The :class:`PredictionStats` draft fields of an engine's generation stats (empty without a draft)."""
    key = getattr(stats, "draft_model_key", None)
    if key is None:
        return {}
    return {"used_draft_model_key": key, "accepted_draft_tokens_count": stats.draft_accepted,
            "rejected_draft_tokens_count": stats.draft_rejected, "ignored_draft_tokens_count": stats.draft_ignored}


@dataclass
class PredictionStats:
    """LM Studio's prediction stats."""

    stop_reason: str
    predicted_tokens_count: int
    prompt_tokens_count: int
    tokens_per_second: float | None
    time_to_first_token_sec: float | None
    generation_time_sec: float
    cached_prompt_tokens_count: int = 0
    truncated_prompt_tokens_count: int = 0
    stop_string: str | None = None
    seed: int | None = None
    error: str | None = None
    #: decode threads (most used, adaptive, steps per count, count at the end) and batch threads
    threads: dict[str, Any] | None = None
    #: settings applied differently from what was asked (e.g. cpuThreads capped to the CPUs available)
    notes: list[str] = field(default_factory=list)
    #: tokens of the reasoning section, its tags included (LM Studio REST's ``reasoning_output_tokens``)
    reasoning_output_tokens: int = 0
    #: speculative decoding (all None without a draftModel): the draft used and its tokens, LM Studio's
    #: invariant total = accepted + rejected + ignored (see :attr:`total_draft_tokens_count`)
    used_draft_model_key: str | None = None
    accepted_draft_tokens_count: int | None = None
    rejected_draft_tokens_count: int | None = None
    ignored_draft_tokens_count: int | None = None

    @property
    def total_tokens_count(self) -> int:
        """Prompt plus predicted tokens."""
        return self.prompt_tokens_count + self.predicted_tokens_count

    @property
    def total_draft_tokens_count(self) -> int | None:
        """Tokens the draft proposed: accepted + rejected + ignored (None without speculative decoding)."""
        if self.used_draft_model_key is None:
            return None
        return (self.accepted_draft_tokens_count or 0) + (self.rejected_draft_tokens_count or 0) + (
            self.ignored_draft_tokens_count or 0)

    def draft_dict(self) -> dict[str, Any]:
        """The speculative-decoding stats (snake_case), ``{}`` when no draft was used."""
        if self.used_draft_model_key is None:
            return {}
        return {key: getattr(self, key) for key in DRAFT_STATS}

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict, totals included (the draft counts only when a draft was used)."""
        out = dataclasses.asdict(self)
        out["total_tokens_count"] = self.total_tokens_count
        if self.used_draft_model_key is None:
            for key in DRAFT_STATS:
                out.pop(key, None)
        else:
            out["total_draft_tokens_count"] = self.total_draft_tokens_count
        return out


@dataclass
class PredictionFragment:
    """A piece of streamed output."""

    content: str
    tokens_count: int = 1
    logprob: Any = None
    #: LM Studio's ``reasoningType``: "none", "reasoning", "reasoningStartTag" or "reasoningEndTag"
    reasoning_type: str = "none"
    #: the token was proposed by a draft and accepted (speculative decoding; LM Studio's ``containsDrafted``)
    contains_drafted: bool = False


@dataclass
class PredictionResult:
    """The outcome of ``respond``/``complete``: the text, ``parsed`` output and ``stats``."""

    content: str
    stats: PredictionStats
    model_instance_id: str
    model_info: ModelInfo
    prediction_config: dict[str, Any]
    parsed: Any = None
    parse_error: str | None = None
    logprobs: list[Any] | None = None
    prompt: str | None = None
    tool_calls: list[Any] = field(default_factory=list)
    """The tool calls parsed from the reply when the prediction offered tools (``rawTools``):
    :class:`lmsext.tools.ToolCallRequest` objects."""
    #: the reasoning (between the reasoning tags, tags left out) and the rest of ``content`` (the answer)
    reasoning_content: str = ""
    non_reasoning_content: str = ""

    def __str__(self) -> str:
        return self.content

    def _repr_pretty_(self, p, cycle) -> None:
        p.text(prediction_text(self))

    def _repr_html_(self) -> str:
        return prediction_html(self)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        parsed = self.parsed
        if hasattr(parsed, "model_dump"):
            parsed = parsed.model_dump()
        return {"content": self.content, "reasoning_content": self.reasoning_content,
                "non_reasoning_content": self.non_reasoning_content, "parsed": parsed, "stats": self.stats.to_dict(),
                "model_instance_id": self.model_instance_id, "prediction_config": self.prediction_config}


class PredictionStream:
    """An iterator of :class:`PredictionFragment`; :meth:`result` finishes it and returns the result.

    Iterating drives the engine on the calling thread. A KeyboardInterrupt while the engine works
    ends the prediction with ``userStopped`` and keeps what was generated.
    """

    def __init__(self, fragments: Iterator[PredictionFragment], finish: Callable[[], PredictionResult],
                 cancel: Callable[[], None], queue_position: Callable[[], int | None] | None = None) -> None:
        self._fragments = fragments
        self._queue_position = queue_position
        self._finish = finish
        self._cancel = cancel
        self._result: PredictionResult | None = None

    def __iter__(self) -> Iterator[PredictionFragment]:
        return self._fragments

    def __next__(self) -> PredictionFragment:
        return next(self._fragments)

    def result(self) -> PredictionResult:
        """Run to the end (if not yet) and return the :class:`PredictionResult`."""
        if self._result is None:
            for _ in self._fragments:
                pass
            self._result = self._finish()
        return self._result

    def cancel(self) -> None:
        """Ask the engine to stop; the result's stop reason becomes ``userStopped``."""
        self._cancel()

    @property
    def queue_position(self) -> int | None:
        """1-based place in the model's queue while this prediction waits for a free slot of a parallel
        instance (``maxParallelPredictions``); None while it runs, once done, or where the engine cannot tell."""
        return self._queue_position() if self._queue_position is not None else None

    def close(self) -> None:
        """Stop and release the model now."""
        self._cancel()
        close = getattr(self._fragments, "close", None)
        if close:
            close()

    def __enter__(self) -> "PredictionStream":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def finite(obj: Any) -> Any:
    """``obj`` with every NaN or infinite float (in dicts, lists and tuples, at any depth) replaced by None:
    JSON has no such numbers (a stream's stats, a REST response)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    return obj


def dumps(obj: Any) -> str:
    """JSON text of a result's ``to_dict``."""
    return json.dumps(obj.to_dict(), ensure_ascii=False, indent=2)
