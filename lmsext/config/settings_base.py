"""Shared base of the config models: key spellings, one-line errors, parse/merge/export helpers."""

from __future__ import annotations

import copy
import functools
import json
import types
import typing
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from typing_extensions import Self

from lmsext.errors import ConfigError

from .error_messages import bad_value, embedded_config_error, short_repr
from .nesting import check_nesting
from .spelling import STYLES, alias_generator, closest, in_style, snake_to_camel, style_of

_SETTING_CLASSES: dict[str, type[SettingsModel]] = {}
"""Every settings model by its ``setting_kind`` ("load", "prediction", "gpu"), for cross-kind hints."""


def setting(allowed: str, doc: str) -> Any:
    """Declare an optional setting: default None (= not set), ``allowed`` is quoted in error messages."""
    return Field(default=None, description=doc, json_schema_extra={"allowed": allowed})


def check_style(style: str) -> str:
    """Return ``style`` if it is ``"snake"`` or ``"camel"``, else raise ConfigError."""
    if style not in STYLES:
        raise bad_value("style", style, "'snake' or 'camel'")
    return style


class ValidatedModel(BaseModel):
    """Frozen pydantic model whose validation failures surface as one-line ConfigError, never ValidationError."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    def __init__(self, /, **data: Any) -> None:
        """Validate ``data``; raise ConfigError on any problem."""
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise type(self).config_error(exc, data) from None

    # Tell pydantic this __init__ only wraps BaseModel's (as RootModel does), so nested models are still
    # validated by pydantic-core directly and their errors keep their location (gpu.mainGpu).
    __init__.__pydantic_base_init__ = True  # type: ignore[attr-defined]

    def __setattr__(self, name: str, value: Any) -> None:
        """Configs are immutable: say how to get a changed copy instead."""
        hint = f" — use .merged({{{name!r}: ...}}) for a changed copy" if hasattr(self, "merged") else ""
        raise ConfigError(f"{type(self).__name__} is read-only{hint}", key=name, value=value)

    @classmethod
    def model_validate(cls, obj: Any, *args: Any, **kwargs: Any) -> Self:
        """pydantic's ``model_validate``, raising ConfigError instead of ValidationError."""
        try:
            return super().model_validate(obj, *args, **kwargs)
        except ValidationError as exc:
            raise cls.config_error(exc, obj) from None

    @classmethod
    def model_validate_json(cls, json_data: str | bytes | bytearray, *args: Any, **kwargs: Any) -> Self:
        """pydantic's ``model_validate_json``, raising ConfigError instead of ValidationError."""
        try:
            return super().model_validate_json(json_data, *args, **kwargs)
        except ValidationError as exc:
            try:
                data = json.loads(json_data)
            except ValueError:
                first = exc.errors(include_url=False)[0]
                raise ConfigError(f"{cls.__name__} input is not valid JSON: {first['msg']}", value=json_data,
                                  allowed="a JSON object") from None
            raise cls.config_error(exc, data) from None

    @classmethod
    def config_error(cls, exc: ValidationError, data: Any) -> ConfigError:
        """Turn pydantic's ``exc`` (raised while validating the user's ``data``) into one ConfigError."""
        found = embedded_config_error(exc)
        if found is not None:
            return found
        first = exc.errors(include_url=False)[0]
        return ConfigError(f"invalid {cls.__name__}: {first['msg']}")

    def to_dict(self, style: str = "snake", *, only_set: bool = True) -> dict[str, Any]:
        """Plain JSON-able dict of this object (subclasses define it)."""
        raise NotImplementedError


class SettingsModel(ValidatedModel):
    """Base of LoadModelConfig, PredictionConfig and GpuSetting.

    Each field is optional and None means "not set": the engine or the model decides. Keys may be
    spelled snake_case or camelCase (plus a few aliases); explicit None values are dropped, so
    ``model_fields_set`` holds exactly the settings the user gave.
    """

    model_config = ConfigDict(alias_generator=alias_generator())

    setting_kind: ClassVar[str] = "config"
    """Word naming this kind of setting in messages ("load", "prediction", "gpu")."""
    nesting_hint: ClassVar[str] = ""
    """Added to "is a <kind> setting" messages when a key of this kind is given at the wrong level."""
    root_allowed: ClassVar[str] = "a dict of settings"
    """What the whole input may be, for messages about a non-dict input."""

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        """Register each concrete settings kind for cross-kind key hints."""
        super().__pydantic_init_subclass__(**kwargs)
        if "setting_kind" in cls.__dict__:
            _SETTING_CLASSES[cls.setting_kind] = cls

    # ----------------------------------------------------------------- key names
    @classmethod
    def accepted_keys(cls) -> dict[str, str]:
        """Every accepted key spelling mapped to its snake_case field name."""
        return dict(_spelling_table(cls))

    @classmethod
    def field_names(cls, style: str = "snake") -> tuple[str, ...]:
        """The canonical key of every setting in ``style`` ("snake" = Python and REST, "camel" = LM Studio SDK)."""
        check_style(style)
        return tuple(name if style == "snake" else snake_to_camel(name) for name in cls.model_fields)

    @classmethod
    def canonical_key(cls, key: str) -> str | None:
        """The snake_case field name for any accepted spelling of ``key``, or None if unknown."""
        return _spelling_table(cls).get(key) if isinstance(key, str) else None

    @classmethod
    def allowed(cls, key: str) -> str:
        """What setting ``key`` (any spelling) accepts, as quoted in error messages."""
        name = cls.canonical_key(key)
        if name is None:
            raise cls.unknown_key_error(key)
        return _allowed_text(cls.model_fields[name])

    # ----------------------------------------------------------------- validation
    @classmethod
    def expand_shorthand(cls, data: Any) -> Any:
        """Hook: turn a shorthand input (e.g. ``gpu=0.5``) into a dict; the default leaves it alone."""
        return data

    @model_validator(mode="before")
    @classmethod
    def check_setting_keys(cls, data: Any) -> Any:
        """Reject unknown keys (with a suggestion) and one setting given under two spellings; drop None values."""
        if isinstance(data, cls):
            return data
        data = cls.expand_shorthand(data)
        if not isinstance(data, Mapping):
            raise ConfigError(
                f"{cls.setting_kind} settings must be {cls.root_allowed}, got {type(data).__name__} "
                f"{short_repr(data)}", value=data, allowed=cls.root_allowed)
        table = _spelling_table(cls)
        seen: dict[str, str] = {}
        for key, value in data.items():
            name = table.get(key) if isinstance(key, str) else None
            if name is None:
                raise cls.unknown_key_error(key, value)
            if name in seen:
                raise ConfigError(
                    f"{seen[name]!r} and {key!r} are two spellings of the same {cls.setting_kind} setting "
                    f"{name!r} — give it once", key=key, value=value,
                    allowed=_allowed_text(cls.model_fields[name]))
            seen[name] = key
        return {key: value for key, value in data.items() if value is not None}

    @classmethod
    def unknown_key_error(cls, key: object, value: object = None) -> ConfigError:
        """The error for a key this kind does not know: wrong kind, nearest valid key, or the valid keys."""
        kind = cls.setting_kind
        if not isinstance(key, str):
            return ConfigError(f"{kind} setting names must be strings, got {short_repr(key)}", key=None, value=value)
        others = [other for other in _SETTING_CLASSES.values() if other is not cls]
        for other in others:
            if key in _spelling_table(other):
                hint = f" ({other.nesting_hint})" if other.nesting_hint else ""
                return ConfigError(f"{key!r} is a {other.setting_kind} setting, not a {kind} setting{hint}",
                                   key=key, value=value)
        style = style_of(key)
        match = closest(key, in_style(_spelling_table(cls), style))
        if match is not None:
            return ConfigError(f"unknown {kind} setting {key!r} — did you mean {match!r}?", key=key, value=value)
        for other in others:
            match = closest(key, in_style(_spelling_table(other), style))
            if match is not None:
                return ConfigError(f"unknown {kind} setting {key!r} — did you mean the {other.setting_kind} "
                                   f"setting {match!r}?", key=key, value=value)
        valid = ", ".join(cls.field_names(style or "snake"))
        return ConfigError(f"unknown {kind} setting {key!r} (valid: {valid})", key=key, value=value)

    @classmethod
    def config_error(cls, exc: ValidationError, data: Any) -> ConfigError:
        """Name the first bad setting as the user spelled it (``gpu.mainGpu``, ``stop[1]``) with its allowed values."""
        found = embedded_config_error(exc)
        if found is not None:
            return found
        loc = exc.errors(include_url=False)[0]["loc"]
        path, value, field, model = "", data, None, cls
        for part in loc:
            if isinstance(value, Mapping) and isinstance(part, str) and part in value:
                name = _spelling_table(model).get(part) if model is not None else None
                if model is not None and name is None:
                    break
                path = f"{path}.{part}" if path else part
                value = value[part]
                if name is not None:
                    field = model.model_fields[name]
                    model = _settings_class_in(field.annotation)
            elif isinstance(value, (list, tuple)) and isinstance(part, int) and 0 <= part < len(value):
                path = f"{path}[{part}]"
                value = value[part]
                model = None
            else:
                break
        if field is None:
            return bad_value(cls.setting_kind, value, cls.root_allowed)
        return bad_value(path, value, _allowed_text(field))

    # ----------------------------------------------------------------- construction and export
    @classmethod
    def parse(cls, obj: Any = None, /, **kwargs: Any) -> Self:
        """Build a config from None, a dict (any key spelling), an instance (returned as is) and/or keywords.

        Keywords override the same settings in ``obj``. Raises ConfigError.
        """
        if obj is None:
            base = cls()
        elif isinstance(obj, cls):
            base = obj
        else:
            check_nesting(obj, f"{cls.setting_kind} settings")  # before anything recurses into it
            base = cls.model_validate(dict(obj) if isinstance(obj, Mapping) else obj)
        if kwargs:
            check_nesting(kwargs, f"{cls.setting_kind} settings")
        config = base.merged(kwargs) if kwargs else base
        config.check_limits()
        return config

    def check_limits(self) -> None:
        """Refuse values beyond what llama.cpp's C parameters hold (:mod:`lmsext.config.limits`); :meth:`parse`
        calls it, so a parsed config is always in range. Subclasses with such limits override it."""

    def merged(self, other: Any) -> Self:
        """A new config: settings explicitly set in ``other`` (any form :meth:`parse` takes) override this one's.

        Nested settings (``gpu``) merge key by key; whatever is set in either stays set.
        """
        cls = type(self)
        other = cls.parse(other)
        values: dict[str, Any] = {}
        for name in cls.model_fields:
            in_self, in_other = name in self.model_fields_set, name in other.model_fields_set
            if in_other:
                mine, theirs = getattr(self, name), getattr(other, name)
                both_nested = isinstance(mine, SettingsModel) and isinstance(theirs, SettingsModel)
                values[name] = mine.merged(theirs) if in_self and both_nested else theirs
            elif in_self:
                values[name] = getattr(self, name)
        return cls.model_validate(values)

    def explicit(self) -> dict[str, Any]:
        """``{snake_name: value}`` of only the settings the user set, in field order."""
        return {name: getattr(self, name) for name in type(self).model_fields if name in self.model_fields_set}

    def to_dict(self, style: str = "snake", *, only_set: bool = True) -> dict[str, Any]:
        """Plain JSON-able dict with keys in ``style`` ("snake" or "camel"); unset settings are left out
        unless ``only_set`` is False (then they appear as None). Nested settings become dicts."""
        check_style(style)
        out: dict[str, Any] = {}
        for name in type(self).model_fields:
            if only_set and name not in self.model_fields_set:
                continue
            key = name if style == "snake" else snake_to_camel(name)
            out[key] = _plain(getattr(self, name), style, only_set)
        return out

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        """Show only the settings that were set."""
        for name, value in super().__repr_args__():
            if name in self.model_fields_set:
                yield name, value


@functools.cache
def _spelling_table(cls: type[BaseModel]) -> dict[str, str]:
    """Accepted spelling → field name for ``cls``, read from the fields' pydantic validation aliases."""
    table: dict[str, str] = {}
    for name, field in cls.model_fields.items():
        table[name] = name
        alias = field.validation_alias
        choices = alias.choices if hasattr(alias, "choices") else [alias] if alias else []
        for choice in choices:
            if isinstance(choice, str):
                table.setdefault(choice, name)
    return table


def _allowed_text(field: Any) -> str:
    """The ``allowed`` text declared with :func:`setting` for a field."""
    extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
    return str(extra.get("allowed", "a valid value"))


def _settings_class_in(annotation: Any) -> type[SettingsModel] | None:
    """The SettingsModel subclass inside ``annotation`` (e.g. GpuSetting in ``GpuSetting | None``), if any."""
    if isinstance(annotation, type) and issubclass(annotation, SettingsModel):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            found = _settings_class_in(arg)
            if found is not None:
                return found
    return None


def _plain(value: Any, style: str, only_set: bool) -> Any:
    """A JSON-able copy of a setting value."""
    if isinstance(value, ValidatedModel):
        return value.to_dict(style, only_set=only_set)
    if isinstance(value, list):
        return [_plain(v, style, only_set) for v in value]
    if isinstance(value, dict):
        return copy.deepcopy(value)
    return value
