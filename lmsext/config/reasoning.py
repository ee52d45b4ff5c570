"""ReasoningParsingSpec: how a reply's reasoning is told from its answer (LM Studio's ``reasoningParsing``)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import StrictBool

from .settings_base import _SETTING_CLASSES, SettingsModel, setting
from .value_types import NonEmptyStr

#: LM Studio's defaults (``reasoning.parsing`` = ``{enabled: true, startString: "<think>", endString: "</think>"}``).
DEFAULT_START, DEFAULT_END = "<think>", "</think>"

REASONING_ALLOWED = "a dict {enabled: True/False, startString: '<think>', endString: '</think>'}"


class ReasoningParsingSpec(SettingsModel):
    """``enabled`` (default True), ``startString`` and ``endString`` (default ``<think>`` / ``</think>``)."""

    setting_kind: ClassVar[str] = "reasoningParsing"
    nesting_hint: ClassVar[str] = "it goes inside reasoningParsing={...}"
    root_allowed: ClassVar[str] = REASONING_ALLOWED

    enabled: StrictBool | None = setting("True or False", "Split the reasoning from the answer (default True).")
    start_string: NonEmptyStr | None = setting("a non-empty string", "Where the reasoning starts (<think>).")
    end_string: NonEmptyStr | None = setting("a non-empty string", "Where the reasoning ends (</think>).")


# its keys (enabled, …) are not "did you mean" hints for the load and prediction settings' typos
_SETTING_CLASSES.pop(ReasoningParsingSpec.setting_kind, None)
