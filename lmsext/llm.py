"""``LLM``: a handle to a loaded model instance, with LM Studio's prediction API."""

from __future__ import annotations

import numbers
from typing import TYPE_CHECKING, Any, Callable, Iterator

from .chat import Chat, clean_text
from .config import PredictionConfig
from .engine import (EngineModel, GenerationRequest, SamplingSettings, check_grammar, generate,
                     to_gbnf)
from .engine.generate import cancel as cancel_generation
from .engine.grammar import parse_output
from .engine.overflow import fit_chat
from .engine.validate import check_prediction_limits
from .engine.gguf_info import ModelInfo
from .errors import ConfigError, ModelNotLoadedError
from .models import STORY_END_TOKEN
from .results import LoadResult, PredictionFragment, PredictionResult, PredictionStats, PredictionStream

if TYPE_CHECKING:
    from .client import LLMNamespace
    from .engine.estimate import MemoryEstimate
    from .engine.distribution import NextTokenDistribution

FragmentCallback = Callable[[PredictionFragment], Any]


class LLM:
    """A loaded model instance. ``client.llm.model()`` / ``client.llm.load()`` return these."""

    def __init__(self, namespace: "LLMNamespace", identifier: str, engine: EngineModel,
                 load_result: LoadResult) -> None:
        self._namespace = namespace
        self.identifier = identifier
        self._engine = engine
        self.load_result = load_result

    # -- info ----------------------------------------------------------------------------------

    @property
    def model_key(self) -> str:
        """The key the model was loaded by (``stories260K``)."""
        return self.load_result.model_key

    @property
    def engine(self) -> EngineModel:
        """The engine instance (raises ModelNotLoadedError once unloaded)."""
        self._engine.check_open()
        return self._engine

    @property
    def loaded(self) -> bool:
        """False once the instance was unloaded."""
        return not self._engine.closed

    def get_info(self) -> ModelInfo:
        """The model's GGUF metadata."""
        return self._engine.info

    def get_load_config(self) -> dict[str, Any]:
        """Every effective load setting of this instance."""
        return dict(self.load_result.config)

    def estimate(self) -> "MemoryEstimate":
        """The memory this instance is predicted to take at its peak (weights, KV cache, compute
        buffers, overhead) with its effective config, and what is available now."""
        from .engine.estimate import estimate_memory
        engine = self.engine
        return estimate_memory(engine.info, engine.plan)

    def get_context_length(self) -> int:
        """The context length llama.cpp allocated."""
        return self.engine.n_ctx

    def tokenize(self, text: str) -> list[int]:
        """Token ids of ``text`` (with BOS when the model adds one)."""
        if not isinstance(text, str):
            raise ConfigError(f"tokenize() takes a string, got {type(text).__name__}", key="text")
        return self.engine.tokenize(clean_text(text))

    def count_tokens(self, text: str) -> int:
        """How many tokens ``text`` takes."""
        return len(self.tokenize(text))

    def next_token_distribution(self, prompt: Any, config: Any = None, *, top_n: int = 20,
                                samples: int = 0) -> "NextTokenDistribution":
        """The next-token distribution after ``prompt`` under a prediction config, stage by stage.

        ``prompt``: raw text (as :meth:`complete`), a :class:`Chat` / message list (through the chat
        template, as :meth:`respond`) or a list of token ids. Runs llama.cpp's own sampler chain for
        ``config`` on the last position's logits and reports, for the ``top_n`` most likely tokens,
        the model's probability, the renormalised probability after each sampler and which sampler
        cut it; ``samples=N`` also draws N tokens through the chain with the config's seed. The
        distribution is exactly the one a prediction with ``config`` samples its first token from.
        """
        from .engine.distribution import next_token_distribution
        engine = self.engine
        pconfig = PredictionConfig.parse(config)
        if isinstance(prompt, str):
            tokens = engine.tokenize(prompt)
        elif _token_ids(prompt):
            tokens = [int(t) for t in prompt]
        else:
            tokens = engine.render_prompt(Chat.from_history(prompt).messages)[0]
        grammar = to_gbnf(pconfig.structured) if pconfig.structured is not None else None
        if grammar is not None:
            check_grammar(grammar, str(engine.path))
        sampling = SamplingSettings.resolve(pconfig, engine.plan.default_seed, grammar)
        return next_token_distribution(engine, tokens, sampling, top_n=top_n, samples=samples,
                                       n_threads=pconfig.cpu_threads,
                                       overflow_policy=pconfig.context_overflow_policy or "truncateMiddle")

    def apply_prompt_template(self, history: Chat | str | list | dict) -> str:
        """The prompt text the chat template makes of ``history``."""
        return self.engine.chat_template.render(Chat.from_history(history).messages)

    def unload(self) -> None:
        """Unload this instance (stops a running prediction first)."""
        self._namespace.unload(self.identifier)

    def stop(self) -> None:
        """Ask a running prediction on this instance to stop (from another thread or a widget)."""
        self._engine.stop_requested.set()

    # -- prediction ----------------------------------------------------------------------------

    def respond(self, history: Chat | str | list | dict, config: Any = None, *,
                on_prediction_fragment: FragmentCallback | None = None,
                on_first_token: Callable[[], Any] | None = None) -> PredictionResult:
        """Reply to a chat (or a single user message) through the model's chat template."""
        stream = self.respond_stream(history, config, on_prediction_fragment=on_prediction_fragment,
                                     on_first_token=on_first_token)
        return stream.result()

    def complete(self, prompt: str, config: Any = None, *,
                 on_prediction_fragment: FragmentCallback | None = None,
                 on_first_token: Callable[[], Any] | None = None) -> PredictionResult:
        """Continue raw text (no chat template)."""
        stream = self.complete_stream(prompt, config, on_prediction_fragment=on_prediction_fragment,
                                      on_first_token=on_first_token)
        return stream.result()

    def respond_stream(self, history: Chat | str | list | dict, config: Any = None, *,
                       on_prediction_fragment: FragmentCallback | None = None,
                       on_first_token: Callable[[], Any] | None = None) -> PredictionStream:
        """Like :meth:`respond`, as a stream of fragments."""
        engine = self.engine
        messages = Chat.from_history(history).messages
        pconfig = PredictionConfig.parse(config)
        # the context overflow policy drops whole messages first (engine/overflow.py)
        fitted = fit_chat(engine, messages, policy=pconfig.context_overflow_policy or "truncateMiddle",
                          max_tokens=pconfig.max_tokens if pconfig.max_tokens not in (None, False) else None)
        return self._stream(fitted.tokens, pconfig, engine.chat_template.implicit_stops, fitted.keep_head,
                            engine.detokenize(fitted.tokens, True), on_prediction_fragment, on_first_token,
                            pre_truncated=fitted.removed_tokens)

    def complete_stream(self, prompt: str, config: Any = None, *,
                        on_prediction_fragment: FragmentCallback | None = None,
                        on_first_token: Callable[[], Any] | None = None) -> PredictionStream:
        """Like :meth:`complete`, as a stream of fragments."""
        if not isinstance(prompt, str):
            raise ConfigError(f"complete() takes a prompt string, got {type(prompt).__name__}", key="prompt")
        engine = self.engine
        prompt = clean_text(prompt)
        tokens = engine.tokenize(prompt)
        # truncateMiddle keeps the start of a raw prompt (up to half the room) and its end
        return self._stream(tokens, config, [], len(tokens), prompt, on_prediction_fragment, on_first_token)

    def _stream(self, tokens: list[int], config: Any, implicit_stops: list[str], keep_head: int,
                prompt_text: str, on_fragment: FragmentCallback | None,
                on_first: Callable[[], Any] | None, *, pre_truncated: int = 0) -> PredictionStream:
        engine = self.engine
        pconfig = PredictionConfig.parse(config)
        check_prediction_limits(pconfig)
        if pconfig.draft_model is not None:
            raise ConfigError("draftModel: speculative decoding is not supported by lmsext yet; remove draftModel",
                              key="draft_model", value=pconfig.draft_model)
        structured = pconfig.structured
        grammar = to_gbnf(structured) if structured is not None else None
        if grammar is not None:
            check_grammar(grammar, str(engine.path))
        sampling = SamplingSettings.resolve(pconfig, engine.plan.default_seed, grammar)
        max_tokens = pconfig.max_tokens if pconfig.max_tokens not in (None, False) else None
        req = GenerationRequest(
            prompt_tokens=tokens, sampling=sampling, max_tokens=max_tokens,
            stop_strings=list(pconfig.stop_strings or []) + implicit_stops,
            tool_call_stop_strings=list(pconfig.tool_call_stop_strings or []),
            overflow_policy=pconfig.context_overflow_policy or "truncateMiddle",
            keep_head=keep_head, log_probs=pconfig.log_probs or 0, n_threads=pconfig.cpu_threads,
            pre_truncated=pre_truncated, end_tokens=_story_end(engine, pconfig))
        parts: list[str] = []
        logprobs: list[Any] = []

        def fragments() -> Iterator[PredictionFragment]:
            events = generate(engine, req)
            try:
                for event in events:
                    if event.logprob is not None:
                        logprobs.append(event.logprob)
                    if not event.text:
                        continue
                    if not parts and on_first is not None:
                        on_first()
                    parts.append(event.text)
                    fragment = PredictionFragment(event.text, 1 if event.token >= 0 else 0, event.logprob)
                    if on_fragment is not None:
                        on_fragment(fragment)
                    yield fragment
            except KeyboardInterrupt:
                cancel_generation(engine, req)
            finally:
                events.close()

        def finish() -> PredictionResult:
            st = req.stats
            content = "".join(parts)
            stats = PredictionStats(
                stop_reason=st.stop_reason or "failed", predicted_tokens_count=st.predicted_tokens,
                prompt_tokens_count=st.prompt_tokens, tokens_per_second=st.tokens_per_second,
                time_to_first_token_sec=st.time_to_first_token_sec, generation_time_sec=st.generation_time_sec,
                cached_prompt_tokens_count=st.cached_prompt_tokens,
                truncated_prompt_tokens_count=st.truncated_prompt_tokens, stop_string=st.stop_string,
                seed=st.seed, error=st.error, threads=st.threads, notes=list(st.notes))
            parsed, error = content, None
            if structured is not None and structured.type != "none":
                parsed, error = _parse_structured(content, structured)
            return PredictionResult(content=content, stats=stats, model_instance_id=self.identifier,
                                    model_info=engine.info, prediction_config=pconfig.to_dict("camel"),
                                    parsed=parsed, parse_error=error,
                                    logprobs=logprobs if req.log_probs else None, prompt=prompt_text)

        # cancelling stops this stream's own generation only: never one it found the model busy with
        return PredictionStream(fragments(), finish, lambda: cancel_generation(engine, req))

    def __repr__(self) -> str:
        state = "loaded" if self.loaded else "unloaded"
        return f"<LLM {self.identifier!r} ({self.model_key}, {state})>"


def _token_ids(prompt: Any) -> bool:
    """True for a non-empty list, tuple or 1-D NumPy array of integers (NumPy integers count; bools do not)."""
    if type(prompt).__name__ == "ndarray" and getattr(prompt, "ndim", 0) == 1:
        return prompt.size > 0 and prompt.dtype.kind in "iu"
    return isinstance(prompt, (list, tuple)) and bool(prompt) and all(
        isinstance(t, numbers.Integral) and not isinstance(t, bool) and type(t).__name__ != "bool_" for t in prompt)


def _parse_structured(content: str, structured) -> tuple[Any, str | None]:
    return parse_output(content, structured)


def _story_end(engine: EngineModel, pconfig: PredictionConfig) -> frozenset[int]:
    """The embedded model with ``maxTokens`` unset ends a reply with its story (llama2.c's BOS separator);
    any ``maxTokens`` (a number, or ``false`` for no limit) generates past it."""
    if pconfig.max_tokens is not None or not engine.is_embedded_model:
        return frozenset()
    return frozenset({STORY_END_TOKEN})


def unloaded_error(identifier: str) -> ModelNotLoadedError:
    """The error for a handle whose instance is gone."""
    return ModelNotLoadedError(f"model instance '{identifier}' is not loaded")
