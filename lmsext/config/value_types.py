"""Reusable strict value types of the settings: no bool-as-int, no numeric strings, no NaN.

Numbers are strict on purpose: ``True`` is not an integer, ``"4096"`` is not a number and
``4096.0`` is not an integer (magics, widgets and JSON all hand over typed values). An int is
accepted where a float is expected and is stored as float. NumPy's scalars count as the numbers they
are: ``np.int64(5)`` is an integer and ``np.float32(0.5)`` a number (stored as plain ``int``/``float``);
``np.bool_`` is not a number, like ``bool``.
"""

from __future__ import annotations

import numbers
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, StrictFloat, StrictInt, StrictStr

from .constants import MAX_SEED


def _only_false(value: object) -> object:
    """Let exactly ``False`` through (pydantic's ``Literal[False]`` alone also takes 0 and 0.0)."""
    if value is False:
        return value
    raise ValueError("only False is accepted here")


def _plain_number(value: object) -> object:
    """A NumPy (or other ``numbers``) integer → ``int``, real → ``float``; anything else unchanged."""
    if isinstance(value, (bool, int, float)) or not isinstance(value, numbers.Real):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    return float(value)


Int = Annotated[StrictInt, BeforeValidator(_plain_number)]
"""An int (never a bool); NumPy integers count."""

Float = Annotated[StrictFloat, BeforeValidator(_plain_number)]
"""A number (never a bool); ints and NumPy numbers count."""

FalseOnly = Annotated[Literal[False], BeforeValidator(_only_false)]
"""Exactly ``False`` ("turned off" / "model default" in LM Studio's settings)."""

PositiveInt = Annotated[Int, Field(ge=1)]
"""An int >= 1 (never a bool)."""

NonNegativeInt = Annotated[Int, Field(ge=0)]
"""An int >= 0 (never a bool)."""

SeedInt = Annotated[Int, Field(ge=0, le=MAX_SEED)]
"""An unsigned 32-bit seed."""

NonEmptyStr = Annotated[StrictStr, Field(min_length=1)]
"""A str with at least one character."""

PositiveFloat = Annotated[Float, Field(gt=0, allow_inf_nan=False)]
"""A finite number > 0."""

FLOAT32_TINY = 1.1754943508222875e-38
"""The smallest normal 32-bit float: a C ``float`` field rounds a smaller positive number to 0 (or a subnormal)."""

PositiveFloat32 = Annotated[Float, Field(ge=FLOAT32_TINY, allow_inf_nan=False)]
"""A finite number > 0 that stays > 0 as a C ``float`` (a repeat penalty of 5e-324 became 0 there: NaN logits,
and llama.cpp's grammar sampler aborted the process)."""

UnitFloat = Annotated[Float, Field(ge=0, le=1, allow_inf_nan=False)]
"""A number from 0 to 1."""

ProbabilityMassFloat = Annotated[Float, Field(gt=0, le=1, allow_inf_nan=False)]
"""A number > 0 and <= 1 (top-p)."""

TemperatureFloat = Annotated[Float, Field(ge=0, le=2, allow_inf_nan=False)]
"""A number from 0 to 2."""

XtcThresholdFloat = Annotated[Float, Field(ge=0, le=0.5, allow_inf_nan=False)]
"""A number from 0 to 0.5."""


def quoted(values: tuple[str, ...]) -> str:
    """``'a', 'b', 'c'`` — a value set as shown in error messages."""
    return ", ".join(repr(v) for v in values)
