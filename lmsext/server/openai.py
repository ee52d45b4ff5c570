"""OpenAI-compatible ``/v1`` endpoints: models, chat completions, completions (SSE with ``stream``)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any, AsyncIterator, Callable, Iterable

from starlette.requests import Request
from starlette.responses import Response

from ..errors import ConfigError
from ..tools import parse_tool_calls
from .catalog import get_model, list_models
from .configs import prediction_config, unsupported
from .errors import ApiError, bad_request
from .http import JSON, created, dumps, endpoint, read_json, run_blocking, server_state, to_api_error
from .jobs import GatedStream, PredictionJob, collect, failed, job_events, start_job
from .openai_tools import as_tools_error, template_message, tool_call_deltas, tool_message, tool_settings
from .requests import SAMPLING_FIELDS, ImagePart, OpenAIChatRequest, OpenAICompletionRequest
from .state import ServerState
from .validation import validate

#: LM Studio's stop reasons → OpenAI's ``finish_reason``.
FINISH_REASONS = {"eosFound": "stop", "stopStringFound": "stop", "userStopped": "stop", "toolCalls": "tool_calls",
                  "maxPredictedTokensReached": "length", "contextLengthReached": "length",
                  "timeLimitReached": "length"}

@endpoint
async def openai_models(request: Request) -> Response:
    """GET /v1/models."""
    state = server_state(request)
    entries = await run_blocking(list_models, state.client)
    data, seen = [], set()
    for entry in entries:
        for inst in entry["loaded_instances"]:
            if inst["id"] not in seen:
                seen.add(inst["id"])
                data.append({"id": inst["id"], "object": "model", "created": 0,
                             "owned_by": entry["publisher"] or "local"})
    for entry in entries:
        if entry["key"] not in seen:
            seen.add(entry["key"])
            data.append({"id": entry["key"], "object": "model", "created": 0,
                         "owned_by": entry["publisher"] or "local"})
    return JSON({"object": "list", "data": data})




def _openai_common_checks(req: Any) -> None:
    unsupported("n", req.n, (1,), "n other than 1")
    unsupported("presence_penalty", req.presence_penalty, (0, 0.0), "presence_penalty (use repeat_penalty)")
    unsupported("frequency_penalty", req.frequency_penalty, (0, 0.0), "frequency_penalty (use repeat_penalty)")
    if req.logit_bias:
        raise bad_request("logit_bias is not supported by lmsext", param="logit_bias")


def _openai_messages(req: OpenAIChatRequest) -> list[dict[str, Any]]:
    out = []
    for i, msg in enumerate(req.messages):
        if msg.role == "function":
            raise bad_request("role 'function' is not supported by lmsext (use tools and role 'tool')",
                              param=f"messages[{i}].role")
        content = msg.content
        if content is None:
            text = ""
        elif isinstance(content, str):
            text = content
        else:
            texts = []
            for j, part in enumerate(content):
                if isinstance(part, ImagePart):
                    raise bad_request("image content is not supported by lmsext (text models only)",
                                      param=f"messages[{i}].content[{j}]")
                texts.append(part.text)
            text = "".join(texts)
        out.append(template_message(i, "system" if msg.role == "developer" else msg.role, text, msg.tool_calls,
                                    msg.tool_call_id))
    return out


def _response_format(fmt: dict[str, Any] | None) -> dict[str, Any] | None:
    if fmt is None:
        return None
    kind = fmt.get("type")
    if kind == "text":
        if set(fmt) - {"type"}:
            raise bad_request("response_format {type: text} takes no other field", param="response_format")
        return None
    if kind == "json_object":
        return {"type": "json"}
    if kind == "json_schema":
        spec = fmt.get("json_schema")
        if not isinstance(spec, dict) or not isinstance(spec.get("schema"), dict):
            raise bad_request("response_format.json_schema must be an object with a 'schema' object",
                              param="response_format.json_schema")
        return {"type": "json", "json_schema": spec["schema"]}
    raise bad_request(f"response_format.type={kind!r}: must be 'text', 'json_object' or 'json_schema'",
                      param="response_format.type")


def _usage(result: Any) -> dict[str, int]:
    st = result.stats
    return {"prompt_tokens": st.prompt_tokens_count, "completion_tokens": st.predicted_tokens_count,
            "total_tokens": st.prompt_tokens_count + st.predicted_tokens_count}


def _lms_stats(result: Any) -> dict[str, Any]:
    st = result.stats
    return {"tokens_per_second": st.tokens_per_second, "time_to_first_token": st.time_to_first_token_sec,
            "generation_time": st.generation_time_sec, "stop_reason": st.stop_reason, **_draft_stats(st)}


def _draft_stats(st: Any) -> dict[str, Any]:
    """LM Studio's speculative-decoding stats (snake_case) when the prediction used a draft."""
    draft_dict = getattr(st, "draft_dict", None)
    return draft_dict() if draft_dict is not None else {}


def _openai_config(state: ServerState, req: Any, max_tokens: int | None, structured: dict[str, Any] | None,
                   tools: dict[str, Any] | None = None) -> Any:
    values = {k: getattr(req, k) for k in SAMPLING_FIELDS}
    values["max_tokens"] = max_tokens
    if structured is not None:
        values["structured"] = structured
    if tools is not None:
        values["raw_tools"] = tools
    values["prompt_template"] = getattr(req, "prompt_template", None)  # chat completions only
    try:
        return prediction_config(values, check=state.client.engine.check_prediction_config)
    except ApiError as exc:
        raise as_tools_error(_as_response_format(exc)) from None


def _as_response_format(err: ApiError) -> ApiError:
    """``err`` about ``structured`` (the Python API's name) told as the OpenAI request's ``response_format``."""
    if err.param == "structured" or (err.param or "").startswith("structured."):
        err.param = "response_format"
        if err.message.startswith("structured"):
            err.message = "response_format" + err.message[len("structured"):]
            err.args = (err.message,)
    return err


@dataclass(frozen=True)
class _OpenAIShape:
    """What the OpenAI completion endpoints' answers differ in; :func:`_openai_answer` does the rest."""

    id_prefix: str
    object: str
    chunk_object: str
    content: Callable[[str], dict[str, Any]]
    """The fields of the full answer's choice for the generated text."""
    delta: Callable[[str | None], dict[str, Any]]
    """The fields of a streamed chunk's choice for a fragment (None: the final chunk)."""
    first_delta: dict[str, Any] | None = None
    """The fields of a chunk sent before the first fragment, if any."""
    chunk_fingerprint: bool = False
    """Whether streamed chunks carry ``system_fingerprint``."""
    split_reasoning: bool = False
    """Whether the reasoning goes to ``reasoning_content`` (chat) instead of staying in the text (completions)."""


_CHAT_SHAPE = _OpenAIShape(
    "chatcmpl-", "chat.completion", "chat.completion.chunk",
    content=lambda text: {"message": {"role": "assistant", "content": text}},
    delta=lambda text: {"delta": {} if text is None else {"content": text}},
    first_delta={"delta": {"role": "assistant", "content": ""}}, chunk_fingerprint=True, split_reasoning=True)
_COMPLETION_SHAPE = _OpenAIShape(
    "cmpl-", "text_completion", "text_completion",
    content=lambda text: {"text": text},
    delta=lambda text: {"text": text or ""})


async def _openai_request(request: Request, schema: type) -> tuple[ServerState, Any]:
    """The state and the validated body of an OpenAI completion request, after the checks both endpoints share."""
    state = server_state(request)
    req = validate(schema, await read_json(request, state))
    _openai_common_checks(req)
    return state, req


def _choice(fields: dict[str, Any], finish: str | None, result: Any = None) -> dict[str, Any]:
    """One choice; with the final ``result``, vLLM's ``stop_reason`` (the stop string that ended it) when one did,
    since ``finish_reason: "stop"`` alone does not tell a stop string from the end of sequence."""
    stop = getattr(getattr(result, "stats", None), "stop_string", None)
    extra = {"stop_reason": stop} if stop and result.stats.stop_reason == "stopStringFound" else {}
    return {"index": 0, **fields, "logprobs": None, "finish_reason": finish, **extra}


def _finish(result: Any) -> str:
    return "tool_calls" if getattr(result, "tool_calls", None) else FINISH_REASONS.get(result.stats.stop_reason, "stop")


def _answer_fields(shape: _OpenAIShape, result: Any) -> dict[str, Any]:
    """The choice's fields of a whole answer: the text (the reasoning apart, in ``reasoning_content``, where the
    shape splits it), or the message with its ``tool_calls``."""
    text = result.non_reasoning_content if shape.split_reasoning else result.content
    if getattr(result, "tool_calls", None) and shape is _CHAT_SHAPE:
        fields = {"message": tool_message(result, parse_tool_calls(text).content)}
    else:
        fields = shape.content(text)
    if shape.split_reasoning and result.reasoning_content:  # LM Studio's (and DeepSeek's) field
        fields["message"]["reasoning_content"] = result.reasoning_content
    return fields


async def _openai_answer(request: Request, state: ServerState, req: Any, shape: _OpenAIShape,
                         predict: Callable[[Any], Iterable[Any]]) -> Response:
    """Get (JIT-load) ``req.model``, run ``predict(llm)`` on it and answer, whole or as a stream."""
    llm, _ = await run_blocking(get_model, state.client, req.model, None)
    job, first = await start_job(state, llm, lambda: predict(llm), request)
    head = {"id": shape.id_prefix + secrets.token_hex(12), "object": shape.object, "created": created(),
            "model": llm.identifier}
    if not req.stream:
        result = await collect(job, first)
        return JSON({**head, "choices": [_choice(_answer_fields(shape, result), _finish(result), result)],
                     "usage": _usage(result), "stats": _lms_stats(result), "system_fingerprint": llm.identifier})
    chunk_head = {**head, "object": shape.chunk_object}
    if shape.chunk_fingerprint:
        chunk_head["system_fingerprint"] = llm.identifier
    usage = bool(req.stream_options and req.stream_options.include_usage)

    def chunk(text: str | None, finish: str | None, fields: dict[str, Any] | None = None,
              result: Any = None) -> dict[str, Any]:
        return {**chunk_head, "choices": [_choice(shape.delta(text) if fields is None else fields, finish, result)]}

    def usage_event(result: Any) -> dict[str, Any] | None:
        return {**head, "object": shape.chunk_object, "choices": [], "usage": _usage(result)} if usage else None

    first_event = None if shape.first_delta is None else chunk(None, None, shape.first_delta)
    held = getattr(req, "tools", None) and getattr(req, "tool_choice", None) != "none"
    return GatedStream(_openai_sse(job, first, chunk, usage_event, first_event, bool(held), shape.split_reasoning), job,
                       "text/event-stream")


@endpoint
async def openai_chat(request: Request) -> Response:
    """POST /v1/chat/completions."""
    state, req = await _openai_request(request, OpenAIChatRequest)
    unsupported("logprobs", req.logprobs, (False,), "logprobs")
    unsupported("top_logprobs", req.top_logprobs, (0,), "top_logprobs")
    tools = tool_settings(req.tools, req.tool_choice)
    if req.max_tokens is not None and req.max_completion_tokens is not None \
            and req.max_tokens != req.max_completion_tokens:
        raise bad_request("give max_tokens or max_completion_tokens, not both", param="max_completion_tokens")
    max_tokens = req.max_completion_tokens if req.max_completion_tokens is not None else req.max_tokens
    messages = _openai_messages(req)
    if max_tokens is None:
        max_tokens = state.default_max_tokens
    config = _openai_config(state, req, max_tokens, _response_format(req.response_format), tools)
    try:  # the JSON schema becomes a grammar when the prediction starts: its errors come from there
        return await _openai_answer(request, state, req, _CHAT_SHAPE,
                                    lambda llm: llm.respond_stream(messages, config))
    except ConfigError as exc:
        raise _as_response_format(to_api_error(exc)) from None


@endpoint
async def openai_completions(request: Request) -> Response:
    """POST /v1/completions."""
    state, req = await _openai_request(request, OpenAICompletionRequest)
    unsupported("echo", req.echo, (False,), "echo")
    unsupported("logprobs", req.logprobs, (0,), "logprobs")
    unsupported("best_of", req.best_of, (1,), "best_of other than 1")
    if req.suffix:
        raise bad_request("suffix (insertion) is not supported by lmsext", param="suffix")
    prompt = req.prompt
    if isinstance(prompt, list):
        if len(prompt) != 1:
            raise bad_request("prompt as a list must hold exactly one string (no batching)", param="prompt")
        prompt = prompt[0]
    max_tokens = state.default_max_tokens if req.max_tokens is None else req.max_tokens
    config = _openai_config(state, req, max_tokens, None)
    return await _openai_answer(request, state, req, _COMPLETION_SHAPE, lambda llm: llm.complete_stream(prompt, config))


async def _openai_sse(job: PredictionJob, first: tuple[str, Any], chunk: Callable[[str | None, str | None], Any],
                      usage_event: Callable[[Any], dict[str, Any] | None],
                      first_event: dict[str, Any] | None = None, held: bool = False,
                      split_reasoning: bool = False) -> AsyncIterator[str]:
    """The SSE stream of the OpenAI endpoints: ``chunk(text, finish)`` shapes each event; ``held``: the
    reply (which may call tools) is sent once complete, as a content delta and a ``tool_calls`` delta; with
    ``split_reasoning`` the reasoning streams as ``delta.reasoning_content`` and its tags are left out."""
    if first_event is not None:
        yield _data(first_event)
    async for kind, value in job_events(job, first):
        if kind == "fragment":
            kind_of = getattr(value, "reasoning_type", "none")
            if held:
                pass
            elif not split_reasoning or kind_of == "none":
                yield _data(chunk(value.content, None))
            elif kind_of == "reasoning":
                yield _data(chunk(None, None, {"delta": {"reasoning_content": value.content}}))
        elif kind == "result":
            problem = failed(value)
            if problem is not None:
                yield _data(problem.body())
                continue
            if held:
                whole = value.non_reasoning_content if split_reasoning else value.content
                text = parse_tool_calls(whole).content if value.tool_calls else whole
                if text:
                    yield _data(chunk(text, None))
                if value.tool_calls:
                    yield _data(chunk(None, None, {"delta": tool_call_deltas(value)}))
            yield _data(chunk(None, _finish(value), result=value))
            extra = usage_event(value)
            if extra is not None:
                yield _data(extra)
        elif kind == "error":
            yield _data(to_api_error(value).body())
    yield "data: [DONE]\n\n"



def _data(obj: dict[str, Any]) -> str:
    return f"data: {dumps(obj)}\n\n"

