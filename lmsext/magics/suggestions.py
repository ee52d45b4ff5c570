""""Did you mean": the nearest flag (or choice) of a magic for a mistyped one (difflib), appended to argparse's
one line: ``%%lm_respond: unrecognized arguments: --temprature 0.5; did you mean --temperature?``,
``%lm_chat: argument action: invalid choice: 'shwo' (choose from 'show', 'reset', 'save'); did you mean 'show'?``."""

from __future__ import annotations

import argparse
import re

from ..config.spelling import closest

_UNRECOGNIZED = re.compile(r"unrecognized arguments?: (.*)$")
_INVALID_CHOICE = re.compile(r"invalid choice: '(.*)' \(choose from (.*)\)$")


def flag_hint(message: str, parser: argparse.ArgumentParser) -> str | None:
    """``did you mean --temperature?`` for the first unknown flag argparse's ``message`` names, ``did you mean
    'show'?`` for an invalid choice (None if there is none, or nothing near it)."""
    choice = _INVALID_CHOICE.search(message)
    if choice:
        near = closest(choice.group(1), re.findall(r"'([^']*)'", choice.group(2)))
        return f"did you mean '{near}'?" if near else None
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


def word_hint(word: str, choices: list[str]) -> str | None:
    """``did you mean 'predict'?`` for a mistyped word among ``choices`` (None when nothing is near)."""
    near = closest(word, choices) if word else None
    return f"did you mean '{near}'?" if near else None


__all__ = ["flag_hint", "word_hint"]
