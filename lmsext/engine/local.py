"""``LocalEngine``: the in-kernel llama.cpp engine behind :class:`lmsext.backend.Engine`.

Everything ``Client`` and ``LLM`` need from llama.cpp goes through here: resolving model files, loading
with the memory guard, tokenizing, fitting a chat into the context, structured-output grammars,
the sampler settings, the token loop, the next-token distribution and memory estimates. What leaves
this module is the plain data of :mod:`lmsext.backend`; the :class:`~.model.EngineModel` stays inside
``LoadedModel.handle``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

from ..backend import (DownloadedModel, GenerationStats, LoadedModel, LoadPreview, MemoryEstimate, ModelInfo,
                       ProgressCallback, ResolvedModelFile, TokenEvent)
from ..backend import TemplatedPrompt
from ..config import LoadModelConfig, PredictionConfig
from .drafts import DraftModels, speculative_config
from .estimate import check_fits, estimate_memory
from ..models import STORY_END_TOKEN
from .generate import GenerationRequest, cancel, generate
from .gguf_info import read_model_info
from .grammar import check_grammar, to_gbnf
from .model import EngineModel
from .overflow import fit_chat
from .params import LOAD_SETTINGS, plan_load
from .resolve import list_model_files, resolve_model_and_key
from .scheduler import scheduler_for
from .sampling import SamplingSettings
from .validate import check_gpu_indexes

#: Which llama.cpp parameters each load setting drives (the summary's "llama.cpp" column).
SETTING_PARAMS = {row.name: row.llama_params for row in LOAD_SETTINGS}
NO_TEMPLATE_NOTE = "no chat template in the model: respond() uses lmsext's plain User:/Assistant: fallback"


class LocalPrediction:
    """One generation on an :class:`EngineModel` (see :class:`lmsext.backend.Prediction`)."""

    def __init__(self, model: EngineModel, request: GenerationRequest, prompt_text: str) -> None:
        self._model = model
        self._request = request
        self._events: Iterator[TokenEvent] | None = None
        self._sequence: Any = None
        self.prompt_text = prompt_text
        self.stats: GenerationStats = request.stats
        self.log_probs = request.log_probs

    def __iter__(self) -> Iterator[TokenEvent]:
        if self._events is None:
            if self._model.plan.effective.get("max_parallel_predictions", 1) > 1:
                scheduler = scheduler_for(self._model)  # continuous batching (engine/scheduler.py)
                self._sequence = scheduler.open(self._request)
                self._events = scheduler.stream(self._sequence)
            else:
                self._events = generate(self._model, self._request)
        return self._events

    @property
    def queue_position(self) -> int | None:
        """1-based place in the model's FIFO queue while waiting for a free slot; None when running or done."""
        return self._sequence.queue_position if self._sequence is not None else None

    def cancel(self) -> None:
        """Stop this generation only (never one it found the model busy with)."""
        cancel(self._model, self._request)

    def close(self) -> None:
        """End the token loop and release the model."""
        if self._events is not None:
            self._events.close()


class LocalEngine:
    """llama.cpp in this process (llama-cpp-python's C API): the default engine of :class:`lmsext.Client`."""

    def __init__(self) -> None:
        #: the instances a ``draftModel`` key may name, and the drafts loaded just in time
        self._drafts = DraftModels(lambda key: Path(self.resolve(key).path))

    # -- models -----------------------------------------------------------------------------------

    def check_load_config(self, config: LoadModelConfig) -> None:
        """Refuse GPU indexes beyond the devices llama.cpp sees (the config's own limits hold once parsed)."""
        check_gpu_indexes(config.gpu)

    def check_prediction_config(self, config: PredictionConfig) -> None:
        """Nothing to add: a parsed PredictionConfig is within llama.cpp's limits (lmsext.config.limits)."""

    def resolve(self, model_key: str, *, allow_download: bool = True, allow_paths: bool = True) -> ResolvedModelFile:
        """The GGUF file ``model_key`` names: a key in the model folders, a path or a Hugging Face id."""
        return resolve_model_and_key(model_key, allow_download=allow_download, allow_paths=allow_paths)

    def model_info(self, path: str | Path) -> ModelInfo:
        """The GGUF metadata of ``path`` (read through the bounds-checked validator, cached)."""
        return read_model_info(path)

    def list_downloaded(self) -> list[DownloadedModel]:
        """Every GGUF in ``$LMSEXT_MODELS_PATH``, LM Studio's folders and the Hugging Face cache."""
        out = []
        for f in list_model_files():
            try:
                info, error = read_model_info(f.path), None
            except Exception as exc:
                info, error = None, str(exc)
            out.append(DownloadedModel(model_key=f.key, path=str(f.path), size_bytes=f.size, info=info, error=error))
        return out

    def load(self, model: ResolvedModelFile, config: LoadModelConfig, *, identifier: str,
             on_progress: ProgressCallback | None = None, force: bool = False) -> LoadedModel:
        """Load ``model``; refuse (InsufficientMemoryError) a load the estimate says does not fit unless ``force``."""
        path = Path(model.path)
        info = read_model_info(path)
        if not force:
            check_fits(estimate_memory(info, plan_load(config, info)), path.name)
        handle, report = EngineModel.load(path, config, info=info, progress=on_progress)
        self._drafts.loaded(identifier, handle)
        plan = report.plan
        return LoadedModel(
            handle=handle, path=str(path), info=info, config=dict(plan.effective),
            notes=list(plan.notes) + ([] if info.chat_template else [NO_TEMPLATE_NOTE]),
            load_time_seconds=report.load_time_seconds,
            memory={"weights": report.weights_bytes, "kv_cache": report.kv_cache_bytes},
            chat_template=handle.chat_template.name, context_length=handle.n_ctx,
            engine_params={"model": _jsonable(plan.model_params), "context": _jsonable(plan.context_params),
                           "kv_overrides": dict(plan.kv_overrides)},
            setting_params=dict(SETTING_PARAMS))

    def unload(self, model: LoadedModel) -> None:
        """Free the llama.cpp model and context (stops a running generation first)."""
        self._drafts.unloaded(model.handle)
        model.handle.close()

    def is_loaded(self, model: LoadedModel) -> bool:
        """False once the instance was unloaded."""
        return not model.handle.closed

    def check_loaded(self, model: LoadedModel, identifier: str) -> None:
        """Raise ModelNotLoadedError once the instance is gone."""
        model.handle.check_open()

    def close(self) -> None:
        """Free the draft models loaded just in time (the client unloads the instances)."""
        self._drafts.close()

    # -- text ---------------------------------------------------------------------------------------

    def tokenize(self, model: LoadedModel, text: str) -> list[int]:
        """Token ids of ``text`` (with BOS when the model adds one)."""
        return model.handle.tokenize(text)

    def apply_prompt_template(self, model: LoadedModel, messages: list[dict[str, str]]) -> str:
        """The prompt text the model's chat template makes of ``messages``."""
        return model.handle.chat_template.render(messages)

    # -- prediction -----------------------------------------------------------------------------------

    def predict(self, model: LoadedModel, prompt: str | list[dict[str, str]],
                config: PredictionConfig, *, show_special: bool = False) -> LocalPrediction:
        """Start a generation (runs on the caller's thread as the prediction is iterated); ``show_special``
        prints special tokens' text (hidden by default, see :mod:`.special_tokens`)."""
        handle: EngineModel = model.handle
        handle.check_open()
        pre_truncated = 0
        if isinstance(prompt, str):
            templated = isinstance(prompt, TemplatedPrompt)  # a promptTemplate's chat: special tokens parsed
            tokens = handle.tokenize_templated(prompt) if templated else handle.tokenize(prompt)
            # truncateMiddle keeps the start of a raw prompt (up to half the room) and its end
            implicit_stops, keep_head, prompt_text = [], len(tokens), prompt
        else:
            # the context overflow policy drops whole messages first (overflow.py)
            fitted = fit_chat(handle, prompt, policy=config.context_overflow_policy or "truncateMiddle",
                              max_tokens=_max_tokens(config))
            tokens, keep_head, pre_truncated = fitted.tokens, fitted.keep_head, fitted.removed_tokens
            implicit_stops = handle.chat_template.implicit_stops
            prompt_text = handle.detokenize(fitted.tokens, True)
        request = GenerationRequest(
            prompt_tokens=tokens, sampling=self._sampling(handle, config), max_tokens=_max_tokens(config),
            stop_strings=list(config.stop_strings or []) + implicit_stops,
            tool_call_stop_strings=list(config.tool_call_stop_strings or []),
            overflow_policy=config.context_overflow_policy or "truncateMiddle",
            keep_head=keep_head, log_probs=config.log_probs or 0, n_threads=config.cpu_threads,
            pre_truncated=pre_truncated, end_tokens=_story_end(handle, config), show_special=show_special,
            speculative=speculative_config(handle, config, self._drafts))
        return LocalPrediction(handle, request, prompt_text)

    def prediction_status(self, model: LoadedModel) -> dict[str, int]:
        """``{"running", "queued", "slots"}``: the predictions on ``model`` now (its scheduler's, when parallel)."""
        handle: EngineModel = model.handle
        scheduler = getattr(handle, "scheduler", None)
        if scheduler is not None:
            return scheduler.status()
        return {"running": int(handle.lock.locked()), "queued": 0,
                "slots": int(handle.plan.effective.get("max_parallel_predictions", 1))}

    def stop(self, model: LoadedModel) -> None:
        """Ask a running generation on ``model`` to stop."""
        model.handle.stop_requested.set()

    @staticmethod
    def _sampling(handle: EngineModel, config: PredictionConfig) -> SamplingSettings:
        grammar = to_gbnf(config.structured) if config.structured is not None else None
        if grammar is not None:
            check_grammar(grammar, str(handle.path))
        return SamplingSettings.resolve(config, handle.plan.default_seed, grammar)

    # -- optional capabilities ------------------------------------------------------------------------

    def next_token_distribution(self, model: LoadedModel, prompt: Any, config: PredictionConfig, *,
                                top_n: int = 20, samples: int = 0) -> Any:
        """:class:`~.distribution.NextTokenDistribution` after ``prompt`` (text, token ids or chat messages)."""
        from .distribution import next_token_distribution
        handle: EngineModel = model.handle
        handle.check_open()
        if isinstance(prompt, str):
            tokens = handle.tokenize(prompt)
        elif prompt and all(isinstance(t, int) and not isinstance(t, bool) for t in prompt):
            tokens = list(prompt)
        else:
            tokens = handle.render_prompt(prompt)[0]
        return next_token_distribution(handle, tokens, self._sampling(handle, config), top_n=top_n, samples=samples,
                                       n_threads=config.cpu_threads,
                                       overflow_policy=config.context_overflow_policy or "truncateMiddle")

    def download_job(self, model: str, quantization: str | None = None, *, progress_bar: bool = True) -> Any:
        """A planned (not yet run) :class:`~.downloads.DownloadJob` of ``model`` from the Hugging Face hub into
        the model folders: ``run()`` it, or start it on a thread and poll ``to_rest()``; ``cancel()`` stops it."""
        from .downloads import start_download
        return start_download(model, quantization, progress_bar=progress_bar)

    def estimate(self, model: ResolvedModelFile | LoadedModel, config: LoadModelConfig | None = None
                 ) -> MemoryEstimate:
        """Peak memory of a load of ``model`` with ``config``, or of a loaded instance with its own plan."""
        if isinstance(model, LoadedModel):
            model.handle.check_open()
            return estimate_memory(model.handle.info, model.handle.plan)
        info = read_model_info(model.path)
        return estimate_memory(info, plan_load(config or LoadModelConfig(), info))

    def preview_load(self, info: ModelInfo, config: LoadModelConfig) -> LoadPreview:
        """What llama.cpp would apply for ``config`` (ConfigError for a config that cannot load)."""
        plan = plan_load(config, info)
        return LoadPreview(effective=dict(plan.effective), notes=list(plan.notes), gpu_layers=plan.gpu_layers_requested,
                           offloadable_layers=plan.offloadable_layers)

    def tokenize_chat(self, model: LoadedModel, messages: list[dict[str, str]]) -> list[int]:
        """The token ids of ``messages`` through the chat template (special tokens parsed)."""
        model.handle.check_open()
        return model.handle.render_prompt(messages)[0]

    def vocab_size(self, model: LoadedModel) -> int:
        """Tokens in the vocabulary."""
        return model.handle.n_vocab

    def token_text(self, model: LoadedModel, token: int) -> str:
        """The text of ``token``, special tokens spelled out."""
        return model.handle.token_bytes(token, special=True).decode("utf-8", errors="replace")

    def is_end_of_generation(self, model: LoadedModel, token: int) -> bool:
        """True for EOS/EOT and the other end-of-generation tokens."""
        return model.handle.is_eog(token)


def _story_end(handle: EngineModel, config: PredictionConfig) -> frozenset[int]:
    """The embedded model with ``maxTokens`` unset ends a reply with its story (llama2.c's BOS separator);
    any ``maxTokens`` (a number, or ``false`` for no limit) generates past it."""
    if config.max_tokens is not None or not handle.is_embedded_model:
        return frozenset()
    return frozenset({STORY_END_TOKEN})


def _max_tokens(config: PredictionConfig) -> int | None:
    return config.max_tokens if config.max_tokens not in (None, False) else None


def _jsonable(params: dict[str, Any]) -> dict[str, Any]:
    return {k: (list(v) if isinstance(v, (list, tuple)) else v) for k, v in params.items()}


__all__ = ["LocalEngine", "LocalPrediction", "SETTING_PARAMS"]
