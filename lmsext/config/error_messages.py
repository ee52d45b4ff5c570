"""One-line :class:`~lmsext.errors.ConfigError` messages built from bad keys and values."""

from __future__ import annotations

import re

from pydantic import ValidationError

from lmsext.errors import ConfigError

REPR_LIMIT = 60
"""Longest repr of a bad value shown in a message; longer ones are cut with ``...``."""


def short_repr(value: object, limit: int = REPR_LIMIT) -> str:
    """``repr(value)`` on one line, cut to ``limit`` characters."""
    try:
        text = repr(value)
    except Exception:  # a broken __repr__ (or an int beyond Python's digit limit) must not hide the real problem
        if isinstance(value, int):
            text = f"<an integer of about {int(value.bit_length() * 0.30103) + 1:,} digits>"
        else:
            text = f"<{type(value).__name__}>"
    text = re.sub(r"\s*\n\s*", " ", text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def bad_value(key: str, value: object, allowed: str) -> ConfigError:
    """The error for a known key with an unacceptable value: ``key=value: must be allowed``."""
    return ConfigError(f"{key}={short_repr(value)}: must be {allowed}", key=key, value=value, allowed=allowed)


def embedded_config_error(exc: ValidationError) -> ConfigError | None:
    """The ConfigError a validator of ours raised inside pydantic's ``exc``, if any."""
    for error in exc.errors(include_url=False):
        inner = (error.get("ctx") or {}).get("error")
        if isinstance(inner, ConfigError):
            return inner
    return None
