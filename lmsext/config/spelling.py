"""How setting keys may be spelled: snake_case (Python, LM Studio REST), camelCase (LM Studio SDK), aliases.

Every model of this package derives its accepted spellings from its field names with
:func:`alias_generator`, so no per-field list of spellings is written by hand; only short
aliases that no rule can produce (``top_k``, ``stop``, ``gpuOffload``) are listed explicitly.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping, Sequence
from typing import Literal

from pydantic import AliasChoices, AliasGenerator

Style = Literal["snake", "camel"]
STYLES: tuple[str, ...] = ("snake", "camel")
"""The two key styles: ``snake`` (Python attributes, LM Studio REST) and ``camel`` (LM Studio SDK)."""

CAMEL_ACRONYMS: dict[str, str] = {"kv": "KV"}
"""Words LM Studio writes all-capitals in camelCase keys (``offloadKVCacheToGpu``)."""

CAMEL_NAMES: dict[str, str] = {"use_unified_kv_cache": "useUnifiedKvCache"}
"""Keys LM Studio writes against the acronym rule (``useUnifiedKvCache``); the rule's spelling is accepted too."""


def snake_to_camel(name: str, *, acronyms: bool = True) -> str:
    """Turn ``offload_kv_cache_to_gpu`` into ``offloadKVCacheToGpu`` (plain ``...Kv...`` if not ``acronyms``)."""
    if acronyms and name in CAMEL_NAMES:
        return CAMEL_NAMES[name]
    first, *rest = name.split("_")
    words = [(CAMEL_ACRONYMS.get(w) if acronyms else None) or w[:1].upper() + w[1:] for w in rest]
    return first + "".join(words)


def spellings(name: str, extra: Sequence[str] = ()) -> tuple[str, ...]:
    """All accepted spellings of field ``name``: snake, camel, plain camel (``Kv``), then ``extra``."""
    return tuple(dict.fromkeys([name, snake_to_camel(name), snake_to_camel(name, acronyms=False), *extra]))


def alias_generator(extra: Mapping[str, Sequence[str]] | None = None) -> AliasGenerator:
    """A pydantic alias generator accepting :func:`spellings` on input and writing camelCase on dump."""
    extra = dict(extra or {})
    return AliasGenerator(
        validation_alias=lambda name: AliasChoices(*spellings(name, extra.get(name, ()))),
        serialization_alias=snake_to_camel,
    )


def style_of(key: str) -> Style | None:
    """``"snake"`` if ``key`` has an underscore, ``"camel"`` if it has a capital, None if it could be either."""
    if "_" in key:
        return "snake"
    if any(c.isupper() for c in key):
        return "camel"
    return None


def in_style(candidates: Iterable[str], style: Style | None) -> list[str]:
    """The candidates that could be written in ``style`` (all of them when ``style`` is None)."""
    return [c for c in candidates if style is None or style_of(c) in (None, style)]


def closest(key: str, candidates: Iterable[str]) -> str | None:
    """The candidate nearest to ``key`` (difflib, case-insensitive, earlier candidates win ties) or None."""
    by_lower: dict[str, str] = {}
    for candidate in candidates:
        by_lower.setdefault(candidate.lower(), candidate)
    match = difflib.get_close_matches(key.lower(), list(by_lower), n=1, cutoff=0.6)
    return by_lower[match[0]] if match else None
