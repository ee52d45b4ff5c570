"""Tools with their implementations: a :class:`Tool` from a Python function or a ToolDefinition.

``tool_from_function(f)`` reads the name, the docstring (first paragraph = description) and the
signature: each parameter's type hint and default become the JSON schema of ``parameters`` through
pydantic (``create_model(...).model_json_schema()``), so ``int``, ``float``, ``str``, ``bool``,
``list[int]``, ``Literal[...]``, ``Optional``, enums and pydantic models all work. Arguments the model
sends are validated against that schema with ``jsonschema`` before the function runs.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import jsonschema
from pydantic import ConfigDict, create_model

from ..config.tools import ToolDefinition
from ..errors import ConfigError

TOOLS_ALLOWED = ("Python functions, Tool objects, ToolDefinitions, {'type': 'function', 'function': {...}} dicts "
                 "or LM Studio SDK ToolFunctionDefs ({'name', 'description', 'parameters': {'a': int}, 'implementation'})")
_SDK_KEYS = ("name", "description", "parameters", "implementation")


@dataclass(frozen=True)
class Tool:
    """A tool the model may call: its :class:`ToolDefinition` and (optionally) the Python function run."""

    definition: ToolDefinition
    implementation: Callable[..., Any] | None = None

    @property
    def name(self) -> str:
        """The name the model calls it by."""
        return self.definition.name

    @property
    def schema(self) -> dict[str, Any]:
        """The JSON schema of the arguments (an empty object when none was given)."""
        return self.definition.function.parameters or {"type": "object", "properties": {}}

    def argument_errors(self, arguments: Any) -> str | None:
        """One line naming what is wrong with ``arguments`` under the schema, or None when they fit."""
        if not isinstance(arguments, dict):
            return f"arguments must be a JSON object, got {type(arguments).__name__}"
        validator = jsonschema.validators.validator_for(self.schema)(self.schema)
        error = jsonschema.exceptions.best_match(validator.iter_errors(arguments))
        if error is None:
            return None
        where = "/".join(str(p) for p in error.absolute_path)
        return f"{where + ': ' if where else ''}{error.message}"


def tool_from_function(function: Callable[..., Any], *, name: str | None = None,
                       description: str | None = None) -> Tool:
    """A :class:`Tool` from a Python function: its name, docstring and type-hinted signature."""
    if not callable(function):
        raise ConfigError(f"a tool must be callable, got {type(function).__name__}", key="tools")
    name = name or getattr(function, "__name__", None)
    if description is None:
        description = inspect.getdoc(function) or ""
        description = description.split("\n\n")[0].replace("\n", " ").strip()
    try:
        signature = inspect.signature(function)
        hints = typing.get_type_hints(function, include_extras=True)
    except (TypeError, ValueError, NameError) as exc:
        raise ConfigError(f"tool {name!r}: cannot read its signature ({exc})", key="tools") from None
    fields: dict[str, Any] = {}
    for param in signature.parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        default = ... if param.default is param.empty else param.default
        fields[param.name] = (hints.get(param.name, Any), default)
    return _tool_of_fields(function, name, description, fields)


def tool_from_sdk_definition(spec: Any) -> Tool:
    """A :class:`Tool` from LM Studio's SDK ``ToolFunctionDef`` (or its dict): ``parameters`` maps each name to a
    type, or to ``{"type": type, "default": value}``."""
    get = spec.get if isinstance(spec, Mapping) else (lambda key, default=None: getattr(spec, key, default))
    parameters = get("parameters") or {}
    if not isinstance(parameters, Mapping):
        raise ConfigError(f"tool {get('name')!r}: parameters must map names to types", key="tools")
    fields = {}
    for key, value in parameters.items():
        if isinstance(value, Mapping):
            fields[key] = (value.get("type", Any), value.get("default", ...))
        else:
            fields[key] = (value, ...)
    return _tool_of_fields(get("implementation"), get("name"), get("description") or "", fields)


def _tool_of_fields(function: Callable[..., Any] | None, name: Any, description: str,
                    fields: dict[str, Any]) -> Tool:
    if function is not None and not callable(function):
        raise ConfigError(f"tool {name!r}: the implementation must be callable", key="tools")
    if not isinstance(name, str):
        raise ConfigError(f"a tool needs a name, got {name!r}", key="tools")
    try:
        model = create_model(f"{name}_arguments", __config__=ConfigDict(extra="forbid"), **fields)
        schema = _strip_titles(model.model_json_schema())
    except Exception as exc:  # pydantic cannot make a schema of some hint
        raise ConfigError(f"tool {name!r}: no JSON schema for its parameters ({str(exc).splitlines()[0]})",
                          key="tools") from None
    schema.setdefault("properties", {})
    definition = ToolDefinition.model_validate(
        {"type": "function", "function": {"name": name, "description": description or None, "parameters": schema}})
    return Tool(definition, function)


def as_tools(items: Iterable[Any] | None) -> list[Tool]:
    """:class:`Tool` objects of ``items`` (see :data:`TOOLS_ALLOWED`); two tools of one name are refused."""
    if items is None:
        return []
    if isinstance(items, (str, bytes, Mapping)) or not isinstance(items, Iterable):
        raise ConfigError(f"tools must be a list of {TOOLS_ALLOWED}, got {type(items).__name__}", key="tools")
    tools = [_as_tool(item) for item in items]
    names = [t.name for t in tools]
    twice = next((n for n in names if names.count(n) > 1), None)
    if twice is not None:
        raise ConfigError(f"tools: two tools are named {twice!r}", key="tools", value=twice)
    return tools


def _as_tool(item: Any) -> Tool:
    if isinstance(item, Tool):
        return item
    if isinstance(item, ToolDefinition):
        return Tool(item)
    if (isinstance(item, Mapping) and "implementation" in item) or all(hasattr(item, k) for k in _SDK_KEYS):
        return tool_from_sdk_definition(item)
    if isinstance(item, Mapping):
        return Tool(ToolDefinition.model_validate(item))
    if callable(item):
        return tool_from_function(item)
    raise ConfigError(f"tools: {type(item).__name__} is not a tool ({TOOLS_ALLOWED})", key="tools")


def _strip_titles(schema: Any) -> Any:
    """pydantic's schema without the ``title`` keys it adds (noise in the prompt); property names kept."""
    if isinstance(schema, dict):
        return {k: (_strip_titles(v) if k != "properties" else {p: _strip_titles(s) for p, s in v.items()})
                for k, v in schema.items() if k != "title"}
    if isinstance(schema, list):
        return [_strip_titles(v) for v in schema]
    return schema
