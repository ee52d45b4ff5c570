""""Did you mean": the nearest flag of a magic for a mistyped one (difflib), appended to argparse's one line:
``%%lm_respond: unrecognized arguments: --temprature 0.5; did you mean --temperature?``."""

from __future__ import annotations

import argparse
import re

from ..config.spelling import closest

_UNRECOGNIZED = re.compile(r"unrecognized arguments?: (.*)$")


def flag_hint(message: str, parser: argparse.ArgumentParser) -> str | None:
    """``did you mean --temperature?`` for the first unknown flag argparse's ``message`` names (None if there is
    none, or nothing near it)."""
    found = _UNRECOGNIZED.search(message)
    if not found:
        return None
    flags = [f for f in parser._option_string_actions if f.startswith("--")]
    for word in found.group(1).split():
        if word.startswith("-") and len(word.lstrip("-")) > 1:
            near = closest("--" + word.lstrip("-").split("=", 1)[0], flags)
            if near is not None:
                return f"did you mean {near}?"
    return None


__all__ = ["flag_hint"]
