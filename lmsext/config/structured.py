"""StructuredSpec: a structured-output request (JSON schema or GBNF grammar) in one normalised form."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, model_validator
from pydantic.json_schema import SkipJsonSchema

from lmsext.errors import ConfigError

from .constants import JSON_SCHEMA_TYPES
from .error_messages import bad_value
from .settings_base import ValidatedModel, check_style
from .spelling import closest, in_style, style_of
from .value_types import quoted

STRUCTURED_ALLOWED = ("a pydantic model class, a JSON schema dict, {'type': 'json', 'jsonSchema': {...}}, "
                      "{'type': 'gbnf', 'gbnfGrammar': '...'} or {'type': 'none'}")
"""What the ``structured`` prediction setting accepts, as quoted in error messages."""

_SCHEMA_KEYWORDS = frozenset({
    "type", "properties", "$schema", "$ref", "$defs", "definitions", "items", "prefixItems", "anyOf", "oneOf",
    "allOf", "not", "enum", "const", "required", "additionalProperties", "patternProperties", "title",
    "description", "format", "pattern", "minimum", "maximum", "minLength", "maxLength", "minItems", "maxItems",
})
# Keys of LM Studio's form, each spelling → canonical field.
_FORM_KEYS = {"type": "type", "jsonSchema": "json_schema", "json_schema": "json_schema",
              "gbnfGrammar": "gbnf_grammar", "gbnf_grammar": "gbnf_grammar",
              "modelClass": "model_class", "model_class": "model_class"}
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
    if kind in ("none", "json", "gbnf"):
        return _from_lmstudio_form(obj, key)
    if kind == "json_schema":
        return _from_openai_form(obj, key)
    if not _SCHEMA_KEYWORDS.intersection(k for k in obj if isinstance(k, str)):
        raise bad_value(key, dict(obj), STRUCTURED_ALLOWED)
    return {"type": "json", "json_schema": check_json_schema(obj, key)}


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


def check_gbnf_grammar(grammar: Any, key: str = "structured.gbnfGrammar") -> str:
    """``grammar`` if it is a non-empty string with a ``root ::=`` rule (llama.cpp checks the rest)."""
    if not isinstance(grammar, str) or not grammar.strip() or not _ROOT_RULE.search(grammar):
        raise bad_value(key, grammar, _GBNF_ALLOWED)
    return grammar
