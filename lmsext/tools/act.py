"""``act()``: LM Studio's multi-round tool-use loop on a loaded model.

Each round predicts with the tools offered (``rawTools``), parses the calls from the reply, runs them
and appends the assistant's message (with its ``tool_calls``) and one ``tool`` message per result to
the chat, then predicts again — until a round makes no call, or the round limit (the last round
offers no tools, as LM Studio's SDK does, so it ends with an answer). A tool that raises, a call with
arguments its JSON schema refuses, or a call of a tool without an implementation gives the model an
``Error: …`` result text instead; nothing raises into the kernel but a KeyboardInterrupt.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..chat import Chat
from ..config import PredictionConfig
from ..errors import ConfigError, PredictionError
from ..results import PredictionResult
from .definitions import Tool, as_tools
from .parsing import ToolCallRequest, parse_tool_calls

if TYPE_CHECKING:
    from ..llm import LLM

MessageCallback = Callable[[dict[str, Any]], Any]


@dataclass
class PredictionRoundResult(PredictionResult):
    """A :class:`PredictionResult` of one round of :func:`act`, with its ``round_index``."""

    round_index: int = 0

    @classmethod
    def from_result(cls, result: PredictionResult, round_index: int) -> "PredictionRoundResult":
        """The round's result from a prediction's."""
        values = {f.name: getattr(result, f.name) for f in dataclasses.fields(result) if f.init}
        return cls(round_index=round_index, **values)


@dataclass(frozen=True)
class ToolCallOutcome:
    """One call of one round: what was asked, the result text the model got, and whether it failed."""

    round_index: int
    request: ToolCallRequest
    result: str
    error: bool
    seconds: float


@dataclass(frozen=True)
class ActResult:
    """LM Studio's ``ActResult`` (``rounds``, ``total_time_seconds``), plus the final ``chat`` and every
    tool call's outcome."""

    rounds: int
    total_time_seconds: float
    chat: Chat = field(default_factory=Chat)
    tool_calls: list[ToolCallOutcome] = field(default_factory=list)


def run_tool_call(call: ToolCallRequest, tools: dict[str, Tool]) -> tuple[str, bool]:
    """``(result text, failed)`` of one call: checked against the tool's schema, then run."""
    tool = tools.get(call.name)
    if tool is None:
        return f"Error: no tool is named {call.name!r}", True
    problem = tool.argument_errors(call.arguments)
    if problem is not None:
        return f"Error: invalid arguments for {call.name}: {problem}", True
    if tool.implementation is None:
        return f"Error: tool {call.name!r} has no implementation in this kernel", True
    try:
        value = tool.implementation(**call.arguments)
    except (Exception, SystemExit) as exc:  # the model gets the error; the kernel goes on
        return f"Error: {call.name} raised {type(exc).__name__}: {exc}", True
    if isinstance(value, str):
        return value, False
    try:
        return json.dumps(value, ensure_ascii=False, default=str), False
    except (TypeError, ValueError):
        return str(value), False


def act(model: "LLM", chat: Any, tools: Iterable[Any], *, max_prediction_rounds: int | None = None,
        config: Any = None, on_message: MessageCallback | None = None,
        on_first_token: Callable[[int], Any] | None = None,
        on_prediction_fragment: Callable[[Any, int], Any] | None = None,
        on_round_start: Callable[[int], Any] | None = None, on_round_end: Callable[[int], Any] | None = None,
        on_prediction_completed: Callable[[PredictionRoundResult], Any] | None = None,
        on_tool_call: Callable[[ToolCallOutcome], Any] | None = None,
        handle_invalid_tool_request: Callable[[PredictionError, ToolCallRequest], str | None] | None = None
        ) -> ActResult:
    """Run the tool-use loop of ``model`` on ``chat`` (see the module docstring and :meth:`LLM.act`).

    ``handle_invalid_tool_request(error, request)`` (LM Studio's SDK hook) sees each failed call; a string it
    returns replaces the result text the model gets (None keeps lmsext's ``Error: …``)."""
    start = time.perf_counter()
    _check_rounds(max_prediction_rounds)
    agent_chat = Chat.from_history(chat)
    toolset = as_tools(tools)
    base = PredictionConfig.parse(config)
    force = bool(base.raw_tools and base.raw_tools.force)
    if force and max_prediction_rounds is None:
        raise ConfigError("rawTools.force makes every round call a tool: give max_prediction_rounds",
                          key="max_prediction_rounds")
    offered = base.merged({"rawTools": {"type": "toolArray", "tools": [t.definition for t in toolset],
                                        "force": force or None}})
    final = base.merged({"rawTools": {"type": "none"}})
    by_name = {t.name: t for t in toolset}
    outcomes: list[ToolCallOutcome] = []
    round_index = 0
    while True:
        last = max_prediction_rounds is not None and round_index == max_prediction_rounds - 1
        _call(on_round_start, round_index)
        result = model.respond(
            agent_chat, final if last or not toolset else offered,
            on_first_token=None if on_first_token is None else (lambda i=round_index: on_first_token(i)),
            on_prediction_fragment=None if on_prediction_fragment is None else (
                lambda fragment, i=round_index: on_prediction_fragment(fragment, i)))
        _call(on_prediction_completed, PredictionRoundResult.from_result(result, round_index))
        calls = list(result.tool_calls or [])
        if calls:
            text = parse_tool_calls(result.content, list(by_name)).content
            agent_chat.add_assistant_response(text, tool_calls=[c.to_template() for c in calls])
            _call(on_message, agent_chat.messages[-1])
            for call in calls:
                outcome = _run_call(round_index, call, by_name, handle_invalid_tool_request)
                outcomes.append(outcome)
                agent_chat.add_tool_result(outcome.result, tool_call_id=call.id, name=call.name)
                _call(on_tool_call, outcome)
                _call(on_message, agent_chat.messages[-1])
        else:
            agent_chat.add_assistant_response(result.content)
            _call(on_message, agent_chat.messages[-1])
        _call(on_round_end, round_index)
        round_index += 1
        if not calls or last:
            break
    return ActResult(rounds=round_index, total_time_seconds=time.perf_counter() - start, chat=agent_chat,
                     tool_calls=outcomes)


def _check_rounds(max_prediction_rounds: Any) -> None:
    if max_prediction_rounds is not None and (isinstance(max_prediction_rounds, bool) or not isinstance(
            max_prediction_rounds, int) or max_prediction_rounds < 1):
        raise ConfigError(f"max_prediction_rounds={max_prediction_rounds!r}: must be an integer >= 1",
                          key="max_prediction_rounds")


def _run_call(round_index: int, call: ToolCallRequest, by_name: dict[str, Tool],
              handler: Callable[[PredictionError, ToolCallRequest], str | None] | None) -> ToolCallOutcome:
    """Run one call; a failure's text may be replaced by LM Studio's ``handle_invalid_tool_request`` hook."""
    began = time.perf_counter()
    content, failed = run_tool_call(call, by_name)
    if failed and handler is not None:
        override = handler(PredictionError(content), call)
        content = content if override is None else str(override)
    return ToolCallOutcome(round_index, call, content, failed, time.perf_counter() - began)


def _call(callback: Callable[..., Any] | None, *args: Any) -> None:
    if callback is not None:
        callback(*args)
