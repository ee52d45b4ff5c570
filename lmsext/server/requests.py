"""The pydantic models of the REST request bodies (LM Studio ``/api/v1`` and OpenAI ``/v1``).

Every model forbids unknown fields and is strictly typed (``"4096"`` is not a number, ``true`` is not an
integer); ranges and the meaning of each setting come from :class:`~lmsext.PredictionConfig` and
:class:`~lmsext.LoadModelConfig` (see :mod:`.configs`), so the server accepts exactly what the Python API does.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field

# ------------------------------------------------------------------------------------------ models


class Strict(BaseModel):
    """A request body: unknown fields forbidden, strictly typed."""

    model_config = ConfigDict(extra="forbid", strict=True)


def _model_field() -> Any:
    return Field(min_length=1, max_length=512, description="A model key from the model folders (e.g. "
                 "`stories260K`) or a loaded instance id. File paths are rejected.")


class LoadRequest(Strict):
    """``POST /api/v1/models/load`` (seed 002)."""

    model: str = _model_field()
    config: dict[str, Any] | None = Field(None, description="Load settings in snake_case; see LoadConfig.")
    echo_load_config: bool = Field(False, description="Also answer with `load_config` (LM Studio 0.4); `config` "
                                   "(seed 002) is always there.")


class UnloadRequest(Strict):
    """``POST /api/v1/models/unload``."""

    instance_id: str = Field(min_length=1, max_length=512, description="The loaded instance to unload.")


class InputMessage(Strict):
    """A text input item of ``/api/v1/chat``."""

    type: Literal["message"]
    content: str


class InputImage(Strict):
    """An image input item (not supported by lmsext: answered with 400)."""

    type: Literal["image"]
    data_url: str


Number = Union[float, int]
#: LM Studio's ``promptTemplate`` (lmsext's extension of the chat endpoints): a built-in name or a manual/Jinja template.
PromptTemplateField = Annotated[Union[str, dict[str, Any], None], Field(
    None, description="The chat format instead of the model's: a built-in name (chatml, llama3, alpaca, plain), "
    "`{type: manual, manualPromptTemplate: {beforeUser, ...}, stopStrings}` or `{type: jinja, "
    "jinjaPromptTemplate: {template, bosToken, eosToken}, stopStrings}`.")]
StopValue = Union[str, list[str]]


class Sampling(Strict):
    """Sampling settings shared by the chat endpoints (LM Studio REST / OpenAI names, snake_case)."""

    temperature: Number | None = Field(None, description="0 to 2; 0 is greedy.")
    top_p: Number | None = Field(None, description="Nucleus sampling mass, > 0 and <= 1.")
    top_k: int | None = Field(None, description="Sample from the k most likely tokens (0 = off).")
    min_p: Number | None = Field(None, description="0 to 1.")
    repeat_penalty: Number | None = Field(None, description="> 0; 1 = none.")
    seed: int | None = Field(None, description="Sampler seed.")
    stop: StopValue | None = Field(None, description="A stop string or a list of them.")
    draft_model: str | None = Field(None, description="Speculative decoding: a draft model (loaded instance, key or "
                                    "path, loaded just in time) or 'lookup' (prompt lookup, no second model).")


#: The sampling fields both chat endpoints and ``/v1/completions`` pass on to PredictionConfig, as named there.
SAMPLING_FIELDS = tuple(Sampling.model_fields)


class ChatRequest(Sampling):
    """``POST /api/v1/chat``: LM Studio's native chat endpoint."""

    model: str = _model_field()
    input: Union[str, list[Annotated[Union[InputMessage, InputImage], Field(discriminator="type")]]] = Field(
        description="The user message, or a list of `{type: \"message\", content}` items.")
    system_prompt: str | None = None
    stream: bool = Field(False, description="Stream server-sent events (chat.start ... chat.end).")
    store: bool = Field(True, description="Keep the exchange so `previous_response_id` can continue it.")
    previous_response_id: str | None = Field(None, description="Continue the conversation of a stored response.")
    context_length: int | None = Field(None, ge=1, description="Context length if the model has to be loaded (JIT).")
    reasoning: Literal["off", "low", "medium", "high", "on"] | None = None
    integrations: list[Any] | None = Field(None, description="Not supported (MCP); must be absent or empty.")
    max_output_tokens: int | None = Field(None, description="Most tokens to generate.")
    context_overflow_policy: str | None = Field(None, description="stopAtLimit, truncateMiddle or rollingWindow.")
    structured: dict[str, Any] | None = Field(None, description="JSON schema / GBNF constraint (LM Studio form).")
    xtc_probability: Number | None = None
    xtc_threshold: Number | None = None
    cpu_threads: int | None = Field(None, description="CPU threads for this prediction.")
    prompt_template: PromptTemplateField = None


#: The fields of ChatRequest that make its PredictionConfig, and their PredictionConfig names where they differ.
CHAT_PREDICTION_FIELDS = SAMPLING_FIELDS + ("max_output_tokens", "context_overflow_policy", "structured",
                                            "xtc_probability", "xtc_threshold", "cpu_threads", "prompt_template")
CHAT_RENAMES = {"max_output_tokens": "max_tokens"}


class TextPart(Strict):
    """An OpenAI text content part."""

    type: Literal["text"]
    text: str


class ImagePart(Strict):
    """An OpenAI image content part (not supported: 400)."""

    type: Literal["image_url"]
    image_url: Any


class OpenAIMessage(Strict):
    """An OpenAI chat message."""

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: Union[str, list[Annotated[Union[TextPart, ImagePart], Field(discriminator="type")]], None] = None
    name: str | None = None
    tool_calls: list[Any] | None = Field(None, description="An assistant's calls: [{id, type: function, function: {name, arguments}}].")
    tool_call_id: str | None = Field(None, description="A tool message: the id of the call it answers.")


class StreamOptions(Strict):
    """OpenAI ``stream_options``."""

    include_usage: bool = False


class _OpenAICommon(Sampling):
    model: str = _model_field()
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int | None = Field(None, description="Only 1 is supported.")
    presence_penalty: Number | None = Field(None, description="Only 0 is supported (use repeat_penalty).")
    frequency_penalty: Number | None = Field(None, description="Only 0 is supported (use repeat_penalty).")
    logit_bias: dict[str, Any] | None = Field(None, description="Only an empty object is supported.")
    user: str | None = Field(None, description="Accepted and ignored.")


class OpenAIChatRequest(_OpenAICommon):
    """``POST /v1/chat/completions``."""

    messages: list[OpenAIMessage] = Field(min_length=1)
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    response_format: dict[str, Any] | None = Field(
        None, description="`{type: text}`, `{type: json_object}` or `{type: json_schema, json_schema: {schema}}`.")
    logprobs: bool | None = Field(None, description="Only false is supported.")
    top_logprobs: int | None = Field(None, description="Only 0 is supported.")
    tools: list[Any] | None = Field(None, description="[{type: function, function: {name, description, parameters}}].")
    tool_choice: Any = Field(None, description="'auto' (default), 'none', 'required' or {type: function, function: {name}}.")
    parallel_tool_calls: bool | None = Field(None, description="Accepted and ignored.")
    metadata: dict[str, Any] | None = Field(None, description="Accepted and ignored.")
    store: bool | None = Field(None, description="Accepted and ignored.")
    prompt_template: PromptTemplateField = None


class OpenAICompletionRequest(_OpenAICommon):
    """``POST /v1/completions``."""

    prompt: Union[str, list[str]]
    max_tokens: int | None = Field(16, description="Most tokens to generate (OpenAI's default: 16; null = no limit).")
    echo: bool = Field(False, description="Only false is supported.")
    logprobs: int | None = Field(None, description="Only null/0 is supported.")
    suffix: str | None = Field(None, description="Not supported: must be absent.")
    best_of: int | None = Field(None, description="Only 1 is supported.")

