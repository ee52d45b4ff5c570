"""Request bodies for a model server: LM Studio's REST v1 (``/api/v1``) and the OpenAI-compatible API (``/v1``).

Each maps lmsext's :class:`~lmsext.config.PredictionConfig` / :class:`~lmsext.config.LoadModelConfig` to the
fields the server takes, and refuses (ConfigError, one line naming the setting and the server) a setting the
server would silently drop.
"""

from __future__ import annotations

import json
from typing import Any

from ..config import LoadModelConfig, PredictionConfig
from ..errors import ConfigError

#: The API a server speaks, as :meth:`RemoteEngine.api` reports it.
LMSTUDIO_V1 = "LM Studio REST v1"
OPENAI = "OpenAI-compatible"

#: Load settings LM Studio's own ``POST /api/v1/models/load`` takes as top-level fields.
LMSTUDIO_LOAD_FIELDS = ("context_length", "eval_batch_size", "flash_attention", "num_experts", "offload_kv_cache_to_gpu")
#: Prediction settings no remote API carries (the server's own defaults would apply silently).
NO_REMOTE_PREDICTION = {
    "cpu_threads": "cpuThreads", "draft_model": "draftModel", "tool_call_stop_strings": "toolCallStopStrings",
    "speculative_decoding_num_draft_tokens_exact": "speculativeDecodingNumDraftTokensExact",
    "speculative_decoding_min_draft_length_to_consider": "speculativeDecodingMinDraftLengthToConsider",
    "speculative_decoding_min_continue_drafting_probability": "speculativeDecodingMinContinueDraftingProbability",
}
#: Settings only lmsext's own server takes on ``/api/v1/chat`` (LM Studio REST names).
LMSEXT_ONLY_PREDICTION = {"context_overflow_policy": "contextOverflowPolicy", "xtc_probability": "xtcProbability",
                          "xtc_threshold": "xtcThreshold"}


def refuse_load_settings(config: LoadModelConfig, server: str, api: str, flavour: str) -> None:
    """ConfigError naming the first load setting the server cannot take (an OpenAI-only server loads its models
    at start-up; LM Studio's v1 load takes five settings, lmsext's own server all)."""
    given = config.to_dict("camel")
    if not given or flavour == "lmsext":
        return
    if api == OPENAI:
        key = next(iter(given))
        raise ConfigError(f"{key}: {server} speaks only the {api} API, which loads models when the server starts; "
                          f"start the server with that setting instead, or remove {key}", key=key)
    snake = config.to_dict("snake")
    for key_snake, key_camel in zip(snake, given):
        if key_snake not in LMSTUDIO_LOAD_FIELDS:
            raise ConfigError(f"{key_camel}: {server}'s LM Studio load endpoint does not take this setting "
                              f"(it takes {', '.join(LMSTUDIO_LOAD_FIELDS)})", key=key_camel)


def load_body(key: str, config: LoadModelConfig, flavour: str) -> dict[str, Any]:
    """``POST /api/v1/models/load``'s body: lmsext's server takes every setting under ``config`` (seed 002);
    LM Studio takes its five as top-level fields."""
    body: dict[str, Any] = {"model": key, "echo_load_config": True}
    settings = _jsonable(config.to_dict("snake"))
    if flavour == "lmsext":
        if settings:
            body["config"] = settings
    else:
        body.update(settings)
    return body


def refuse_prediction_settings(config: PredictionConfig, server: str, api: str, flavour: str) -> None:
    """ConfigError naming a prediction setting this server would drop."""
    set_keys = config.to_dict("snake")
    for key, camel in NO_REMOTE_PREDICTION.items():
        if key in set_keys:
            raise ConfigError(f"{camel}: not supported on a remote server ({server}); remove it", key=camel)
    if flavour != "lmsext":
        for key, camel in LMSEXT_ONLY_PREDICTION.items():
            if key in set_keys:
                raise ConfigError(f"{camel}: {server} ({api}) has no such setting; remove it", key=camel)
    structured = config.structured
    if structured is not None and structured.type == "gbnf":
        raise ConfigError(f"structured: a GBNF grammar cannot be sent to {server} ({api}); use a JSON schema",
                          key="structured")


def sampling_fields(config: PredictionConfig) -> dict[str, Any]:
    """The sampling fields llama.cpp, vLLM, LM Studio and lmsext accept (top_k/min_p/repeat_penalty as extras)."""
    out: dict[str, Any] = {}
    if config.temperature is not None:
        out["temperature"] = config.temperature
    if config.top_p_sampling is not None:
        out["top_p"] = 1.0 if config.top_p_sampling is False else config.top_p_sampling
    if config.top_k_sampling is not None:
        out["top_k"] = config.top_k_sampling
    if config.min_p_sampling is not None:
        out["min_p"] = 0.0 if config.min_p_sampling is False else config.min_p_sampling
    if config.repeat_penalty is not None:
        out["repeat_penalty"] = 1.0 if config.repeat_penalty is False else config.repeat_penalty
    if config.seed is not None:
        out["seed"] = config.seed
    if config.stop_strings:
        out["stop"] = list(config.stop_strings)
    return out


def max_tokens(config: PredictionConfig) -> int | None:
    """The token limit, or None for none (``maxTokens=false`` or unset)."""
    return config.max_tokens if config.max_tokens not in (None, False) else None


def openai_body(model: str, config: PredictionConfig, *, chat: bool) -> dict[str, Any]:
    """``/v1/chat/completions`` (``chat``) or ``/v1/completions``'s body, streaming with usage, less the prompt."""
    body: dict[str, Any] = {"model": model, "stream": True, "stream_options": {"include_usage": True},
                            **sampling_fields(config)}
    limit = max_tokens(config)
    if limit is not None:
        body["max_tokens"] = limit
    structured = config.structured
    tools = config.raw_tools.active if chat and config.raw_tools is not None else []
    if tools:  # the server renders them and returns tool_calls (prediction.py writes them as <tool_call> text)
        body["tools"] = [t.to_dict() for t in tools]
        if config.raw_tools.force:  # the server forces the call: not lmsext's forced-call schema as a format
            body["tool_choice"], structured = "required", None
    if structured is not None and structured.type == "json":
        schema = structured.json_schema or {"type": "object"}
        if not chat:
            raise ConfigError("structured: a JSON schema needs a chat (respond); /v1/completions has no "
                              "response_format", key="structured")
        body["response_format"] = {"type": "json_schema",
                                   "json_schema": {"name": "output", "schema": schema, "strict": True}}
    if config.log_probs:
        if chat:
            body.update(logprobs=True, top_logprobs=config.log_probs)
        else:
            body["logprobs"] = config.log_probs
    return body


def lmstudio_chat_body(model: str, messages: list[dict[str, str]], config: PredictionConfig) -> dict[str, Any]:
    """``/api/v1/chat``'s streaming body for a system prompt and one user message (see :func:`fits_api_chat`)."""
    body: dict[str, Any] = {"model": model, "input": messages[-1]["content"], "stream": True, "store": False,
                            **sampling_fields(config)}
    system = [m["content"] for m in messages[:-1] if m["role"] == "system"]
    if system:
        body["system_prompt"] = system[0]
    limit = max_tokens(config)
    if limit is not None:
        body["max_output_tokens"] = limit
    for key in LMSEXT_ONLY_PREDICTION:
        value = getattr(config, key)
        if value is not None:
            body[key] = value
    if config.structured is not None and config.structured.type == "json":
        body["structured"] = {"type": "json", "jsonSchema": config.structured.json_schema or {"type": "object"}}
    return body


def fits_api_chat(messages: list[dict[str, str]], config: PredictionConfig) -> bool:
    """True when ``/api/v1/chat`` can carry this turn: at most one system message, then one user message,
    and no log probabilities (the endpoint has none). A longer history goes through ``/v1/chat/completions``."""
    if config.log_probs or not messages or messages[-1]["role"] != "user":
        return False
    if config.raw_tools is not None and config.raw_tools.active:  # tools go through /v1/chat/completions
        return False
    head = messages[:-1]
    return len(head) <= 1 and all(m["role"] == "system" for m in head)


def openai_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Chat messages as OpenAI takes them: an assistant's ``tool_calls`` with their arguments as JSON text."""
    out = []
    for message in messages:
        if message.get("tool_calls"):
            calls = [{**c, "function": {**c["function"], "arguments": json.dumps(c["function"]["arguments"])}}
                     if not isinstance(c["function"].get("arguments"), str) else c for c in message["tool_calls"]]
            message = {**message, "tool_calls": calls}
        out.append(message)
    return out


def _jsonable(values: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.to_dict("snake") if hasattr(v, "to_dict") else v) for k, v in values.items()}


__all__ = ["LMSTUDIO_V1", "OPENAI", "fits_api_chat", "lmstudio_chat_body", "load_body", "openai_body",
           "refuse_load_settings", "refuse_prediction_settings", "sampling_fields"]
