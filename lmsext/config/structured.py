"""StructuredSpec: a structured-output request (JSON schema or GBNF grammar) in one normalised form.

The schema check below is a walk of its own, not ``jsonschema``'s ``check_schema``: users send schemas
of every draft without a ``$schema`` (draft-07 tuple ``items``, draft-4 boolean ``exclusiveMinimum``),
which ``Draft202012Validator.check_schema`` rejects, and the walk must also refuse what the grammar
converter cannot enforce (non-finite bounds, huge repeats, integer ranges with no integer) with one
line naming the key.
"""

from __future__ import annotations

import copy
import functools
import json
import math
import re
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, model_validator
from pydantic.json_schema import SkipJsonSchema

from lmsext.errors import ConfigError

from .constants import JSON_SCHEMA_TYPES
from .error_messages import bad_value, short_repr
from .nesting import check_nesting
from .settings_base import ValidatedModel, check_style
from .spelling import closest, in_style, style_of
from .value_types import quoted

STRUCTURED_ALLOWED = ("{'type': 'json', 'jsonSchema': {...}}, {'type': 'gbnf', 'gbnfGrammar': '...'}, "
                      "{'type': 'none'}, a JSON schema dict, a pydantic model class or OpenAI's "
                      "{'type': 'json_schema', 'json_schema': {'schema': {...}}}")
"""What the ``structured`` prediction setting accepts, as quoted in error messages."""

STRUCTURED_TYPES = ("json", "gbnf", "none", "json_schema")
"""The ``type`` values of the structured forms (LM Studio's three and OpenAI's ``json_schema``)."""

_SCHEMA_KEYWORDS = frozenset({
    "type", "properties", "$schema", "$ref", "$defs", "definitions", "items", "prefixItems", "anyOf", "oneOf",
    "allOf", "not", "enum", "const", "required", "additionalProperties", "patternProperties", "title",
    "description", "format", "pattern", "minimum", "maximum", "minLength", "maxLength", "minItems", "maxItems",
})
# Keys of LM Studio's form, each spelling → canonical field.
_FORM_KEYS = {"type": "type", "jsonSchema": "json_schema", "json_schema": "json_schema",
              "gbnfGrammar": "gbnf_grammar", "gbnf_grammar": "gbnf_grammar",
              "modelClass": "model_class", "model_class": "model_class"}
BOUND_WORDS = ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum")
"""The JSON-schema keywords that bound numbers."""
INTEGER_DIGITS = 16
"""Most digits of a generated integer when a side of its range is open (llama.cpp's plain integer rule's limit)."""
MAX_BOUND_DIGITS = 100
"""Integer bounds of more digits are treated as open (an upper bound >= 10**100) or refused (a lower one)."""
MAX_REPEAT = 100_000
"""Largest ``minItems``/``maxItems``/``minLength``/``maxLength``: the converter spells repetitions out,
so 10**8 would build gigabytes of grammar in the kernel (llama.cpp refuses far smaller ones anyway)."""
_ROOT_RULE = re.compile(r"^\s*root\s*::=", re.MULTILINE)
_GBNF_ALLOWED = "a non-empty GBNF grammar string with a 'root ::=' rule"
_ModelClass = type[BaseModel]  # module-level: inside the class body the field `type` shadows the builtin


class StructuredSpec(ValidatedModel):
    """Normalised structured-output request.

    ``type`` is ``"none"`` (free text), ``"json"`` (output must match ``json_schema``; None = any
    JSON) or ``"gbnf"`` (output must match ``gbnf_grammar``). ``model_class`` is the pydantic class
    the schema came from, kept so results can be parsed into it. Built from any form listed in
    :data:`STRUCTURED_ALLOWED` (LM Studio's, a plain schema, a pydantic class, OpenAI's
    ``{"type": "json_schema", "json_schema": {"schema": ...}}``); raises ConfigError.
    """

    type: Literal["none", "json", "gbnf"]
    json_schema: dict[str, Any] | None = None
    gbnf_grammar: str | None = None
    model_class: SkipJsonSchema[_ModelClass | None] = None

    @classmethod
    def parse(cls, obj: Any) -> StructuredSpec:
        """A StructuredSpec from any accepted form (an instance is returned as is)."""
        return obj if isinstance(obj, cls) else cls.model_validate(obj)

    @model_validator(mode="before")
    @classmethod
    def normalise(cls, data: Any) -> Any:
        """Turn any accepted form into the canonical field dict, checking schema and grammar."""
        if isinstance(data, cls):
            return data
        return normalise_structured(data)

    def to_dict(self, style: str = "snake", *, only_set: bool = True) -> dict[str, Any]:
        """LM Studio's form: ``{"type": "json", "jsonSchema": {...}}`` (camel) or ``json_schema`` (snake).

        ``model_class`` cannot be written to JSON and is left out. ``only_set`` is accepted for
        symmetry with the configs and ignored.
        """
        check_style(style)
        out: dict[str, Any] = {"type": self.type}
        if self.type == "json" and self.json_schema is not None:
            out["jsonSchema" if style == "camel" else "json_schema"] = copy.deepcopy(self.json_schema)
        if self.type == "gbnf":
            out["gbnfGrammar" if style == "camel" else "gbnf_grammar"] = self.gbnf_grammar
        return out


def normalise_structured(obj: Any, key: str = "structured") -> dict[str, Any]:
    """The canonical ``{"type", "json_schema", "gbnf_grammar", "model_class"}`` dict for any accepted form."""
    if isinstance(obj, type) and issubclass(obj, BaseModel):
        return _from_model_class(obj, key)
    if not isinstance(obj, Mapping):
        raise bad_value(key, obj, STRUCTURED_ALLOWED)
    kind = obj.get("type")
    if isinstance(kind, str) and kind in ("none", "json", "gbnf"):
        return _from_lmstudio_form(obj, key)
    if kind == "json_schema":
        return _from_openai_form(obj, key)
    if "type" in obj and not _looks_like_schema(obj):
        raise _unsupported_type(kind, key)
    if not _SCHEMA_KEYWORDS.intersection(k for k in obj if isinstance(k, str)):
        raise bad_value(key, dict(obj), STRUCTURED_ALLOWED)
    return {"type": "json", "json_schema": check_json_schema(obj, key)}


def _looks_like_schema(obj: Mapping[Any, Any]) -> bool:
    """Whether a dict whose ``type`` is not a structured form's is meant as a plain JSON schema.

    It is when it has JSON-schema keywords besides ``type``, or when ``type`` is a JSON schema type,
    a list of them or a near miss of one (``'objekt'``) — the schema check then names the bad type.
    """
    if _SCHEMA_KEYWORDS.intersection(k for k in obj if isinstance(k, str) and k != "type"):
        return True
    kind = obj.get("type")
    if isinstance(kind, list):
        return True
    if not isinstance(kind, str) or "json" in kind.lower():  # 'JSON', OpenAI's 'json_object': a form's type
        return False
    return kind in JSON_SCHEMA_TYPES or closest(kind, JSON_SCHEMA_TYPES) is not None


def _unsupported_type(kind: Any, key: str) -> ConfigError:
    """One line naming the unsupported ``type`` and every form ``structured`` accepts."""
    match = None
    if isinstance(kind, str):
        match = closest(kind, STRUCTURED_TYPES) or ("json" if "json" in kind.lower() else None)
    hint = f" (did you mean {match!r}?)" if match else ""
    return ConfigError(f"{key}.type={short_repr(kind)} is not supported{hint}: {key} must be {STRUCTURED_ALLOWED}",
                       key=f"{key}.type", value=kind, allowed=STRUCTURED_ALLOWED)


def _from_model_class(model_class: type[BaseModel], key: str) -> dict[str, Any]:
    """``{"type": "json"}`` with the class's JSON schema and the class itself."""
    schema = check_json_schema(model_class.model_json_schema(), key)
    return {"type": "json", "json_schema": schema, "model_class": model_class}


def _from_lmstudio_form(obj: Mapping[Any, Any], key: str) -> dict[str, Any]:
    """LM Studio's ``{"type": ..., "jsonSchema"/"gbnfGrammar": ...}`` (either spelling)."""
    kind = obj["type"]
    seen: dict[str, str] = {}
    given: dict[str, tuple[str, Any]] = {}
    for name, value in obj.items():
        field = _FORM_KEYS.get(name) if isinstance(name, str) else None
        if field is None:
            style = style_of(name) if isinstance(name, str) else None
            match = closest(str(name), in_style(_FORM_KEYS, style))
            hint = f" — did you mean {match!r}?" if match else f" (valid: {', '.join(_FORM_KEYS)})"
            raise ConfigError(f"unknown structured setting {name!r} in {key}{hint}", key=f"{key}.{name}",
                              value=value)
        if field in seen:
            raise ConfigError(f"{seen[field]!r} and {name!r} in {key} are two spellings of the same "
                              f"setting — give it once", key=f"{key}.{name}", value=value)
        seen[field] = name
        if value is not None:
            given[field] = (name, value)
    wanted = {"none": set(), "json": {"json_schema", "model_class"}, "gbnf": {"gbnf_grammar"}}[kind]
    for field, (name, value) in given.items():
        if field != "type" and field not in wanted:
            raise ConfigError(f"{key}.{name} is not allowed with type {kind!r}", key=f"{key}.{name}", value=value)
    if kind == "none":
        return {"type": "none"}
    if kind == "gbnf":
        name, grammar = given.get("gbnf_grammar", ("gbnfGrammar", None))
        return {"type": "gbnf", "gbnf_grammar": check_gbnf_grammar(grammar, f"{key}.{name}")}
    out: dict[str, Any] = {"type": "json"}
    if "model_class" in given:
        name, model_class = given["model_class"]
        if not (isinstance(model_class, type) and issubclass(model_class, BaseModel)):
            raise bad_value(f"{key}.{name}", model_class, "a pydantic model class")
        out.update(_from_model_class(model_class, key))
    if "json_schema" in given:
        name, schema = given["json_schema"]
        out["json_schema"] = check_json_schema(schema, f"{key}.{name}")
    return out


def _from_openai_form(obj: Mapping[Any, Any], key: str) -> dict[str, Any]:
    """OpenAI's ``{"type": "json_schema", "json_schema": {"name": ..., "schema": {...}}}``."""
    for name in obj:
        if name not in ("type", "json_schema"):
            raise ConfigError(f"unknown key {name!r} in OpenAI-style {key} (expected 'type' and 'json_schema')",
                              key=f"{key}.{name}", value=obj[name])
    wrapper = obj.get("json_schema")
    if not isinstance(wrapper, Mapping) or "schema" not in wrapper:
        raise bad_value(f"{key}.json_schema", wrapper, "a dict with a 'schema' key holding the JSON schema")
    return {"type": "json", "json_schema": check_json_schema(wrapper["schema"], f"{key}.json_schema.schema")}


def check_json_schema(schema: Any, key: str = "structured") -> dict[str, Any]:
    """A deep copy of ``schema`` once it is a JSON-serialisable dict with valid ``type`` and dict ``properties``."""
    check_nesting(schema, key)
    _check_subschema(schema, key)
    try:
        json.dumps(schema)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{key}: JSON schema is not JSON-serialisable ({exc})", key=key, value=schema,
                          allowed="a JSON-serialisable dict") from None
    return copy.deepcopy(dict(schema))


def _check_subschema(schema: Any, key: str, booleans_ok: bool = False) -> None:
    """Raise ConfigError naming the path of the first malformed part of ``schema``."""
    if booleans_ok and isinstance(schema, bool):
        return
    if not isinstance(schema, Mapping):
        raise bad_value(key, schema, "a JSON schema dict")
    kind = schema.get("type")
    if kind is not None:
        kinds = kind if isinstance(kind, list) else [kind]
        if not kinds or not all(isinstance(k, str) and k in JSON_SCHEMA_TYPES for k in kinds):
            raise bad_value(f"{key}.type", kind, f"one of {quoted(JSON_SCHEMA_TYPES)} (or a list of them)")
    _check_bounds(schema, key)
    props = schema.get("properties")
    if props is not None:
        if not isinstance(props, Mapping):
            raise bad_value(f"{key}.properties", props, "a dict of property name -> JSON schema dict")
        for name, sub in props.items():
            _check_subschema(sub, f"{key}.properties.{name}")
    for word in ("$defs", "definitions", "patternProperties"):
        subs = schema.get(word)
        if subs is not None:
            if not isinstance(subs, Mapping):
                raise bad_value(f"{key}.{word}", subs, "a dict of name -> JSON schema dict")
            for name, sub in subs.items():
                _check_subschema(sub, f"{key}.{word}.{name}", booleans_ok=True)
    for word in ("anyOf", "oneOf", "allOf", "prefixItems"):
        subs = schema.get(word)
        if subs is not None:
            if not isinstance(subs, list):
                raise bad_value(f"{key}.{word}", subs, "a list of JSON schema dicts")
            for i, sub in enumerate(subs):
                _check_subschema(sub, f"{key}.{word}[{i}]", booleans_ok=True)
    for word in ("items", "additionalProperties", "not"):
        sub = schema.get(word)
        if word == "items" and isinstance(sub, list):  # draft-07 tuple form
            for i, item in enumerate(sub):
                _check_subschema(item, f"{key}.items[{i}]", booleans_ok=True)
        elif sub is not None:
            _check_subschema(sub, f"{key}.{word}", booleans_ok=True)


def numeric_bounds(schema: Mapping[str, Any]) -> tuple[tuple[int | float, bool] | None,
                                                     tuple[int | float, bool] | None]:
    """The ``(lower, upper)`` bounds a schema puts on numbers: each ``(value, exclusive)`` or None.

    ``minimum``/``exclusiveMinimum`` (and the maximum pair) combine to the tighter bound; the
    draft-4 boolean form (``"exclusiveMinimum": true`` beside ``"minimum"``) is understood too.
    Call on a checked schema (:func:`check_json_schema`): bounds are then finite numbers.
    """
    def side(plain: str, exclusive: str, tighter: Any) -> tuple[int | float, bool] | None:
        value, flag = schema.get(plain), schema.get(exclusive)
        options = []
        if _is_number(value):
            options.append((value, flag is True))
        if _is_number(flag):
            options.append((flag, True))
        if not options:
            return None
        return functools.reduce(tighter, options)

    def tighter_low(a, b):  # the larger value; an exclusive bound at the same value is tighter
        return a if (a[0], a[1]) > (b[0], b[1]) else b

    def tighter_high(a, b):
        return a if (a[0], not a[1]) < (b[0], not b[1]) else b

    return side("minimum", "exclusiveMinimum", tighter_low), side("maximum", "exclusiveMaximum", tighter_high)


def integer_bounds(schema: Mapping[str, Any]) -> tuple[int | None, int | None]:
    """The smallest and largest integer a schema's bounds allow (None = open), inclusive."""
    lower, upper = numeric_bounds(schema)
    lo = hi = None
    if lower is not None:
        lo = math.floor(lower[0]) + 1 if lower[1] else math.ceil(lower[0])
    if upper is not None:
        hi = math.ceil(upper[0]) - 1 if upper[1] else math.floor(upper[0])
    return lo, hi


def describe_bounds(schema: Mapping[str, Any]) -> str:
    """``minimum=10, maximum=5``: the bound keywords of a schema as given."""
    return ", ".join(f"{word}={short_repr(schema[word], 30)}" for word in BOUND_WORDS if word in schema)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_bounds(schema: Mapping[str, Any], key: str) -> None:
    """Bounds are finite numbers (exclusive ones may be draft-4 booleans) that some value of the type meets."""
    for word in BOUND_WORDS:
        if word not in schema:
            continue
        value = schema[word]
        if word.startswith("exclusive") and isinstance(value, bool):
            continue
        if not _is_number(value) or (isinstance(value, float) and not math.isfinite(value)):
            allowed = "a finite number" + (" (or true/false beside " + word[9].lower() + word[10:] + ")"
                                           if word.startswith("exclusive") else "")
            raise bad_value(f"{key}.{word}", value, allowed)
    for word in ("minItems", "maxItems", "minLength", "maxLength"):
        value = schema.get(word)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)
                                  or not 0 <= value <= MAX_REPEAT):
            raise bad_value(f"{key}.{word}", value, f"an integer from 0 to {MAX_REPEAT:,}")
    kind = schema.get("type")
    if kind == "integer":
        lo, hi = integer_bounds(schema)
        if lo is not None and hi is not None and lo > hi:
            raise ConfigError(f"{key}: no integer satisfies {describe_bounds(schema)}", key=key,
                              value=dict(schema), allowed="bounds with at least one integer between them")
        if (lo is not None and lo >= 10**MAX_BOUND_DIGITS) or (hi is not None and hi <= -10**MAX_BOUND_DIGITS):
            raise ConfigError(f"{key}: {describe_bounds(schema)} asks for integers of more than "
                              f"{MAX_BOUND_DIGITS} digits, which structured output does not support", key=key,
                              value=dict(schema), allowed=f"integer bounds of at most {MAX_BOUND_DIGITS} digits")
    elif kind == "number":
        lower, upper = numeric_bounds(schema)
        if lower is not None and upper is not None and (
                lower[0] > upper[0] or (lower[0] == upper[0] and (lower[1] or upper[1]))):
            raise ConfigError(f"{key}: no number satisfies {describe_bounds(schema)}", key=key,
                              value=dict(schema), allowed="bounds with at least one number between them")


def check_gbnf_grammar(grammar: Any, key: str = "structured.gbnfGrammar") -> str:
    """``grammar`` if it is a non-empty string with a ``root ::=`` rule (llama.cpp checks the rest)."""
    if not isinstance(grammar, str) or not grammar.strip() or not _ROOT_RULE.search(grammar):
        raise bad_value(key, grammar, _GBNF_ALLOWED)
    return grammar
