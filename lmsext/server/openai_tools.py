"""Tool calling on the OpenAI chat endpoint: ``tools`` / ``tool_choice`` in, ``tool_calls`` out.

* ``tools`` (OpenAI's ``[{"type": "function", "function": {...}}]``) become the ``rawTools`` setting;
  ``tool_choice``: ``"auto"`` (default) offers them, ``"none"`` offers none, ``"required"`` or
  ``{"type": "function", "function": {"name": ...}}`` force one call (of that tool) with a grammar.
* Messages: an assistant's ``tool_calls`` (arguments as a JSON string) and ``tool`` messages with
  their ``tool_call_id`` go to the chat template as the templates expect them.
* The answer: ``message.tool_calls`` with ``finish_reason: "tool_calls"``; when streaming with tools,
  the reply is held until it is complete (a call cannot be told from text before), then sent as one
  content delta (text outside the calls, if any) and one ``tool_calls`` delta.
"""

from __future__ import annotations

import json
from typing import Any

from .errors import ApiError, bad_request

TOOL_CHOICES = ("none", "auto", "required")


def tool_settings(tools: list[Any] | None, tool_choice: Any) -> dict[str, Any] | None:
    """The ``rawTools`` setting of a request (None: no tools offered)."""
    if tool_choice is not None and not isinstance(tool_choice, (str, dict)):
        raise bad_request("tool_choice must be 'none', 'auto', 'required' or {'type': 'function', "
                          "'function': {'name': ...}}", param="tool_choice")
    if isinstance(tool_choice, str) and tool_choice not in TOOL_CHOICES:
        raise bad_request(f"tool_choice={tool_choice!r}: must be 'none', 'auto', 'required' or a function",
                          param="tool_choice")
    if not tools:
        if tool_choice not in (None, "none", "auto"):
            raise bad_request("tool_choice needs tools", param="tool_choice")
        return None
    if tool_choice == "none":
        return None
    if isinstance(tool_choice, dict):
        name = (tool_choice.get("function") or {}).get("name") if tool_choice.get("type") == "function" else None
        chosen = [t for t in tools if isinstance(t, dict) and (t.get("function") or {}).get("name") == name]
        if not isinstance(name, str) or not chosen:
            raise bad_request(f"tool_choice names no tool of the request ({json.dumps(tool_choice)[:80]})",
                              param="tool_choice")
        return {"type": "toolArray", "tools": chosen, "force": True}
    return {"type": "toolArray", "tools": list(tools), "force": True if tool_choice == "required" else None}


def as_tools_error(err: ApiError) -> ApiError:
    """``err`` about ``rawTools`` (the Python API's name) told as the request's ``tools``."""
    if (err.param or "").startswith("raw_tools") or err.message.startswith("rawTools"):
        err.param = "tools"
        if err.message.startswith("rawTools.tools"):
            err.message = "tools" + err.message[len("rawTools.tools"):]
        elif err.message.startswith("rawTools"):
            err.message = "tools" + err.message[len("rawTools"):]
        err.args = (err.message,)
    return err


def template_message(index: int, role: str, text: str, tool_calls: list[Any] | None,
                     tool_call_id: str | None) -> dict[str, Any]:
    """A chat message of an OpenAI message with its tool fields, as chat templates take them."""
    out: dict[str, Any] = {"role": role, "content": text}
    if role == "tool":
        if not tool_call_id:
            raise bad_request("a tool message needs the tool_call_id of the call it answers",
                              param=f"messages[{index}].tool_call_id")
        out["tool_call_id"] = tool_call_id
    if tool_calls:
        if role != "assistant":
            raise bad_request("only assistant messages have tool_calls", param=f"messages[{index}].tool_calls")
        out["tool_calls"] = [_template_call(index, j, call) for j, call in enumerate(tool_calls)]
    return out


def _template_call(index: int, j: int, call: Any) -> dict[str, Any]:
    where = f"messages[{index}].tool_calls[{j}]"
    function = call.get("function") if isinstance(call, dict) else None
    if not isinstance(function, dict) or not isinstance(function.get("name"), str):
        raise bad_request("a tool call is {'id', 'type': 'function', 'function': {'name', 'arguments'}}", param=where)
    arguments = function.get("arguments", "{}")
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except ValueError:
            raise bad_request("function.arguments is not JSON", param=f"{where}.function.arguments") from None
    return {"id": str(call.get("id") or f"call_{j}"), "type": "function",
            "function": {"name": function["name"], "arguments": arguments}}


def tool_message(result: Any, text_outside: str) -> dict[str, Any]:
    """The ``message`` of an answer that calls tools."""
    return {"role": "assistant", "content": text_outside or None,
            "tool_calls": [call.to_openai() for call in result.tool_calls]}


def tool_call_deltas(result: Any) -> dict[str, Any]:
    """The streamed ``delta`` carrying every call of ``result``."""
    return {"tool_calls": [{"index": i, **call.to_openai()} for i, call in enumerate(result.tool_calls)]}
