"""``rawTools``: the tools a prediction may call, in LM Studio's ``LlmToolUseSetting`` shape.

``{"type": "none"}`` (no tools) or ``{"type": "toolArray", "tools": [...], "force": bool}``, each tool
OpenAI's / LM Studio's ``LlmToolFunction``::

    {"type": "function", "function": {"name": "add", "description": "Add two numbers",
                                      "parameters": {"type": "object", "properties": {...}, "required": [...]}}}

``parameters`` is a JSON schema of an object (checked with ``jsonschema``). ``force`` (LM Studio's
field) makes lmsext constrain the output to one well-formed call of one of the tools (a grammar from
the tools' schemas), so even a tiny model calls a tool. Every problem is one ConfigError naming the key.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from typing import Any, Literal

import jsonschema
from pydantic import model_validator

from lmsext.errors import ConfigError

from .error_messages import bad_value
from .settings_base import ValidatedModel, check_style

RAW_TOOLS_ALLOWED = ("{'type': 'toolArray', 'tools': [{'type': 'function', 'function': {...}}], 'force': bool} "
                     "or {'type': 'none'}")
"""What the ``rawTools`` prediction setting accepts, as quoted in error messages."""
TOOL_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
"""A tool name (OpenAI's rule: letters, digits, ``_``, ``-``, ``.``; at most 64)."""
MAX_TOOLS = 128
"""Most tools in one request (OpenAI's limit)."""
_FUNCTION_KEYS = ("name", "description", "parameters")


class ToolFunctionDefinition(ValidatedModel):
    """One function a model may call: ``name``, ``description`` and the JSON schema of its ``parameters``."""

    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None

    def to_dict(self, style: str = "snake", *, only_set: bool = True) -> dict[str, Any]:
        """OpenAI's / LM Studio's form (the same in both styles)."""
        out: dict[str, Any] = {"name": self.name}
        if self.description is not None:
            out["description"] = self.description
        if self.parameters is not None:
            out["parameters"] = copy.deepcopy(self.parameters)
        return out


class ToolDefinition(ValidatedModel):
    """A tool as LM Studio's ``LlmToolFunction``: ``{"type": "function", "function": {...}}``."""

    type: Literal["function"] = "function"
    function: ToolFunctionDefinition

    @model_validator(mode="before")
    @classmethod
    def normalise(cls, data: Any) -> Any:
        """Check the shape, naming the key of any problem."""
        if isinstance(data, cls):
            return data
        return {"type": "function", "function": check_tool(data, "tool")}

    @property
    def name(self) -> str:
        """The function's name."""
        return self.function.name

    def to_dict(self, style: str = "snake", *, only_set: bool = True) -> dict[str, Any]:
        """``{"type": "function", "function": {...}}`` (the same in both styles)."""
        return {"type": "function", "function": self.function.to_dict(style)}


class RawToolsSetting(ValidatedModel):
    """The ``rawTools`` prediction setting: ``type`` ``"none"`` or ``"toolArray"`` with ``tools``, ``force``."""

    type: Literal["none", "toolArray"]
    tools: list[ToolDefinition] = []
    force: bool | None = None

    @model_validator(mode="before")
    @classmethod
    def normalise(cls, data: Any) -> Any:
        """Check LM Studio's shape; a bare list of tools means ``toolArray`` of them."""
        if isinstance(data, cls):
            return data
        if isinstance(data, (list, tuple)):
            data = {"type": "toolArray", "tools": list(data)}
        if not isinstance(data, Mapping) or data.get("type") not in ("none", "toolArray"):
            raise bad_value("rawTools", data, RAW_TOOLS_ALLOWED)
        unknown = [k for k in data if k not in ("type", "tools", "force")]
        if unknown:
            raise ConfigError(f"rawTools: unknown key {unknown[0]!r} (valid: type, tools, force)", key="raw_tools")
        force = data.get("force")
        if force is not None and not isinstance(force, bool):
            raise bad_value("rawTools.force", force, "true or false")
        tools = data.get("tools") or []
        if data["type"] == "none":
            if tools or force:
                raise ConfigError("rawTools: type 'none' takes no tools and no force", key="raw_tools")
            return {"type": "none"}
        if not isinstance(tools, (list, tuple)) or len(tools) > MAX_TOOLS:
            raise bad_value("rawTools.tools", tools, f"a list of at most {MAX_TOOLS} tools")
        checked = [ToolDefinition(**{"function": check_tool(t, f"rawTools.tools[{i}]")}) for i, t in enumerate(tools)]
        names = [t.name for t in checked]
        twice = next((n for n in names if names.count(n) > 1), None)
        if twice is not None:
            raise ConfigError(f"rawTools.tools: two tools are named {twice!r}", key="raw_tools", value=twice)
        return {"type": "toolArray", "tools": checked, "force": force}

    @property
    def active(self) -> list[ToolDefinition]:
        """The tools offered (none for ``type: "none"``)."""
        return list(self.tools) if self.type == "toolArray" else []

    def to_dict(self, style: str = "snake", *, only_set: bool = True) -> dict[str, Any]:
        """LM Studio's form (the same in both styles)."""
        check_style(style)
        if self.type == "none":
            return {"type": "none"}
        out: dict[str, Any] = {"type": "toolArray", "tools": [t.to_dict(style) for t in self.tools]}
        if self.force is not None:
            out["force"] = self.force
        return out


def check_tool(tool: Any, key: str) -> dict[str, Any]:
    """The ``function`` dict of one tool (``{"type": "function", "function": {...}}``, or the function
    itself), checked: name, description and a JSON schema of an object as ``parameters``."""
    if isinstance(tool, ToolDefinition):
        return tool.function.to_dict()
    if isinstance(tool, ToolFunctionDefinition):
        return tool.to_dict()
    if isinstance(tool, Mapping) and "function" in tool:
        if tool.get("type", "function") != "function":
            raise bad_value(f"{key}.type", tool.get("type"), "'function'")
        extra = [k for k in tool if k not in ("type", "function")]
        if extra:
            raise ConfigError(f"{key}: unknown key {extra[0]!r} (valid: type, function)", key=key)
        key, tool = f"{key}.function", tool["function"]
    if not isinstance(tool, Mapping):
        raise bad_value(key, tool, "{'type': 'function', 'function': {'name': ..., 'parameters': {...}}}")
    extra = [k for k in tool if k not in _FUNCTION_KEYS]
    if extra:
        raise ConfigError(f"{key}: unknown key {extra[0]!r} (valid: {', '.join(_FUNCTION_KEYS)})", key=key)
    name = tool.get("name")
    if not isinstance(name, str) or not TOOL_NAME.match(name):
        raise bad_value(f"{key}.name", name, "1 to 64 letters, digits, '_', '-' or '.'")
    description = tool.get("description")
    if description is not None and not isinstance(description, str):
        raise bad_value(f"{key}.description", description, "a string")
    out: dict[str, Any] = {"name": name, "description": description}
    if tool.get("parameters") is not None:
        out["parameters"] = check_parameters(tool["parameters"], f"{key}.parameters")
    return out


def check_parameters(schema: Any, key: str) -> dict[str, Any]:
    """A tool's ``parameters``: a valid JSON schema (jsonschema's metaschema check) of an object."""
    if not isinstance(schema, Mapping) or schema.get("type", "object") != "object":
        raise bad_value(key, schema, "a JSON schema of an object ({'type': 'object', 'properties': {...}})")
    schema = copy.deepcopy(dict(schema))
    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as exc:
        where = ".".join(str(p) for p in exc.absolute_path)
        raise ConfigError(f"{key}{'.' + where if where else ''}: not a valid JSON schema: {exc.message}",
                          key=key) from None
    return schema
