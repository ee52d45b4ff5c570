"""``LLM``: a handle to a loaded model instance, with LM Studio's prediction API."""

from __future__ import annotations

import numbers
from typing import TYPE_CHECKING, Any, Callable, Iterator

from .backend import (Engine, LoadedModel, MemoryEstimate, ModelInfo, SupportsEstimate, SupportsNextTokenDistribution,
                      SupportsVocabulary, missing_capability)
from .chat import Chat, clean_text
from .config import PredictionConfig
from .config.output import parse_output
from .errors import ConfigError, LmsextError, ModelNotLoadedError
from .results import LoadResult, PredictionFragment, PredictionResult, PredictionStats, PredictionStream, draft_stats

if TYPE_CHECKING:
    from .client import LLMNamespace

FragmentCallback = Callable[[PredictionFragment], Any]


class LLM:
    """A loaded model instance. ``client.llm.model()`` / ``client.llm.load()`` return these."""

    def __init__(self, namespace: "LLMNamespace", identifier: str, engine: Engine, loaded: LoadedModel,
                 load_result: LoadResult) -> None:
        self._namespace = namespace
        self.identifier = identifier
        self._backend = engine
        self._loaded = loaded
        self.load_result = load_result

    # -- info ----------------------------------------------------------------------------------

    @property
    def model_key(self) -> str:
        """The key the model was loaded by (``stories260K``)."""
        return self.load_result.model_key

    @property
    def engine(self) -> Any:
        """The engine's own handle of this instance (for the in-kernel engine, an
        ``lmsext.engine.EngineModel``); raises ModelNotLoadedError once unloaded. Only for looking under
        the hood: everything lmsext itself does goes through the engine interface."""
        self._check_open()
        return self._loaded.handle

    @property
    def loaded(self) -> bool:
        """False once the instance was unloaded."""
        return self._backend.is_loaded(self._loaded)

    def _check_open(self) -> None:
        self._backend.check_loaded(self._loaded, self.identifier)

    def _capability(self, kind: type, what: str) -> Any:
        if not isinstance(self._backend, kind):
            raise LmsextError(missing_capability(self._backend, what))
        return self._backend

    def get_info(self) -> ModelInfo:
        """The model's GGUF metadata."""
        return self._loaded.info

    def get_load_config(self) -> dict[str, Any]:
        """Every effective load setting of this instance."""
        return dict(self.load_result.config)

    def estimate(self) -> MemoryEstimate:
        """The memory this instance is predicted to take at its peak (weights, KV cache, compute
        buffers, overhead) with its effective config, and what is available now."""
        return self._capability(SupportsEstimate, "a memory estimate").estimate(self._loaded)

    def get_context_length(self) -> int:
        """The context length the engine allocated."""
        self._check_open()
        return self._loaded.context_length

    def tokenize(self, text: str) -> list[int]:
        """Token ids of ``text`` (with BOS when the model adds one)."""
        if not isinstance(text, str):
            raise ConfigError(f"tokenize() takes a string, got {type(text).__name__}", key="text")
        self._check_open()
        return self._backend.tokenize(self._loaded, clean_text(text))

    def count_tokens(self, text: str) -> int:
        """How many tokens ``text`` takes."""
        return len(self.tokenize(text))

    def next_token_distribution(self, prompt: Any, config: Any = None, *, top_n: int = 20,
                                samples: int = 0) -> Any:
        """The next-token distribution after ``prompt`` under a prediction config, stage by stage
        (for the in-kernel engine an :class:`lmsext.engine.distribution.NextTokenDistribution`).

        ``prompt``: raw text (as :meth:`complete`), a :class:`Chat` / message list (through the chat
        template, as :meth:`respond`) or a list of token ids. Runs llama.cpp's own sampler chain for
        ``config`` on the last position's logits and reports, for the ``top_n`` most likely tokens,
        the model's probability, the renormalised probability after each sampler and which sampler
        cut it; ``samples=N`` also draws N tokens through the chain with the config's seed. The
        distribution is exactly the one a prediction with ``config`` samples its first token from.
        """
        engine = self._capability(SupportsNextTokenDistribution, "the next-token distribution")
        self._check_open()
        pconfig = PredictionConfig.parse(config)
        if isinstance(prompt, str):
            target: Any = prompt
        elif _token_ids(prompt):
            target = [int(t) for t in prompt]
        else:
            target = Chat.from_history(prompt).messages
        return engine.next_token_distribution(self._loaded, target, pconfig, top_n=top_n, samples=samples)

    def token_text(self, token: int) -> str:
        """The text of vocabulary entry ``token``, special tokens spelled out (in-kernel engines)."""
        engine = self._capability(SupportsVocabulary, "token texts")
        self._check_open()
        return engine.token_text(self._loaded, token)

    def tokenize_chat(self, history: Chat | str | list | dict) -> list[int]:
        """The token ids a :meth:`respond` of ``history`` starts from (chat template applied, special
        tokens parsed, nothing truncated) (in-kernel engines)."""
        engine = self._capability(SupportsVocabulary, "chat tokenization")
        self._check_open()
        return engine.tokenize_chat(self._loaded, Chat.from_history(history).messages)

    def vocab_size(self) -> int:
        """The number of tokens in the model's vocabulary (in-kernel engines)."""
        engine = self._capability(SupportsVocabulary, "the vocabulary size")
        self._check_open()
        return engine.vocab_size(self._loaded)

    def is_end_of_generation(self, token: int) -> bool:
        """True for a token that ends generation (EOS, EOT, …) (in-kernel engines)."""
        engine = self._capability(SupportsVocabulary, "end-of-generation tokens")
        self._check_open()
        return engine.is_end_of_generation(self._loaded, token)

    def apply_prompt_template(self, history: Chat | str | list | dict) -> str:
        """The prompt text the chat template makes of ``history``."""
        self._check_open()
        return self._backend.apply_prompt_template(self._loaded, Chat.from_history(history).messages)

    def unload(self) -> None:
        """Unload this instance (stops a running prediction first)."""
        self._namespace.unload(self.identifier)

    def stop(self) -> None:
        """Ask a running prediction on this instance to stop (from another thread or a widget)."""
        self._backend.stop(self._loaded)

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
        self._check_open()
        messages = Chat.from_history(history).messages
        pconfig = PredictionConfig.parse(config)
        return self._stream(self._backend.predict(self._loaded, messages, pconfig), pconfig,
                            on_prediction_fragment, on_first_token)

    def complete_stream(self, prompt: str, config: Any = None, *,
                        on_prediction_fragment: FragmentCallback | None = None,
                        on_first_token: Callable[[], Any] | None = None) -> PredictionStream:
        """Like :meth:`complete`, as a stream of fragments."""
        if not isinstance(prompt, str):
            raise ConfigError(f"complete() takes a prompt string, got {type(prompt).__name__}", key="prompt")
        self._check_open()
        pconfig = PredictionConfig.parse(config)
        return self._stream(self._backend.predict(self._loaded, clean_text(prompt), pconfig), pconfig,
                            on_prediction_fragment, on_first_token)

    def _stream(self, run: Any, pconfig: PredictionConfig, on_fragment: FragmentCallback | None,
                on_first: Callable[[], Any] | None) -> PredictionStream:
        """The :class:`PredictionStream` of an engine prediction ``run``: fragments, then the assembled result."""
        structured = pconfig.structured
        parts: list[str] = []
        logprobs: list[Any] = []

        def fragments() -> Iterator[PredictionFragment]:
            try:
                for event in run:
                    if event.logprob is not None:
                        logprobs.append(event.logprob)
                    if not event.text:
                        continue
                    if not parts and on_first is not None:
                        on_first()
                    parts.append(event.text)
                    fragment = PredictionFragment(event.text, 1 if event.token >= 0 else 0, event.logprob,
                                                  getattr(event, "drafted", False))
                    if on_fragment is not None:
                        on_fragment(fragment)
                    yield fragment
            except KeyboardInterrupt:
                run.cancel()
            finally:
                run.close()

        def finish() -> PredictionResult:
            st = run.stats
            content = "".join(parts)
            stats = PredictionStats(
                stop_reason=st.stop_reason or "failed", predicted_tokens_count=st.predicted_tokens,
                prompt_tokens_count=st.prompt_tokens, tokens_per_second=st.tokens_per_second,
                time_to_first_token_sec=st.time_to_first_token_sec, generation_time_sec=st.generation_time_sec,
                cached_prompt_tokens_count=st.cached_prompt_tokens,
                truncated_prompt_tokens_count=st.truncated_prompt_tokens, stop_string=st.stop_string,
                seed=st.seed, error=st.error, threads=st.threads, notes=list(st.notes), **draft_stats(st))
            parsed, error = content, None
            if structured is not None and structured.type != "none":
                parsed, error = parse_output(content, structured)
            return PredictionResult(content=content, stats=stats, model_instance_id=self.identifier,
                                    model_info=self._loaded.info, prediction_config=pconfig.to_dict("camel"),
                                    parsed=parsed, parse_error=error,
                                    logprobs=logprobs if run.log_probs else None, prompt=run.prompt_text)

        # cancelling stops this stream's own generation only: never one it found the model busy with
        return PredictionStream(fragments(), finish, run.cancel)

    def __repr__(self) -> str:
        state = "loaded" if self.loaded else "unloaded"
        return f"<LLM {self.identifier!r} ({self.model_key}, {state})>"


def _token_ids(prompt: Any) -> bool:
    """True for a non-empty list, tuple or 1-D NumPy array of integers (NumPy integers count; bools do not)."""
    if type(prompt).__name__ == "ndarray" and getattr(prompt, "ndim", 0) == 1:
        return prompt.size > 0 and prompt.dtype.kind in "iu"
    return isinstance(prompt, (list, tuple)) and bool(prompt) and all(
        isinstance(t, numbers.Integral) and not isinstance(t, bool) and type(t).__name__ != "bool_" for t in prompt)


def unloaded_error(identifier: str) -> ModelNotLoadedError:
    """The error for a handle whose instance is gone."""
    return ModelNotLoadedError(f"model instance '{identifier}' is not loaded")
