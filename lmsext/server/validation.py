"""Request bodies: the JSON object (400 when malformed, too deep or not Unicode) and pydantic's errors
turned into one 400 line naming the client's field."""

from __future__ import annotations

import difflib
import json
import re
import sys
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ValidationError

from .errors import ApiError, bad_request, short

MAX_DEPTH = 64
"""How deeply a request body may nest objects and arrays (a JSON schema inside it included)."""
_SURROGATE = re.compile("[\ud800-\udfff]")


def _path(link: tuple[Any, ...] | None) -> str:
    """The client's spelling of a path built as linked ``(parent, key)`` pairs."""
    parts: list[Any] = []
    while link is not None:
        link, key = link
        parts.append(key)
    out = ""
    for key in reversed(parts):
        out += f"[{key}]" if isinstance(key, int) else (f".{key}" if out else str(key))
    return out


def _surrogate_in(text: str) -> str | None:
    if text.isascii():
        return None
    m = _SURROGATE.search(text)
    return None if m is None else f"\\u{ord(m.group()):04x}"


def check_tree(data: Any, max_depth: int = MAX_DEPTH) -> None:
    """400 when ``data`` nests deeper than ``max_depth`` or holds a lone surrogate in a key or a string.

    Iterative: it never recurses, whatever the input. A lone surrogate (``"\\ud800"``) is valid JSON
    but not Unicode: no UTF-8 text can hold it, so it is refused here instead of failing later.
    """
    stack: list[tuple[Any, int, Any]] = [(data, 1, None)]
    while stack:
        value, depth, link = stack.pop()
        if isinstance(value, str):
            bad = _surrogate_in(value)
            if bad is not None:
                where = _path(link) or "the request body"
                raise bad_request(f"{where} holds a lone surrogate ({bad}): not valid Unicode text",
                                  param=_path(link) or None)
        elif isinstance(value, (dict, list)):
            if depth > max_depth:
                raise bad_request(f"the request body nests objects and arrays more than {max_depth} levels deep",
                                  param=_path(link) or None)
            if isinstance(value, dict):
                for key, item in value.items():
                    bad = _surrogate_in(key)
                    if bad is not None:
                        where = _path(link) or "the request body"
                        raise bad_request(f"a field name in {where} holds a lone surrogate ({bad}): not valid "
                                          "Unicode text", param=_path(link) or None)
                    stack.append((item, depth + 1, (link, key)))
            else:
                stack.extend((item, depth + 1, (link, i)) for i, item in enumerate(value))


def parse_json_body(raw: bytes) -> dict[str, Any]:
    """The JSON object in ``raw``, or a 400 saying what is wrong with it (one line, whatever ``raw`` holds)."""
    if not raw.strip():
        raise bad_request("the request body is empty: send a JSON object", param=None)
    try:
        data = json.loads(raw.decode("utf-8"))  # UTF-8 only (json.loads would guess UTF-16/32 from bytes)
    except UnicodeDecodeError:
        raise bad_request("the request body is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise bad_request(f"the request body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}")\
            from None
    except RecursionError:
        raise bad_request(f"the request body nests objects and arrays more than {MAX_DEPTH} levels deep") from None
    except ValueError:  # int('9' * 5000): Python's own digit limit for integers
        digits = getattr(sys, "get_int_max_str_digits", lambda: 4300)()
        raise bad_request(f"the request body holds an integer with more than {digits} digits") from None
    if not isinstance(data, dict):
        raise bad_request(f"the request body must be a JSON object, not {type(data).__name__}")
    check_tree(data)
    return data


def validate(model: type[BaseModel], data: Any, prefix: str = "") -> Any:
    """``model.model_validate(data)``, turning the first problem into a 400 that names the field."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise _validation_error(model, exc, data, prefix) from None


def _validation_error(model: type[BaseModel], exc: ValidationError, data: Any, prefix: str) -> ApiError:
    """The 400 for pydantic's errors: the problem that reaches deepest into the data the client sent."""
    best: tuple[tuple[int, int], dict[str, Any], str, Any] | None = None
    rank = {"extra_forbidden": 2, "missing": 1}
    for error in exc.errors(include_url=False):
        path, depth, owner = _walk(model, data, tuple(error["loc"]), prefix)
        key = (depth, rank.get(error["type"], 0))
        if best is None or key > best[0]:
            best = (key, error, path, owner)
    assert best is not None
    _, first, param, owner = best
    if first["type"] == "extra_forbidden":
        name = str(first["loc"][-1])
        fields = list(owner.model_fields) if owner is not None else []
        return bad_request(f"unknown field '{param}'{suggest(name, fields, HINTS)}", param=param)
    if first["type"] == "missing":
        return bad_request(f"'{param}' is required", param=param)
    msg = first["msg"]
    if first["type"] == "value_error" and (first.get("ctx") or {}).get("error") is not None:
        msg = str(first["ctx"]["error"])
    if first["type"] == "union_tag_not_found":
        msg = "needs a 'type' field"
    if first["type"] == "union_tag_invalid":
        msg = f"'type' must be one of {first.get('ctx', {}).get('expected_tags', '')}"
    msg = msg[0].lower() + msg[1:] if msg else "invalid value"
    return bad_request(f"{param}={short(first.get('input'))}: {msg}", param=param or None)


def _walk(model: type[BaseModel], data: Any, loc: tuple[Any, ...], prefix: str
          ) -> tuple[str, int, type[BaseModel] | None]:
    """Map pydantic's ``loc`` (which names union branches) onto the client's data: (path, depth, owner model)."""
    path, depth, value, owner = prefix, 0, data, model
    current: Any = model
    for i, part in enumerate(loc):
        last = i == len(loc) - 1
        if isinstance(part, int) and isinstance(value, list) and 0 <= part < len(value):
            path, value, depth = f"{path}[{part}]", value[part], depth + 1
        elif isinstance(part, str) and isinstance(value, dict) and (
                part in value or (last and _has_field(current, part))):  # a missing field of a model
            path, depth = (f"{path}.{part}" if path else part), depth + 1
            owner = current if isinstance(current, type) else owner
            value = value.get(part)
            fields = current.model_fields if isinstance(current, type) else {}
            current = _model_in(fields[part].annotation) if part in fields else None
        elif isinstance(part, str) and isinstance(current, tuple):  # a union branch: class name or tag
            current = next((m for m in current if part in (m.__name__, _tag(m))), current)
    return path, depth, owner


def _has_field(current: Any, name: str) -> bool:
    """True when the request model(s) ``current`` (a class or a union's tuple) have a field ``name``."""
    models = current if isinstance(current, tuple) else (current,) if isinstance(current, type) else ()
    return any(name in m.model_fields for m in models)


def _tag(model: type[BaseModel]) -> str | None:
    field = model.model_fields.get("type")
    args = getattr(field.annotation, "__args__", ()) if field is not None else ()
    return args[0] if len(args) == 1 and isinstance(args[0], str) else None


def _model_in(annotation: Any) -> Any:
    """The request model(s) inside a field annotation: a class, a tuple of classes (union) or None."""
    import typing
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    found: list[type[BaseModel]] = []
    for arg in typing.get_args(annotation):
        inner = _model_in(arg)
        if isinstance(inner, tuple):
            found += list(inner)
        elif inner is not None:
            found.append(inner)
    if not found:
        return None
    return found[0] if len(found) == 1 else tuple(found)


def suggest(name: str, fields: list[str], hints: Mapping[str, str]) -> str:
    if name in hints and hints[name] in fields:
        return f" — use '{hints[name]}'"
    match = difflib.get_close_matches(name.lower(), fields, n=1, cutoff=0.6)
    if match:
        return f" — did you mean '{match[0]}'?"
    return f" (valid: {', '.join(fields)})" if fields else ""


#: Spellings of the Python API that the REST bodies name differently.
HINTS = {"max_tokens": "max_output_tokens", "maxTokens": "max_output_tokens", "stop_strings": "stop",
         "top_p_sampling": "top_p", "top_k_sampling": "top_k", "min_p_sampling": "min_p",
         "topP": "top_p", "topK": "top_k", "minP": "min_p", "systemPrompt": "system_prompt",
         "contextLength": "context_length", "messages": "input", "prompt": "input",
         "maxOutputTokens": "max_output_tokens", "repeatPenalty": "repeat_penalty"}
