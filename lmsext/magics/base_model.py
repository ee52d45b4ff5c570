"""The one-line warning when ``%%lm_respond`` chats with a base model: a model without a chat template (most
base models, the embedded ``stories260K``) never learnt a chat format, so the reply is formatted with lmsext's
plain fallback template — said once per loaded instance, naming the template used instead."""

from __future__ import annotations

import weakref
from typing import Any

from ..chat_templates import FALLBACK_NAME

_warned: "weakref.WeakSet[Any]" = weakref.WeakSet()


def base_model_note(llm: Any) -> str | None:
    """The warning for ``llm`` if it has no chat template and was not warned about yet, else None."""
    if llm.load_result.chat_template != FALLBACK_NAME or llm in _warned:
        return None
    _warned.add(llm)
    return (f"{llm.identifier} has no chat template (a base model): %%lm_respond formats the chat with lmsext's "
            f"plain '{FALLBACK_NAME}' template instead (User: … / Assistant:); %%lm_complete continues raw text")


__all__ = ["base_model_note"]
