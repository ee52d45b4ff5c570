"""Forced tool calls: ``rawTools.force`` turned into a JSON-schema constraint on the output.

The schema admits exactly one call ``{"name": <a tool's name>, "arguments": <that tool's parameters>}``
(one branch per tool), and the existing structured-output support turns it into a llama.cpp
grammar (or a server's ``json_schema`` response format), so even the embedded 260K-parameter model
writes a well-formed call. The output is the Llama 3.x JSON form, which :mod:`.parsing` reads.
"""

from __future__ import annotations

import copy
from typing import Any

from ..config import PredictionConfig
from ..config.tools import ToolDefinition
from ..errors import ConfigError


def forced_call_schema(tools: list[ToolDefinition]) -> dict[str, Any]:
    """The JSON schema of one call of one of ``tools``."""
    branches = []
    for tool in tools:
        parameters = copy.deepcopy(tool.function.parameters or {"type": "object", "properties": {}})
        branches.append({"type": "object", "properties": {"name": {"const": tool.name}, "arguments": parameters},
                         "required": ["name", "arguments"], "additionalProperties": False})
    return branches[0] if len(branches) == 1 else {"anyOf": branches}


def tool_config(config: PredictionConfig) -> PredictionConfig:
    """``config`` ready to predict: with ``rawTools.force`` and tools, the forced-call constraint is added
    as ``structured`` (refused next to a ``structured`` of the user's own)."""
    raw = config.raw_tools
    if raw is None or not raw.force or not raw.active:
        return config
    if config.structured is not None and config.structured.type != "none":
        raise ConfigError("rawTools.force constrains the output to a tool call: remove structured, or force",
                          key="raw_tools")
    return config.merged({"structured": {"type": "json", "jsonSchema": forced_call_schema(raw.active)}})


def template_tool_list(config: PredictionConfig) -> list[dict[str, Any]] | None:
    """The tools a chat template gets as its ``tools`` variable (None when the prediction offers none)."""
    raw = config.raw_tools
    return [t.to_dict() for t in raw.active] if raw is not None and raw.active else None
