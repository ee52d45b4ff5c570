"""A bound on how deeply settings may nest: deeper values (or ones that contain themselves) get one line.

Python's JSON parser, pydantic, the JSON-schema converter and the schema checks all recurse once per
level; a 2,000-level ``jsonSchema`` or a dict that contains itself would end in ``RecursionError``
somewhere inside them. :func:`check_nesting` walks the value first, at most :data:`MAX_NESTING`
levels deep, and names where it went too deep.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import ConfigError

MAX_NESTING = 100
"""Most levels of dicts and lists a setting may nest (real JSON schemas use well under 30)."""


def check_nesting(value: Any, key: str, limit: int = MAX_NESTING) -> None:
    """Raise ConfigError if ``value`` nests dicts/lists deeper than ``limit`` levels or contains itself.

    ``key`` names ``value`` in the message (``structured.jsonSchema``, or ``prediction settings`` for
    a whole config, whose first key then names the place instead).
    """
    _walk(value, key, [], limit, [])


def _where(key: str, parts: list[str]) -> str:
    if not parts:
        return key
    if key.endswith(" settings"):  # a whole config: the setting's own name comes first
        key, parts = parts[0], parts[1:]
    shown = "".join(p if p.startswith("[") else f".{p}" for p in parts[:3])
    return f"{key}{shown}{'…' if len(parts) > 3 else ''}"


def _walk(value: Any, key: str, parts: list[str], budget: int, ancestors: list[int]) -> None:
    if isinstance(value, Mapping):
        children = list(value.items())
    elif isinstance(value, (list, tuple)):
        children = list(enumerate(value))
    else:
        return
    if id(value) in ancestors:
        raise ConfigError(f"{_where(key, parts)}: contains itself (a dict or list nested in itself)", key=key,
                          allowed="a value that does not contain itself")
    if budget <= 0:
        raise ConfigError(f"{_where(key, parts)}: nested more than {MAX_NESTING} levels deep", key=key,
                          allowed=f"at most {MAX_NESTING} levels of nesting")
    ancestors.append(id(value))
    for name, child in children:
        parts.append(f"[{name}]" if isinstance(name, int) else str(name)[:40])
        _walk(child, key, parts, budget - 1, ancestors)
        parts.pop()
    ancestors.pop()
