"""A prediction's ``promptTemplate`` applied: chat messages → the prompt text in the user's chosen format.

Rendered here, above the engines, so that a manual or Jinja template works the same on the in-kernel engine and
(as a raw prompt string) on a remote one. The text goes to the engine as a :class:`~lmsext.backend.TemplatedPrompt`
(special tokens parsed, no second BOS), with the template's ``stopStrings`` added to the prediction's; the
engine's prefix reuse keeps a chat's earlier turns in the KV cache as with the model's own template. A Jinja
template renders in :mod:`lmsext.chat_templates`' sandbox under its render budget; any failure is one
:class:`~lmsext.errors.ConfigError` line naming ``promptTemplate``.
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

from .backend import Engine, LoadedModel, SupportsVocabulary, TemplatedPrompt
from .chat_templates import ChatTemplate
from .config import PredictionConfig
from .config.prompt_template import PromptTemplateSpec
from .errors import ConfigError, PredictionError

_ROLE_PARTS = {"system": ("before_system", "after_system"), "assistant": ("before_assistant", "after_assistant")}
_USER_PARTS = ("before_user", "after_user")
JINJA_LABEL = "promptTemplate's Jinja template"


def render_manual(spec: PromptTemplateSpec, messages: Sequence[dict[str, Any]],
                  add_generation_prompt: bool = True) -> str:
    """Each message between its role's before/after strings (any other role counts as the user's), then
    ``beforeAssistant`` for the reply."""
    manual = spec.manual_prompt_template
    assert manual is not None  # checked when the spec was parsed
    parts: list[str] = []
    for message in messages:
        before, after = _ROLE_PARTS.get(str(message.get("role")), _USER_PARTS)
        parts.append(f"{manual.part(before)}{message.get('content') or ''}{manual.part(after)}")
    if add_generation_prompt:
        parts.append(manual.part("before_assistant"))
    return "".join(parts)


@functools.lru_cache(maxsize=16)
def _jinja(source: str, bos_token: str, eos_token: str) -> ChatTemplate:
    return ChatTemplate(source, bos_token=bos_token, eos_token=eos_token, label=JINJA_LABEL)


def render_template(spec: PromptTemplateSpec, messages: Sequence[dict[str, Any]], *, bos_token: str = "",
                    eos_token: str = "", add_generation_prompt: bool = True, **variables: Any) -> TemplatedPrompt:
    """The prompt ``spec`` makes of ``messages``; a Jinja template's own ``bosToken``/``eosToken`` win over the
    model's ``bos_token``/``eos_token``; ``variables`` (``enable_thinking``) go to a Jinja template. ConfigError."""
    if spec.type == "manual":
        return TemplatedPrompt(render_manual(spec, messages, add_generation_prompt))
    jinja = spec.jinja_prompt_template
    assert jinja is not None and jinja.template  # checked when the spec was parsed
    bos = jinja.bos_token if jinja.bos_token is not None else bos_token
    eos = jinja.eos_token if jinja.eos_token is not None else eos_token
    try:
        template = _jinja(jinja.template, bos, eos)
        return TemplatedPrompt(template.render(messages, add_generation_prompt=add_generation_prompt, **variables))
    except PredictionError as exc:
        raise ConfigError(str(exc), key="prompt_template", value=jinja.template[:80]) from None


#: Settings applied here, above the engine (the template and its variables): not passed on to the engine.
APPLIED_ABOVE_THE_ENGINE = ("prompt_template", "enable_thinking")


def engine_config(config: PredictionConfig) -> PredictionConfig:
    """What the engine is given once ``config``'s template is applied: the same settings without
    ``promptTemplate`` and ``enableThinking``, the template's stop strings added to the prediction's own."""
    spec = config.prompt_template
    values = {k: v for k, v in config.explicit().items() if k not in APPLIED_ABOVE_THE_ENGINE}
    stops = list(config.stop_strings or [])
    stops += [stop for stop in (spec.stop_strings or []) if stop not in stops]
    if stops:
        values["stop_strings"] = stops
    return PredictionConfig.parse(values)


def model_special_texts(engine: Engine, model: LoadedModel) -> tuple[str, str]:
    """The model's BOS and EOS texts (a Jinja template's default ``bos_token``/``eos_token``); empty where the
    engine has no vocabulary (a remote server)."""
    if not isinstance(engine, SupportsVocabulary):
        return "", ""

    def text(token: int | None) -> str:
        return engine.token_text(model, token) if token is not None and token >= 0 else ""
    return text(model.info.bos_token_id), text(model.info.eos_token_id)


def with_template(config: PredictionConfig, model: LoadedModel) -> PredictionConfig:
    """``config`` with the template a chat is rendered with here: its ``promptTemplate``, or, when
    ``enableThinking`` is set and the model's own Jinja template takes ``enable_thinking``, that template (so
    the variable reaches it on every engine); otherwise ``config`` as is (the engine renders the model's)."""
    source = model.info.chat_template
    if config.prompt_template is not None or config.enable_thinking is None or not source \
            or "enable_thinking" not in source:
        return config
    return config.merged({"prompt_template": {"type": "jinja", "jinja_prompt_template": {"template": source}}})


def templated_prompt(engine: Engine, model: LoadedModel, messages: Sequence[dict[str, Any]],
                     config: PredictionConfig) -> TemplatedPrompt:
    """``messages`` in ``config.prompt_template``'s format, with the model's BOS/EOS texts as defaults and
    ``enable_thinking`` when ``enableThinking`` is set."""
    assert config.prompt_template is not None
    bos, eos = model_special_texts(engine, model)
    variables = {} if config.enable_thinking is None else {"enable_thinking": config.enable_thinking}
    return render_template(config.prompt_template, messages, bos_token=bos, eos_token=eos, **variables)
