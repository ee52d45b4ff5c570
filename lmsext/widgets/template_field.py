"""The prediction panel's prompt-template field: a built-in name or a promptTemplate as JSON, as text."""

from __future__ import annotations

import json
from typing import Any

import ipywidgets as w

from ..config.prompt_template import BUILTIN_TEMPLATES, PromptTemplateSpec
from ..errors import ConfigError

PLACEHOLDER = f"model's; or {', '.join(BUILTIN_TEMPLATES)}, or a promptTemplate as JSON"


def template_text_field() -> w.Text:
    """The text field (changes apply on Enter or when it loses focus)."""
    return w.Text(description="template", placeholder=PLACEHOLDER, continuous_update=False,
                  style={"description_width": "120px"}, layout=w.Layout(width="520px"),
                  tooltip="promptTemplate: the chat format of respond (empty = the model's own template)")


def text_to_template(text: str) -> Any:
    """The ``promptTemplate`` value of the field's text: None (empty), a JSON object, or a built-in's name."""
    text = (text or "").strip()
    if not text:
        return None
    if text.startswith("{"):
        try:
            return json.loads(text)
        except ValueError as exc:
            raise ConfigError(f"template: not valid JSON ({exc})", key="prompt_template", value=text) from None
    return text


def template_to_text(spec: PromptTemplateSpec | None) -> str:
    """The field's text for the session's ``promptTemplate``: a built-in's name when it is one, else JSON."""
    if spec is None:
        return ""
    for name, value in BUILTIN_TEMPLATES.items():
        if PromptTemplateSpec.parse(value) == spec:
            return name
    return json.dumps(spec.to_dict("camel"))
