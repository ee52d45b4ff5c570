"""The engine interface: what the public API (``Client``, ``LLM``) needs from an engine, and the plain data
it hands around.

httpx's shape: one small backend interface, the client written once above it. :class:`Engine` is the
interface; :class:`lmsext.engine.local.LocalEngine` (llama.cpp in the kernel) is the one implementation
today, and a remote engine (LM Studio's REST server) is meant to plug in beside it without touching the
magics, widgets or server. Everything that crosses the interface is a plain dataclass defined here (no
llama.cpp object, no ctypes); an engine's handle to a loaded model is opaque to the caller.

Engine-only features sit behind optional capabilities (:class:`SupportsNextTokenDistribution`,
:class:`SupportsEstimate`, :class:`SupportsVocabulary`) that a remote engine may lack; the public API
checks them with ``isinstance`` and says so in one line when one is missing.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol, runtime_checkable

from .config import LoadModelConfig, PredictionConfig
from .units import format_bytes

#: Share of available memory a load may take unless forced (the rest stays for the notebook).
SAFETY = 1.0

ProgressCallback = Callable[[float], Any]

# ------------------------------------------------------------------------------ plain data


@dataclass(frozen=True)
class ModelInfo:
    """What a GGUF file says about the model inside it."""

    path: str
    file_size: int
    architecture: str
    name: str | None
    parameter_count: int
    quantization: str
    n_layer: int
    n_embd: int
    n_head: int
    n_head_kv: int
    n_vocab: int
    trained_context: int
    expert_count: int
    expert_used_count: int
    chat_template: str | None
    bos_token_id: int | None
    eos_token_id: int | None

    @property
    def is_moe(self) -> bool:
        """True for a mixture-of-experts model."""
        return self.expert_count > 0

    @property
    def head_dim(self) -> int:
        """Width of one attention head (embedding size / heads)."""
        return self.n_embd // max(self.n_head, 1)

    @property
    def kv_bytes_per_token_f16(self) -> int:
        """Bytes of K+V cache one token takes in f16 across all layers."""
        return 2 * self.n_layer * self.head_dim * self.n_head_kv * 2

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form (chat template included)."""
        return asdict(self)


@dataclass(frozen=True)
class MemoryEstimate:
    """Predicted resident memory of one loaded instance, in bytes, and what is available."""

    weights: int
    kv_cache: int
    compute: int
    overhead: int
    available: int | None = None
    #: GPU memory per device name (weights, KV cache and compute buffers placed there); empty without GPUs
    vram: dict[str, int] = field(default_factory=dict)
    #: free memory of those devices now
    vram_free: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        """Everything the instance is expected to take at its peak (in RAM; :attr:`vram` is apart)."""
        return self.weights + self.kv_cache + self.compute + self.overhead

    @property
    def vram_over(self) -> list[str]:
        """The GPUs whose share exceeds their free memory (the per-device guardrail refuses those)."""
        return [d for d, b in self.vram.items() if self.vram_free.get(d) and b > self.vram_free[d] * SAFETY]

    @property
    def fits(self) -> bool | None:
        """True/False when the available memory is known, else None (False too when a GPU cannot hold its share)."""
        if self.vram_over:
            return False
        return None if self.available is None else self.total <= self.available * SAFETY

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON: every part, ``total`` and ``available`` (and ``vram``/``vram_free`` with GPUs)."""
        out = {**asdict(self), "total": self.total}
        if not self.vram:
            del out["vram"], out["vram_free"]
        return out

    def describe_vram(self) -> str:
        """``VRAM: CUDA0 1.2 GiB of 79 GiB free``, or ``VRAM: none (nothing on a GPU)``."""
        if not self.vram:
            return "VRAM: none (nothing on a GPU)"
        return "VRAM: " + ", ".join(f"{d} {format_bytes(b)} of {format_bytes(self.vram_free.get(d, 0))} free"
                                    for d, b in self.vram.items())

    def describe(self) -> str:
        """One line: ``weights 1.13 MiB + KV cache 320 KiB + compute 9.8 MiB + overhead 3.1 MiB = 14.4 MiB``."""
        text = (f"weights {format_bytes(self.weights)} + KV cache {format_bytes(self.kv_cache)} + compute buffers "
                f"{format_bytes(self.compute)} + overhead {format_bytes(self.overhead)} = {format_bytes(self.total)}")
        if self.available is not None:
            text += f" (available: {format_bytes(self.available)})"
        if self.vram:
            text += f"; {self.describe_vram()}"
        return text

    def __str__(self) -> str:
        return self.describe()

    def _repr_html_(self) -> str:
        from html import escape
        return f"<code>{escape(self.describe())}</code>"


@dataclass
class TokenLogProb:
    """One generated token with its probability and the top alternatives (``log_probs=N``)."""

    token: int
    text: str
    logprob: float  #: the model's own log-probability (LM Studio's and OpenAI's ``logprobs``)
    top: list[tuple[int, str, float]]
    #: the probability the sampler chain drew it with (after penalties, top-k/p, min-p, XTC, temperature; 1.0 at
    #: temperature 0); None where the engine does not say (a remote server)
    sampled_probability: float | None = None


@dataclass
class TokenEvent:
    """What one step of the loop produced: the visible text delta (may be empty) and the token."""

    text: str
    token: int
    logprob: TokenLogProb | None = None
    #: proposed by a draft and accepted by the model (speculative decoding; LM Studio's ``containsDrafted``)
    drafted: bool = False


@dataclass
class GenerationStats:
    """Counters and timings of one generation (filled in as it runs)."""

    prompt_tokens: int = 0
    cached_prompt_tokens: int = 0
    predicted_tokens: int = 0
    t_start: float = 0.0
    t_prompt_done: float | None = None
    t_first_token: float | None = None
    t_end: float | None = None
    stop_reason: str | None = None
    stop_string: str | None = None
    truncated_prompt_tokens: int = 0
    context_shifts: int = 0
    seed: int | None = None
    error: str | None = None
    #: decode threads: the most used, whether adaptive, steps per count, the count at the end; batch threads
    threads: dict | None = None
    #: settings applied differently from what was asked (e.g. cpuThreads capped to the CPUs available)
    notes: list[str] = field(default_factory=list)
    #: what a remote server reported (preferred over the times measured in this kernel)
    server_tokens_per_second: float | None = None
    server_time_to_first_token_sec: float | None = None
    #: speculative decoding: the draft's key (``usedDraftModelKey``; None = not used) and its token counts
    draft_model_key: str | None = None
    draft_accepted: int = 0
    draft_rejected: int = 0
    draft_ignored: int = 0

    @property
    def time_to_first_token_sec(self) -> float | None:
        """Seconds from the request to the first generated token (the server's figure when it reports one)."""
        if self.server_time_to_first_token_sec is not None:
            return self.server_time_to_first_token_sec
        return None if self.t_first_token is None else self.t_first_token - self.t_start

    @property
    def generation_time_sec(self) -> float:
        """Seconds spent generating (after the prompt was processed)."""
        end = self.t_end if self.t_end is not None else time.perf_counter()
        return max(end - (self.t_prompt_done or self.t_start), 0.0)

    @property
    def tokens_per_second(self) -> float | None:
        """Generated tokens per second of generation time (the server's figure when it reports one)."""
        if self.server_tokens_per_second is not None:
            return self.server_tokens_per_second
        t = self.generation_time_sec
        return self.predicted_tokens / t if self.predicted_tokens and t > 0 else None


@dataclass(frozen=True)
class DownloadedModel:
    """A GGUF file found in the model folders."""

    model_key: str
    path: str
    size_bytes: int
    info: ModelInfo | None
    error: str | None = None

    @property
    def architecture(self) -> str | None:
        """The GGUF architecture (``llama``, ``qwen2``, …)."""
        return self.info.architecture if self.info else None


@dataclass
class LoadedModel:
    """What :meth:`Engine.load` returns: the engine's opaque ``handle`` and what the load produced."""

    handle: Any  #: the engine's own reference to the instance; only the engine looks inside
    path: str
    info: ModelInfo
    config: dict[str, Any]  #: every effective load setting (REST snake_case names)
    notes: list[str]  #: every place the engine applied something other than what was asked, with why
    load_time_seconds: float
    memory: dict[str, int]  #: ``weights`` and ``kv_cache`` bytes
    chat_template: str  #: the name of the chat template in use
    context_length: int  #: the context length the engine allocated
    engine_params: dict[str, Any] = field(default_factory=dict)  #: the engine's own parameters (llama.cpp's)
    setting_params: dict[str, str] = field(default_factory=dict)  #: per setting, the engine parameters it drives


@dataclass(frozen=True)
class LoadPreview:
    """What a load of a model with a config would apply, without loading: effective settings and notes."""

    effective: dict[str, Any]
    notes: list[str]
    gpu_layers: int  #: the layers the GPU setting asks to offload
    offloadable_layers: int  #: the layers the model has that can be offloaded


class ResolvedModelFile(Protocol):
    """A model file an engine found for a model key: its ``path`` and the ``key`` it is listed under."""

    @property
    def path(self) -> Path: ...  # noqa: D102

    @property
    def key(self) -> str: ...  # noqa: D102


class Prediction(Protocol):
    """One running prediction: an iterator of :class:`TokenEvent`; ``stats`` is complete once it ends.

    ``prompt_text`` is the prompt as the model sees it (after the chat template and any truncation).
    ``cancel()`` stops this prediction only (never another one that found the model busy); ``close()``
    stops it and releases the model at once.
    """

    stats: GenerationStats
    prompt_text: str
    log_probs: int

    def __iter__(self) -> Iterator[TokenEvent]: ...  # noqa: D105

    def cancel(self) -> None: ...  # noqa: D102

    def close(self) -> None: ...  # noqa: D102


# ------------------------------------------------------------------------------ the interface


@runtime_checkable
class Engine(Protocol):
    """The calls the public API makes on an engine."""

    def check_load_config(self, config: LoadModelConfig) -> None:
        """Refuse (ConfigError) load settings beyond what this engine can take."""

    def check_prediction_config(self, config: PredictionConfig) -> None:
        """Refuse (ConfigError) prediction settings beyond what this engine can take."""

    def resolve(self, model_key: str, *, allow_download: bool, allow_paths: bool) -> ResolvedModelFile:
        """The model file ``model_key`` names (ModelNotFoundError if none)."""

    def model_info(self, path: str | Path) -> ModelInfo:
        """The metadata of the model file at ``path``."""

    def list_downloaded(self) -> list[DownloadedModel]:
        """Every model file the engine can load."""

    def load(self, model: ResolvedModelFile, config: LoadModelConfig, *, identifier: str,
             on_progress: ProgressCallback | None = None, force: bool = False) -> LoadedModel:
        """Load ``model`` with ``config`` as ``identifier``; refuse a load that would not fit unless ``force``."""

    def unload(self, model: LoadedModel) -> None:
        """Free the instance (stops a running prediction first)."""

    def is_loaded(self, model: LoadedModel) -> bool:
        """False once the instance was unloaded."""

    def check_loaded(self, model: LoadedModel, identifier: str) -> None:
        """Raise ModelNotLoadedError naming ``identifier`` once the instance is gone."""

    def tokenize(self, model: LoadedModel, text: str) -> list[int]:
        """Token ids of ``text`` (with BOS when the model adds one)."""

    def apply_prompt_template(self, model: LoadedModel, messages: list[dict[str, str]]) -> str:
        """The prompt text the model's chat template makes of ``messages``."""

    def predict(self, model: LoadedModel, prompt: str | list[dict[str, str]],
                config: PredictionConfig) -> Prediction:
        """Start a prediction: ``prompt`` is raw text (continued as is) or chat messages (through the
        template, whole messages dropped first when the context overflows). Settings this engine cannot
        take are refused here (ConfigError)."""

    def stop(self, model: LoadedModel) -> None:
        """Ask a running prediction on ``model`` to stop (from another thread)."""

    def close(self) -> None:
        """Release what the engine holds."""


@runtime_checkable
class SupportsNextTokenDistribution(Protocol):
    """Optional: the next-token distribution, stage by stage through the sampler chain (in-kernel engines only)."""

    def next_token_distribution(self, model: LoadedModel, prompt: str | list[int] | list[dict[str, str]],
                                config: PredictionConfig, *, top_n: int, samples: int) -> Any:
        """The distribution after ``prompt`` under ``config``."""


@runtime_checkable
class SupportsEstimate(Protocol):
    """Optional: memory estimates and load previews without loading (engines that can read the file)."""

    def estimate(self, model: ResolvedModelFile | LoadedModel, config: LoadModelConfig | None = None
                 ) -> MemoryEstimate:
        """The memory a load of ``model`` with ``config`` (or a loaded instance) takes at its peak."""

    def preview_load(self, info: ModelInfo, config: LoadModelConfig) -> LoadPreview:
        """What a load with ``config`` would apply (ConfigError if it cannot load)."""


@runtime_checkable
class SupportsDownload(Protocol):
    """An engine that can fetch model files into its own model folders (the in-kernel engine: the Hugging Face hub)."""

    def download_job(self, model: str, quantization: str | None = None, *, progress_bar: bool = True) -> Any:
        """A planned download of ``model`` (``owner/repo[/file.gguf]``, ``owner/repo@QUANT``, a URL): an object
        with ``run()``, ``cancel()``, ``status``, ``plan``, ``path``, ``describe()`` and ``to_rest()``."""


@runtime_checkable
class SupportsVocabulary(Protocol):
    """Optional: token-level access to the vocabulary (in-kernel engines only)."""

    def tokenize_chat(self, model: LoadedModel, messages: list[dict[str, str]]) -> list[int]:
        """The token ids of ``messages`` through the chat template (special tokens parsed)."""

    def vocab_size(self, model: LoadedModel) -> int:
        """The number of tokens in the vocabulary."""

    def token_text(self, model: LoadedModel, token: int) -> str:
        """The text of ``token`` (special tokens spelled out)."""

    def is_end_of_generation(self, model: LoadedModel, token: int) -> bool:
        """True for a token that ends generation (EOS, EOT, …)."""


class TemplatedPrompt(str):
    """A prompt text a prompt template (a prediction's ``promptTemplate``) already formatted as a chat: an engine
    continues it as raw text, but parses the special tokens in it (``<|im_start|>``) as a chat template's output
    is, and adds no BOS when it starts with the model's BOS text."""


def missing_capability(engine: object, what: str) -> str:
    """The one line saying an engine lacks an optional capability."""
    return f"{what} needs an in-kernel engine; {type(engine).__name__} does not provide it"


__all__ = [
    "DownloadedModel", "Engine", "GenerationStats", "LoadPreview", "LoadedModel", "MemoryEstimate", "ModelInfo",
    "Prediction", "ProgressCallback", "ResolvedModelFile", "SAFETY", "SupportsEstimate",
    "SupportsNextTokenDistribution", "SupportsVocabulary", "TemplatedPrompt", "TokenEvent", "TokenLogProb",
    "missing_capability",
]
