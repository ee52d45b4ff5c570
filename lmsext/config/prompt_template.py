"""PromptTemplateSpec: a chat format the user chooses (LM Studio's ``LLMPromptTemplate``), and a few built-in ones.

``{"type": "manual", "manualPromptTemplate": {beforeSystem, afterSystem, beforeUser, afterUser, beforeAssistant,
afterAssistant}, "stopStrings": [...]}`` wraps each message in its role's strings; ``{"type": "jinja",
"jinjaPromptTemplate": {"template": "...", "bosToken": "<s>", "eosToken": "</s>"}, "stopStrings": [...]}`` renders a
Jinja chat template (sandboxed, under the render budget of :mod:`lmsext.chat_templates`). A built-in's name
(:data:`BUILTIN_TEMPLATES`: ``chatml``, ``llama3``, ``alpaca``, ``plain``) stands for its manual template. Pure
pydantic: the rendering is :mod:`lmsext.prompt_templates`.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import StrictStr, model_validator

from lmsext.errors import ConfigError

from .settings_base import _SETTING_CLASSES, SettingsModel, setting
from .value_types import NonEmptyStr, quoted

_TEXT = "a string (may be empty)"
_ROLE_KEYS = ("before_system", "after_system", "before_user", "after_user", "before_assistant", "after_assistant")


def _manual(before_system: str, after_system: str, before_user: str, after_user: str, before_assistant: str,
            after_assistant: str, stops: list[str]) -> dict[str, Any]:
    values = (before_system, after_system, before_user, after_user, before_assistant, after_assistant)
    return {"type": "manual", "manual_prompt_template": dict(zip(_ROLE_KEYS, values)), "stop_strings": stops}


#: Built-in manual templates by name (``promptTemplate="chatml"``, ``%%lm_respond --template llama3``).
BUILTIN_TEMPLATES: dict[str, dict[str, Any]] = {
    "chatml": _manual("<|im_start|>system\n", "<|im_end|>\n", "<|im_start|>user\n", "<|im_end|>\n",
                      "<|im_start|>assistant\n", "<|im_end|>\n", ["<|im_end|>", "<|im_start|>"]),
    "llama3": _manual("<|start_header_id|>system<|end_header_id|>\n\n", "<|eot_id|>",
                      "<|start_header_id|>user<|end_header_id|>\n\n", "<|eot_id|>",
                      "<|start_header_id|>assistant<|end_header_id|>\n\n", "<|eot_id|>", ["<|eot_id|>"]),
    "alpaca": _manual("", "\n\n", "### Instruction:\n", "\n\n", "### Response:\n", "\n\n", ["### Instruction:"]),
    "plain": _manual("", "\n\n", "User: ", "\n", "Assistant:", "\n", ["\nUser:"]),
}

TEMPLATE_ALLOWED = (f"one of {quoted(tuple(BUILTIN_TEMPLATES))}, or a dict {{type: 'manual', manualPromptTemplate: "
                    "{beforeSystem, afterSystem, beforeUser, afterUser, beforeAssistant, afterAssistant}, stopStrings} "
                    "or {type: 'jinja', jinjaPromptTemplate: {template, bosToken, eosToken}, stopStrings}")


class ManualPromptTemplate(SettingsModel):
    """The strings around each role's message (LM Studio's ``LLMManualPromptTemplate``); unset = empty."""

    setting_kind: ClassVar[str] = "manualPromptTemplate"
    nesting_hint: ClassVar[str] = "it goes inside promptTemplate={'manualPromptTemplate': {...}}"
    root_allowed: ClassVar[str] = "a dict with beforeSystem/afterSystem/beforeUser/afterUser/beforeAssistant/afterAssistant"

    before_system: StrictStr | None = setting(_TEXT, "Text before a system message.")
    after_system: StrictStr | None = setting(_TEXT, "Text after a system message.")
    before_user: StrictStr | None = setting(_TEXT, "Text before a user message.")
    after_user: StrictStr | None = setting(_TEXT, "Text after a user message.")
    before_assistant: StrictStr | None = setting(_TEXT, "Text before an assistant message (and the reply).")
    after_assistant: StrictStr | None = setting(_TEXT, "Text after an assistant message.")

    def part(self, name: str) -> str:
        """The string ``name`` (``before_user``, …); an unset one is empty."""
        return getattr(self, name) or ""


class JinjaPromptTemplate(SettingsModel):
    """A Jinja chat template with its BOS and EOS texts (LM Studio's ``LLMJinjaPromptTemplate``)."""

    setting_kind: ClassVar[str] = "jinjaPromptTemplate"
    nesting_hint: ClassVar[str] = "it goes inside promptTemplate={'jinjaPromptTemplate': {...}}"
    root_allowed: ClassVar[str] = "a dict with template (and bosToken, eosToken)"

    template: NonEmptyStr | None = setting("a non-empty Jinja template string", "The Jinja chat template.")
    bos_token: StrictStr | None = setting(_TEXT, "The template's bos_token (default: the model's).")
    eos_token: StrictStr | None = setting(_TEXT, "The template's eos_token (default: the model's).")


class PromptTemplateSpec(SettingsModel):
    """The ``promptTemplate`` prediction setting: a manual or Jinja chat format, and its stop strings."""

    setting_kind: ClassVar[str] = "promptTemplate"
    nesting_hint: ClassVar[str] = "it goes inside the prediction setting promptTemplate={...}"
    root_allowed: ClassVar[str] = TEMPLATE_ALLOWED

    type: Literal["manual", "jinja"] | None = setting("'manual' or 'jinja'", "Which kind of template.")
    manual_prompt_template: ManualPromptTemplate | None = setting(
        "a dict of the six before/after strings", "The strings of a manual template.")
    jinja_prompt_template: JinjaPromptTemplate | None = setting(
        "a dict {template, bosToken, eosToken}", "The Jinja template.")
    stop_strings: list[NonEmptyStr] | None = setting(
        "a list of non-empty strings", "Strings that end the reply in this format.")

    @classmethod
    def expand_shorthand(cls, data: Any) -> Any:
        """A built-in template's name means its manual template."""
        if isinstance(data, str):
            if data not in BUILTIN_TEMPLATES:
                raise ConfigError(f"promptTemplate={data!r}: no built-in template of that name (built-in: "
                                  f"{', '.join(BUILTIN_TEMPLATES)})", key="prompt_template", value=data,
                                  allowed=TEMPLATE_ALLOWED)
            return BUILTIN_TEMPLATES[data]
        return data

    @model_validator(mode="after")
    def check_type_and_body(self) -> "PromptTemplateSpec":
        """``type`` is required and its template must be there."""
        if self.type is None:
            raise ConfigError("promptTemplate needs type: 'manual' or 'jinja'", key="prompt_template.type",
                              allowed="'manual' or 'jinja'")
        if self.type == "manual" and self.manual_prompt_template is None:
            raise ConfigError("promptTemplate type 'manual' needs manualPromptTemplate={beforeUser, afterUser, …}",
                              key="prompt_template.manual_prompt_template", allowed=TEMPLATE_ALLOWED)
        if self.type == "jinja" and (self.jinja_prompt_template is None or not self.jinja_prompt_template.template):
            raise ConfigError("promptTemplate type 'jinja' needs jinjaPromptTemplate={template: '…'}",
                              key="prompt_template.jinja_prompt_template", allowed=TEMPLATE_ALLOWED)
        return self



# The template's nested keys (template, type, beforeUser, …) are not offered as "did you mean" hints for the
# load and prediction settings' typos (``temprature`` must still suggest ``temperature``).
for _kind in (ManualPromptTemplate, JinjaPromptTemplate, PromptTemplateSpec):
    _SETTING_CLASSES.pop(_kind.setting_kind, None)
