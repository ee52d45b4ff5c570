"""LM Studio's ``/api/v1`` endpoints: load, unload, the model list, and ``/api/v1/chat`` (SSE with ``stream``)."""

from __future__ import annotations

import secrets
from typing import Any, AsyncIterator

from starlette.requests import Request
from starlette.responses import Response

from .catalog import get_model, list_models
from .chains import StoredChat, trim_chain
from .chat_events import ChatEvents
from .configs import load_config, prediction_config, unsupported
from .errors import ApiError, bad_request
from .http import JSON, dumps, endpoint, read_json, run_blocking, server_state, to_api_error
from .jobs import GatedStream, PredictionJob, collect, failed, job_events, start_job
from .requests import CHAT_PREDICTION_FIELDS, CHAT_RENAMES, ChatRequest, InputImage, LoadRequest, UnloadRequest
from .state import STORED_RESPONSES, ServerState
from .validation import validate

@endpoint
async def load_model(request: Request) -> Response:
    """POST /api/v1/models/load — seed 002."""
    state = server_state(request)
    req = validate(LoadRequest, await read_json(request, state))
    config = load_config(req.config, check=state.client.engine.check_load_config)
    llm = await run_blocking(state.client.llm.load, req.model, config=config, allow_download=False, allow_paths=False)
    return JSON(load_response(llm, req.echo_load_config))


def load_response(llm: Any, echo_load_config: bool) -> dict[str, Any]:
    """LM Studio 0.4's load response (``type``, ``instance_id``, ``load_time_seconds``, ``status``, ``load_config``
    when echoed) around seed 002's (``model_instance_id``, ``config`` with every default) — both names kept."""
    seed = llm.load_result.to_rest()
    body = {"type": "llm", "instance_id": seed["model_instance_id"], **seed, "status": "loaded"}
    if echo_load_config:
        body["load_config"] = dict(seed["config"])  # every setting applied (lmsext applies all it accepts)
    return body


@endpoint
async def unload_model(request: Request) -> Response:
    """POST /api/v1/models/unload."""
    state = server_state(request)
    req = validate(UnloadRequest, await read_json(request, state))
    loaded = await run_blocking(state.client.llm.list_loaded)
    llm = next((m for m in loaded if m.identifier == req.instance_id), None)
    if llm is None:
        names = ", ".join(m.identifier for m in loaded) or "none"
        raise ApiError(404, f"no loaded model instance '{req.instance_id}' (loaded: {names})",
                       type="model_not_found", param="instance_id")
    # the instance's REST prediction (if any) is stopped and over before the model is freed: no C call of it
    # (a tokenization of a 4 MB prompt cannot be interrupted) runs on freed memory
    for job in [j for j in state.jobs if j.instance_id == llm.identifier]:
        job.cancel("modelUnloaded")
    await state.gates.acquire(llm.identifier, state.queue_timeout)
    try:
        await run_blocking(state.client.llm.unload, llm)
    finally:
        state.gates.release(llm.identifier)
    return JSON({"instance_id": llm.identifier})


@endpoint
async def get_models(request: Request) -> Response:
    """GET /api/v1/models."""
    state = server_state(request)
    return JSON({"models": await run_blocking(list_models, state.client)})




def _chat_messages(state: ServerState, req: ChatRequest) -> StoredChat:
    """The conversation of this turn: the stored chain (if any), the system prompt, the new input."""
    chat = StoredChat([])
    if req.previous_response_id is not None:
        stored = state.responses.get(req.previous_response_id)
        if stored is None:
            raise ApiError(404, f"no stored response {req.previous_response_id!r} (this server keeps the last "
                           f"{STORED_RESPONSES}, and only while it runs)", type="not_found",
                           param="previous_response_id")
        chat = StoredChat([dict(m) for m in stored.messages], stored.tokens)
    if req.system_prompt is not None:
        kept = [i for i, m in enumerate(chat.messages) if m["role"] != "system"]
        chat = StoredChat([{"role": "system", "content": req.system_prompt}] + [chat.messages[i] for i in kept],
                          [None] + [chat.tokens[i] for i in kept])
    inputs = [req.input] if isinstance(req.input, str) else req.input
    if not inputs:
        raise bad_request("input must not be an empty list", param="input")
    for i, item in enumerate(inputs):
        if isinstance(item, InputImage):
            raise bad_request("image input is not supported by lmsext (text models only)", param=f"input[{i}]")
        chat.messages.append({"role": "user", "content": item if isinstance(item, str) else item.content})
        chat.tokens.append(None)
    return chat


def _chat_result(llm: Any, result: Any, loaded_now: bool, response_id: str | None) -> dict[str, Any]:
    st = result.stats
    stats = {"input_tokens": st.prompt_tokens_count, "total_output_tokens": st.predicted_tokens_count,
             "reasoning_output_tokens": st.reasoning_output_tokens, "tokens_per_second": st.tokens_per_second,
             "time_to_first_token_seconds": st.time_to_first_token_sec,
             "generation_time_seconds": st.generation_time_sec, "stop_reason": st.stop_reason}
    if getattr(st, "draft_dict", None) is not None:
        stats.update(st.draft_dict())
    if loaded_now:
        stats["model_load_time_seconds"] = round(llm.load_result.load_time_seconds, 3)
    reasoning = [{"type": "reasoning", "content": result.reasoning_content}] if result.reasoning_content else []
    body: dict[str, Any] = {"model_instance_id": llm.identifier,
                            "output": [*reasoning, {"type": "message", "content": result.non_reasoning_content}],
                            "stats": stats}
    if response_id is not None:
        body["response_id"] = response_id
    return body


def _store(state: ServerState, chat: StoredChat, result: Any) -> str:
    response_id = "resp_" + secrets.token_hex(16)
    answer = {"role": "assistant", "content": result.non_reasoning_content}  # the history keeps only the answer
    state.responses[response_id] = StoredChat([*chat.messages, answer],
                                              [*chat.tokens, result.stats.predicted_tokens_count])
    while len(state.responses) > STORED_RESPONSES:
        state.responses.popitem(last=False)
    return response_id



@endpoint
async def api_chat(request: Request) -> Response:
    """POST /api/v1/chat — LM Studio's native chat, SSE events with ``stream: true``."""
    state = server_state(request)
    req = validate(ChatRequest, await read_json(request, state))
    if req.integrations:
        raise bad_request("integrations (MCP servers, plugins) are not supported by lmsext", param="integrations")
    unsupported("reasoning", req.reasoning, ("off", "on"), "a reasoning effort (low, medium, high)")
    chat = _chat_messages(state, req)
    values = {k: getattr(req, k) for k in CHAT_PREDICTION_FIELDS}
    values["enable_thinking"] = {"off": False, "on": True}.get(req.reasoning or "")  # templates that take it
    if values["max_output_tokens"] is None:
        values["max_output_tokens"] = state.default_max_tokens
    config = prediction_config(values, CHAT_RENAMES, check=state.client.engine.check_prediction_config)
    jit = {"context_length": req.context_length} if req.context_length is not None else None
    llm, loaded_now = await run_blocking(get_model, state.client, req.model, jit)
    policy = config.context_overflow_policy or "truncateMiddle"

    def make_stream() -> Any:  # in the job's thread, once the instance is ours
        nonlocal chat
        if req.previous_response_id is not None:
            chat = trim_chain(llm, chat, policy)
        return llm.respond_stream(chat.messages, config)

    job, first = await start_job(state, llm, make_stream, request)
    if not req.stream:
        result = await collect(job, first)
        response_id = _store(state, chat, result) if req.store else None
        return JSON(_chat_result(llm, result, loaded_now, response_id))
    return GatedStream(_chat_sse(state, req, llm, loaded_now, chat, job, first), job, "text/event-stream")


def _sse(event: str, data: dict[str, Any]) -> str:
    return f"event: {event}\ndata: {dumps(data)}\n\n"


async def _chat_sse(state: ServerState, req: ChatRequest, llm: Any, loaded_now: bool,
                    chat: StoredChat, job: PredictionJob, first: tuple[str, Any]
                    ) -> AsyncIterator[str]:
    ident = llm.identifier
    yield _sse("chat.start", {"type": "chat.start", "model_instance_id": ident})
    if loaded_now:  # the JIT load finished before the stream opened (so load errors are HTTP errors)
        yield _sse("model_load.start", {"type": "model_load.start", "model_instance_id": ident})
        yield _sse("model_load.progress", {"type": "model_load.progress", "model_instance_id": ident,
                                           "progress": 1.0})
        yield _sse("model_load.end", {"type": "model_load.end", "model_instance_id": ident,
                                      "load_time_seconds": round(llm.load_result.load_time_seconds, 3)})
    yield _sse("prompt_processing.start", {"type": "prompt_processing.start"})
    yield _sse("prompt_processing.end", {"type": "prompt_processing.end"})
    parts: list[str] = []
    events = ChatEvents()
    async for kind, value in job_events(job, first):
        if kind == "fragment":
            if value.reasoning_type == "none":
                parts.append(value.content)
            for event, data in events.fragment(value):
                yield _sse(event, data)
        elif kind == "result":
            for event, data in events.message_end():
                yield _sse(event, data)
            problem = failed(value)
            if problem is not None:
                yield _sse("error", {"type": "error", "error": {"type": problem.type, "message": problem.message}})
            response_id = _store(state, chat, value) if req.store and problem is None else None
            yield _sse("chat.end", {"type": "chat.end",
                                    "result": _chat_result(llm, value, loaded_now, response_id)})
        elif kind == "error":
            err = to_api_error(value)
            for event, data in events.message_end():
                yield _sse(event, data)
            yield _sse("error", {"type": "error", "error": {"type": err.type, "message": err.message,
                                                            "param": err.param}})
            yield _sse("chat.end", {"type": "chat.end", "result": {
                "model_instance_id": ident, "output": [{"type": "message", "content": "".join(parts)}],
                "stats": {}}})

