"""Tool calls parsed from a model's output, in the formats of the major chat-template families.

* Qwen / Hermes (ChatML): ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>`` (one or more;
  the closing tag may be missing when the output stopped on it as a ``toolCallStopStrings`` entry).
* Llama 3.x: the whole reply is a JSON object ``{"name": ..., "parameters": {...}}`` (``arguments``
  also accepted, as is a list of them), optionally after ``<|python_tag|>``; lmsext's forced-grammar
  mode writes this form.
* Mistral: ``[TOOL_CALLS][{"name": ..., "arguments": {...}}, ...]`` (v3) or
  ``[TOOL_CALLS]name[ARGS]{...}`` (v11+).

A call that is not well formed (bad JSON, no name, a name no tool has) is left in the text and the
problem becomes a note: the reply is then an ordinary answer, as LM Studio treats it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

_HERMES = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.DOTALL)
_MISTRAL = "[TOOL_CALLS]"
_MISTRAL_ARGS = re.compile(r"\s*([A-Za-z0-9_.-]{1,64})\s*\[ARGS\]")
_PYTHON_TAG = "<|python_tag|>"


@dataclass(frozen=True)
class ToolCallRequest:
    """One call the model asked for (LM Studio's ``ToolCallRequest``: type, name, id, arguments)."""

    name: str
    arguments: dict[str, Any]
    id: str = ""
    type: str = "function"

    def to_dict(self) -> dict[str, Any]:
        """LM Studio's form."""
        return {"type": self.type, "name": self.name, "id": self.id, "arguments": self.arguments}

    def to_openai(self) -> dict[str, Any]:
        """OpenAI's ``tool_calls`` entry (arguments as a JSON string)."""
        return {"id": self.id, "type": "function",
                "function": {"name": self.name, "arguments": json.dumps(self.arguments, ensure_ascii=False)}}

    def to_template(self) -> dict[str, Any]:
        """The ``tool_calls`` entry chat templates take (arguments as a dict, as Qwen's and Llama's do)."""
        return {"id": self.id, "type": "function", "function": {"name": self.name, "arguments": self.arguments}}


@dataclass
class ParsedToolCalls:
    """What :func:`parse_tool_calls` found: the calls, the text outside them, and notes on rejected ones."""

    calls: list[ToolCallRequest] = field(default_factory=list)
    content: str = ""
    format: str | None = None
    notes: list[str] = field(default_factory=list)


def parse_tool_calls(text: str, names: list[str] | None = None, *, id_prefix: str = "call") -> ParsedToolCalls:
    """The tool calls in ``text`` (any supported format); ``names`` (when given) are the tools that exist."""
    found = ParsedToolCalls(content=text)
    for fmt, parser in (("hermes", _hermes), ("mistral", _mistral), ("llama3", _llama3)):
        raw = parser(text)
        if raw is None:
            continue
        items, rest = raw
        calls: list[ToolCallRequest] = []
        for item in items:
            call, problem = _to_call(item, names, f"{id_prefix}_{len(calls)}")
            if problem is not None:
                found.notes.append(f"{fmt} tool call ignored: {problem}")
                return found
            calls.append(call)
        found.calls, found.content, found.format = calls, rest, fmt
        return found
    return found


def _hermes(text: str) -> tuple[list[Any], str] | None:
    if "<tool_call>" not in text:
        return None
    items = [_loads(body) for body in _HERMES.findall(text)]
    return items, _HERMES.sub("", text).strip()


def _mistral(text: str) -> tuple[list[Any], str] | None:
    start = text.find(_MISTRAL)
    if start < 0:
        return None
    body = text[start + len(_MISTRAL):]
    items: list[Any] = []
    while (match := _MISTRAL_ARGS.match(body)) is not None:  # v11: name[ARGS]{...} repeated
        args, end = _raw_decode(body, match.end())
        items.append({"name": match.group(1), "arguments": args})
        body = body[end:]
        if not body.lstrip().startswith(_MISTRAL):
            break
        body = body.lstrip()[len(_MISTRAL):]
    if not items:
        value, _ = _raw_decode(body, 0)
        items = value if isinstance(value, list) else [value]
    return items, text[:start].strip()


def _llama3(text: str) -> tuple[list[Any], str] | None:
    body = text.strip()
    if body.startswith(_PYTHON_TAG):
        body = body[len(_PYTHON_TAG):].strip()
    if not body.startswith(("{", "[")):
        return None
    try:
        value = json.loads(body)
    except ValueError:
        return None  # prose that starts with a brace: not a call
    items = value if isinstance(value, list) else [value]
    if not items or not all(isinstance(v, dict) and "name" in v for v in items):
        return None
    return items, ""


_BAD = object()


def _loads(body: str) -> Any:
    try:
        return json.loads(body)
    except ValueError as exc:
        return (_BAD, f"not JSON ({exc.msg} at character {exc.pos})")


def _raw_decode(body: str, at: int) -> tuple[Any, int]:
    while at < len(body) and body[at].isspace():
        at += 1
    try:
        return json.JSONDecoder().raw_decode(body, at)
    except ValueError as exc:
        return (_BAD, f"not JSON ({exc.msg} at character {exc.pos})"), len(body)


def _to_call(item: Any, names: list[str] | None, call_id: str) -> tuple[ToolCallRequest, None] | tuple[None, str]:
    if isinstance(item, tuple) and item and item[0] is _BAD:
        return None, item[1]
    if isinstance(item, dict) and isinstance(item.get("function"), dict):  # OpenAI-shaped
        item = item["function"]
    if isinstance(item, dict) and isinstance(item.get("arguments"), tuple):
        return None, item["arguments"][1]
    if not isinstance(item, dict) or not isinstance(item.get("name"), str):
        return None, f"no tool name in {json.dumps(item, default=str)[:80]}"
    name = item["name"]
    if names is not None and name not in names:
        return None, f"no tool is named {name!r} (tools: {', '.join(names) or 'none'})"
    args = item.get("arguments", item.get("parameters", {}))
    if isinstance(args, str):  # OpenAI style: arguments as a JSON string
        try:
            args = json.loads(args) if args.strip() else {}
        except ValueError:
            pass  # left a string: the schema check reports it to the model
    return ToolCallRequest(name=name, arguments=args, id=str(item.get("id") or call_id)), None
