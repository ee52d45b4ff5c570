"""Checking a structured prediction's output: parse it, check the number bounds the grammar cannot
express, validate it into the user's pydantic class. Engine-neutral: any engine's output goes through it."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from .structured import StructuredSpec, numeric_bounds

def parse_output(content: str, spec: StructuredSpec) -> tuple[Any, str | None]:
    """``(parsed, parse_error)`` of a structured prediction's text; the error is one line or None.

    GBNF output is returned as text. JSON output is parsed, checked with :func:`schema_violation`
    (number bounds the grammar cannot enforce) and, for a pydantic class, validated into it. On an
    error ``parsed`` is the JSON data (None when the text is not complete JSON).
    """
    if spec.type != "json":
        return content, None
    try:
        data = json.loads(content)
    except json.JSONDecodeError as exc:
        return None, f"output is not complete JSON: {exc}"
    if spec.json_schema:
        problem = schema_violation(data, spec.json_schema)
        if problem:
            return data, f"output does not match the JSON schema: {problem}"
    if spec.model_class is not None:
        try:
            return spec.model_class.model_validate(data), None
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            where = "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in first.get("loc", ()))
            more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
            return data, (f"output does not validate as {spec.model_class.__name__}: {where}: "
                          f"{first.get('msg', 'invalid')}{more}")
        except Exception as exc:  # a model validator of the user's raising something else
            return data, f"output does not validate as {spec.model_class.__name__}: " + \
                " ".join(str(exc).split())
    return data, None


def schema_violation(data: Any, schema: Mapping[str, Any]) -> str | None:
    """The first number in ``data`` outside its schema's bounds, as ``$.path = value is ...``; None if none.

    The grammar enforces the structure and integer bounds; this checks what it cannot express —
    ``minimum``/``maximum``/``exclusiveMinimum``/``exclusiveMaximum`` on non-integer numbers (and,
    as a safety net, on integers) — following ``properties``, ``additionalProperties``, ``items``,
    ``prefixItems``, ``allOf``/``anyOf``/``oneOf`` and local ``$ref``s.
    """
    return _violation(data, schema, schema, "$", 0)


def _violation(value: Any, schema: Any, root: Mapping[str, Any], path: str, depth: int) -> str | None:
    if not isinstance(schema, Mapping) or depth > 64:
        return None
    ref = schema.get("$ref")
    if isinstance(ref, str):
        target = _local_ref(root, ref)
        if target is not None:
            found = _violation(value, target, root, path, depth + 1)
            if found:
                return found
    for sub in schema.get("allOf") or ():
        found = _violation(value, sub, root, path, depth + 1)
        if found:
            return found
    for word in ("anyOf", "oneOf"):
        options = schema.get(word)
        if options:
            typed = [sub for sub in options if _type_fits(value, sub)]
            found = [_violation(value, sub, root, path, depth + 1) for sub in typed]
            if found and all(found):  # every branch of the value's type puts it out of bounds
                return found[0]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        found = _bound_violation(value, schema, path)
        if found:
            return found
    elif isinstance(value, dict):
        props = schema.get("properties") if isinstance(schema.get("properties"), Mapping) else {}
        extra = schema.get("additionalProperties")
        for name, item in value.items():
            sub = props.get(name, extra if name not in props else None)
            found = _violation(item, sub, root, f"{path}.{name}", depth + 1)
            if found:
                return found
    elif isinstance(value, list):
        prefix = schema.get("prefixItems")
        items = schema.get("items")
        if isinstance(items, list):  # draft-07 tuple form
            prefix, items = items, schema.get("additionalItems")
        prefix = prefix if isinstance(prefix, list) else []
        for i, item in enumerate(value):
            sub = prefix[i] if i < len(prefix) else items
            found = _violation(item, sub, root, f"{path}[{i}]", depth + 1)
            if found:
                return found
    return None


def _bound_violation(value: int | float, schema: Mapping[str, Any], path: str) -> str | None:
    lower, upper = numeric_bounds(schema)
    if lower is not None:
        bound, exclusive = lower
        if value < bound or (exclusive and value == bound):
            return f"{path} = {value!r} is {'not above' if exclusive else 'below'} the " \
                   f"{'exclusiveMinimum' if exclusive else 'minimum'} {bound!r}"
    if upper is not None:
        bound, exclusive = upper
        if value > bound or (exclusive and value == bound):
            return f"{path} = {value!r} is {'not below' if exclusive else 'above'} the " \
                   f"{'exclusiveMaximum' if exclusive else 'maximum'} {bound!r}"
    return None


def _type_fits(value: Any, schema: Any) -> bool:
    """Whether ``value`` is of a type ``schema`` allows (a schema without ``type`` allows any)."""
    kind = schema.get("type") if isinstance(schema, Mapping) else None
    if kind is None:
        return True
    kinds = kind if isinstance(kind, list) else [kind]
    if isinstance(value, bool):
        return "boolean" in kinds
    if isinstance(value, int):
        return "integer" in kinds or "number" in kinds
    if isinstance(value, float):
        return "number" in kinds or ("integer" in kinds and value.is_integer())
    names = {str: "string", dict: "object", list: "array", type(None): "null"}
    return names.get(type(value)) in kinds


def _local_ref(root: Mapping[str, Any], ref: str) -> Any:
    """The part of ``root`` a ``#/...`` JSON pointer names, or None."""
    if not ref.startswith("#"):
        return None
    node: Any = root
    for part in ref[1:].split("/")[1:] if ref != "#" else []:
        part = part.replace("~1", "/").replace("~0", "~")
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    return node
