"""``LLM``: a handle to a loaded model instance, with LM Studio's prediction API."""

from __future__ import annotations

import inspect
import numbers
from typing import TYPE_CHECKING, Any, Callable, Iterator

from .backend import (Engine, LoadedModel, MemoryEstimate, ModelInfo, SupportsEstimate, SupportsNextTokenDistribution,
                      SupportsVocabulary, missing_capability)
from .chat import Chat, clean_text
from .chat_templates import template_tools
from .config import PredictionConfig
from .config.output import parse_output
from .errors import ConfigError, LmsextError, ModelNotLoadedError
from .prompt_templates import engine_config, templated_prompt, with_template
from .reasoning import PredictionPieces
from .many import run_many
from .results import LoadResult, PredictionFragment, PredictionResult, PredictionStats, PredictionStream, draft_stats
from .tools import ActResult, act, parse_tool_calls, template_tool_list, tool_config

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

    def apply_prompt_template(self, history: Chat | str | list | dict, config: Any = None) -> str:
        """The prompt text the chat template makes of ``history``: the model's, or ``config``'s
        ``promptTemplate`` (a built-in name such as ``"chatml"``, a manual or a Jinja template) when it has one."""
        self._check_open()
        messages = Chat.from_history(history).messages
        pconfig = with_template(PredictionConfig.parse(config), self._loaded)
        if pconfig.prompt_template is not None:
            return str(templated_prompt(self._backend, self._loaded, messages, pconfig))
        return self._backend.apply_prompt_template(self._loaded, messages)

    def unload(self) -> None:
        """Unload this instance (stops a running prediction first)."""
        self._namespace.unload(self.identifier)

    def prediction_status(self) -> dict[str, int] | None:
        """``{"running": …, "queued": …, "slots": N}`` on this instance now (None where the engine cannot tell)."""
        self._check_open()
        status = getattr(self._backend, "prediction_status", None)
        return status(self._loaded) if status is not None else None

    def stop(self) -> None:
        """Ask a running prediction on this instance to stop (from another thread or a widget)."""
        self._backend.stop(self._loaded)

    # -- prediction ----------------------------------------------------------------------------

    def respond(self, history: Chat | str | list | dict, config: Any = None, *,
                on_prediction_fragment: FragmentCallback | None = None,
                on_first_token: Callable[[], Any] | None = None, show_special: bool = False) -> PredictionResult:
        """Reply to a chat (or a single user message) through the model's chat template. Special tokens the
        model generates (``<|im_end|>``, ``<start_of_image>``) are not printed unless ``show_special``."""
        stream = self.respond_stream(history, config, on_prediction_fragment=on_prediction_fragment,
                                     on_first_token=on_first_token, show_special=show_special)
        return stream.result()

    def complete(self, prompt: str, config: Any = None, *,
                 on_prediction_fragment: FragmentCallback | None = None,
                 on_first_token: Callable[[], Any] | None = None, show_special: bool = False) -> PredictionResult:
        """Continue raw text (no chat template); ``show_special`` as in :meth:`respond`."""
        stream = self.complete_stream(prompt, config, on_prediction_fragment=on_prediction_fragment,
                                      on_first_token=on_first_token, show_special=show_special)
        return stream.result()

    def respond_many(self, histories: Any, config: Any = None, *, progress: bool = True) -> Any:
        """Reply to each chat (or user message) of ``histories``; :class:`~lmsext.many.ManyResults` in input
        order with a progress bar and ``.summary`` (aggregate tok/s). Up to ``maxParallelPredictions`` run
        at once, decoded together by the engine's scheduler."""
        pconfig = PredictionConfig.parse(config)
        return run_many(lambda h: self.respond_stream(h, pconfig), list(histories), parallel=self._parallel(),
                        progress=progress, description=f"{self.identifier} respond")

    def complete_many(self, prompts: Any, config: Any = None, *, progress: bool = True) -> Any:
        """:meth:`complete` each prompt of ``prompts``, as :meth:`respond_many` does."""
        pconfig = PredictionConfig.parse(config)
        return run_many(lambda p: self.complete_stream(p, pconfig), list(prompts), parallel=self._parallel(),
                        progress=progress, description=f"{self.identifier} complete")

    def _parallel(self) -> int:
        self._check_open()
        return int(self._loaded.config.get("max_parallel_predictions") or 1)

    def respond_stream(self, history: Chat | str | list | dict, config: Any = None, *,
                       on_prediction_fragment: FragmentCallback | None = None,
                       on_first_token: Callable[[], Any] | None = None, show_special: bool = False) -> PredictionStream:
        """Like :meth:`respond`, as a stream of fragments."""
        self._check_open()
        messages = Chat.from_history(history).messages
        pconfig = tool_config(PredictionConfig.parse(config))
        templated = with_template(pconfig, self._loaded)
        with template_tools(template_tool_list(pconfig)):  # the engine renders the prompt in predict()
            if templated.prompt_template is not None:  # the user's chat format, rendered here for every engine
                prompt = templated_prompt(self._backend, self._loaded, messages, templated)
                run = self._predict(prompt, engine_config(templated), show_special)
            else:
                run = self._predict(messages, pconfig, show_special)
        return self._stream(run, pconfig, on_prediction_fragment, on_first_token)

    def act(self, chat: Chat | str | list | dict, tools: Any, *, max_prediction_rounds: int | None = None,
            config: Any = None, **callbacks: Any) -> ActResult:
        """LM Studio's multi-round tool use: predict, run the tools the model calls, append their results,
        repeat until a round calls none or ``max_prediction_rounds``; see :func:`lmsext.tools.act` for the
        callbacks (``on_message``, ``on_round_start``, ``on_prediction_completed``, ``on_tool_call``, …).

        ``tools``: Python functions (name, docstring and type hints make the definition), ToolDefinitions
        or their dicts. ``config={"rawTools": {"type": "toolArray", "force": True}}`` forces a well-formed
        call in every round but the last. Errors of a tool go back to the model as its result text."""
        return act(self, chat, tools, max_prediction_rounds=max_prediction_rounds, config=config, **callbacks)

    def complete_stream(self, prompt: str, config: Any = None, *,
                        on_prediction_fragment: FragmentCallback | None = None,
                        on_first_token: Callable[[], Any] | None = None, show_special: bool = False) -> PredictionStream:
        """Like :meth:`complete`, as a stream of fragments."""
        if not isinstance(prompt, str):
            raise ConfigError(f"complete() takes a prompt string, got {type(prompt).__name__}", key="prompt")
        self._check_open()
        pconfig = tool_config(PredictionConfig.parse(config))
        return self._stream(self._predict(clean_text(prompt), pconfig, show_special), pconfig,
                            on_prediction_fragment, on_first_token)

    def _predict(self, prompt: Any, pconfig: PredictionConfig, show_special: bool) -> Any:
        """The engine's prediction; ``show_special`` only where the engine can print special tokens."""
        if not show_special:
            return self._backend.predict(self._loaded, prompt, pconfig)
        if "show_special" not in inspect.signature(self._backend.predict).parameters:
            raise LmsextError(missing_capability(self._backend, "show_special (special tokens as text)"))
        return self._backend.predict(self._loaded, prompt, pconfig, show_special=True)

    def _stream(self, run: Any, pconfig: PredictionConfig, on_fragment: FragmentCallback | None,
                on_first: Callable[[], Any] | None) -> PredictionStream:
        """The :class:`PredictionStream` of an engine prediction ``run``: fragments, then the assembled result."""
        structured = pconfig.structured
        parts: list[str] = []
        logprobs: list[Any] = []
        pieces = PredictionPieces(pconfig.reasoning_parsing, getattr(run, "prompt_text", None))

        def typed(out: list[Any], logprob: Any, drafted: bool = False) -> Iterator[PredictionFragment]:
            for piece in out:
                fragment = PredictionFragment(piece.text, piece.tokens_count, logprob, piece.reasoning_type,
                                              drafted)
                if on_fragment is not None:
                    on_fragment(fragment)
                yield fragment

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
                    yield from typed(pieces.feed(event.text, 1 if event.token >= 0 else 0), event.logprob,
                                     getattr(event, "drafted", False))
                yield from typed(pieces.finish(), None)  # a partial tag held back at the end is text after all
            except KeyboardInterrupt:
                run.cancel()
            finally:
                run.close()

        def finish() -> PredictionResult:
            st = run.stats
            content = "".join(parts)
            reasoning, answer, reasoning_tokens = pieces.split()
            stats = PredictionStats(
                stop_reason=st.stop_reason or "failed", predicted_tokens_count=st.predicted_tokens,
                prompt_tokens_count=st.prompt_tokens, tokens_per_second=st.tokens_per_second,
                time_to_first_token_sec=st.time_to_first_token_sec, generation_time_sec=st.generation_time_sec,
                cached_prompt_tokens_count=st.cached_prompt_tokens,
                truncated_prompt_tokens_count=st.truncated_prompt_tokens, stop_string=st.stop_string,
                seed=st.seed, error=st.error, threads=st.threads, notes=list(st.notes),
                reasoning_output_tokens=reasoning_tokens, **draft_stats(st))
            parsed, error = content, None
            if structured is not None and structured.type != "none":
                parsed, error = parse_output(answer if reasoning else content, structured)
            tool_calls = _tool_calls(answer if reasoning else content, pconfig, stats)
            return PredictionResult(content=content, stats=stats, model_instance_id=self.identifier,
                                    model_info=self._loaded.info, prediction_config=pconfig.to_dict("camel"),
                                    parsed=parsed, parse_error=error,
                                    logprobs=logprobs if run.log_probs else None, prompt=run.prompt_text,
                                    tool_calls=tool_calls, reasoning_content=reasoning,
                                    non_reasoning_content=answer)

        # cancelling stops this stream's own generation only: never one it found the model busy with
        return PredictionStream(fragments(), finish, run.cancel,
                                lambda: getattr(run, "queue_position", None))  # engines that queue say where

    def __repr__(self) -> str:
        state = "loaded" if self.loaded else "unloaded"
        return f"<LLM {self.identifier!r} ({self.model_key}, {state})>"


def _token_ids(prompt: Any) -> bool:
    """True for a non-empty list, tuple or 1-D NumPy array of integers (NumPy integers count; bools do not)."""
    if type(prompt).__name__ == "ndarray" and getattr(prompt, "ndim", 0) == 1:
        return prompt.size > 0 and prompt.dtype.kind in "iu"
    return isinstance(prompt, (list, tuple)) and bool(prompt) and all(
        isinstance(t, numbers.Integral) and not isinstance(t, bool) and type(t).__name__ != "bool_" for t in prompt)


def _tool_calls(content: str, pconfig: PredictionConfig, stats: PredictionStats) -> list[Any]:
    """The tool calls in ``content`` when the prediction offered tools; a malformed one becomes a note."""
    tools = template_tool_list(pconfig)
    if not tools:
        return []
    found = parse_tool_calls(content, [t["function"]["name"] for t in tools])
    stats.notes.extend(found.notes)
    if pconfig.raw_tools.force and not found.calls and not found.notes:
        stats.notes.append(f"rawTools.force: the output is no complete tool call (stop reason {stats.stop_reason})")
    return found.calls


def unloaded_error(identifier: str) -> ModelNotLoadedError:
    """The error for a handle whose instance is gone."""
    return ModelNotLoadedError(f"model instance '{identifier}' is not loaded")
