"""PredictionConfig: how one prediction is sampled (LM Studio's ``LLMPredictionConfigInput``)."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import ConfigDict, Field, StrictBool, field_validator

from .constants import CONTEXT_OVERFLOW_POLICIES, MAX_LOG_PROBS, MAX_SEED
from .limits import check_prediction_limits
from .prompt_template import TEMPLATE_ALLOWED, PromptTemplateSpec
from .reasoning import REASONING_ALLOWED, ReasoningParsingSpec
from .settings_base import SettingsModel, setting
from .spelling import alias_generator
from .structured import STRUCTURED_ALLOWED, StructuredSpec
from .tools import RAW_TOOLS_ALLOWED, RawToolsSetting
from .value_types import (FalseOnly, Int, NonEmptyStr, NonNegativeInt, PositiveFloat32, PositiveInt,
                          ProbabilityMassFloat, SeedInt, TemperatureFloat, UnitFloat, XtcThresholdFloat, quoted)

#: Most tokens one speculative draft may propose (a verification batch is one more).
MAX_DRAFT_TOKENS = 64
_STOP_ALLOWED = "a non-empty string or a list of non-empty strings"
_EXTRA_SPELLINGS = {
    "top_k_sampling": ("top_k", "topK"),
    "top_p_sampling": ("top_p", "topP"),
    "min_p_sampling": ("min_p", "minP"),
    "stop_strings": ("stop",),
}


class PredictionConfig(SettingsModel):
    """Per-prediction settings. Every field defaults to None = not set (engine/model default).

    Keys are accepted in snake_case (``max_tokens``), LM Studio SDK camelCase (``maxTokens``) and
    the short OpenAI/LM Studio REST names ``top_k``/``topK``, ``top_p``/``topP``, ``min_p``/``minP``
    and ``stop`` (a string or a list). Values are strictly typed: bools are not integers and numeric
    strings are rejected. ``False`` turns a sampler off (or, for ``max_tokens``, means no limit).
    Any problem raises :class:`~lmsext.errors.ConfigError`.
    """

    model_config = ConfigDict(alias_generator=alias_generator(_EXTRA_SPELLINGS))
    setting_kind: ClassVar[str] = "prediction"

    def check_limits(self) -> None:
        """The upper limits of :mod:`lmsext.config.limits` (``parse`` calls this)."""
        check_prediction_limits(self)
    root_allowed: ClassVar[str] = "a dict (any key spelling), a PredictionConfig or None"

    max_tokens: PositiveInt | FalseOnly | None = setting(
        "an integer >= 1, or False for no limit", "Most tokens to generate.")
    temperature: TemperatureFloat | None = setting("a number from 0 to 2", "Sampling temperature.")
    stop_strings: list[NonEmptyStr] | None = setting(_STOP_ALLOWED, "Strings that end the prediction.")
    tool_call_stop_strings: list[NonEmptyStr] | None = setting(
        _STOP_ALLOWED, "Strings that end the prediction after a tool call.")
    context_overflow_policy: Literal[CONTEXT_OVERFLOW_POLICIES] | None = setting(  # type: ignore[valid-type]
        f"one of {quoted(CONTEXT_OVERFLOW_POLICIES)}", "What to do when the chat outgrows the context.")
    structured: StructuredSpec | None = setting(
        STRUCTURED_ALLOWED, "Constrain the output to a JSON schema or a GBNF grammar.")
    top_k_sampling: NonNegativeInt | None = setting(
        "an integer >= 0 (0 turns it off)", "Sample only from the k most likely tokens.")
    repeat_penalty: PositiveFloat32 | FalseOnly | None = setting(
        "a number > 0 (at least 1.2e-38, a 32-bit float), or False to turn it off", "Penalty for repeating recent tokens (1 = none).")
    min_p_sampling: UnitFloat | FalseOnly | None = setting(
        "a number from 0 to 1, or False to turn it off", "Drop tokens less likely than min_p times the best.")
    top_p_sampling: ProbabilityMassFloat | FalseOnly | None = setting(
        "a number > 0 and <= 1, or False to turn it off", "Sample from the smallest set with this probability.")
    xtc_probability: UnitFloat | FalseOnly | None = setting(
        "a number from 0 to 1, or False to turn it off", "Chance that XTC sampling is applied to a token.")
    xtc_threshold: XtcThresholdFloat | FalseOnly | None = setting(
        "a number from 0 to 0.5, or False to turn it off", "Probability above which XTC removes tokens.")
    cpu_threads: PositiveInt | None = setting("an integer >= 1", "CPU threads used for generation.")
    draft_model: NonEmptyStr | None = setting(
        "a non-empty model key or path, or 'lookup' (prompt lookup, no second model)",
        "Small model proposing tokens for speculative decoding ('lookup': n-grams of the text so far).")
    speculative_decoding_num_draft_tokens_exact: Annotated[Int, Field(ge=1, le=MAX_DRAFT_TOKENS)] | None = setting(
        f"an integer from 1 to {MAX_DRAFT_TOKENS}", "Draft exactly this many tokens per step (default: adaptive, up to 8).")
    speculative_decoding_min_draft_length_to_consider: Annotated[Int, Field(ge=0, le=MAX_DRAFT_TOKENS)] | None = setting(
        f"an integer from 0 to {MAX_DRAFT_TOKENS}", "Drafts shorter than this are not verified.")
    speculative_decoding_min_continue_drafting_probability: UnitFloat | None = setting(
        "a number from 0 to 1", "The draft model keeps drafting while its confidence is at least this (default 0.75).")
    seed: SeedInt | None = setting(f"an integer from 0 to {MAX_SEED}", "Random seed of the sampler.")
    prompt_template: PromptTemplateSpec | None = setting(
        TEMPLATE_ALLOWED, "The chat format of respond(): a manual or Jinja template (instead of the model's).")
    reasoning_parsing: ReasoningParsingSpec | None = setting(
        REASONING_ALLOWED, "How the reasoning (<think>…</think>) is split from the answer (on by default).")
    enable_thinking: StrictBool | None = setting(
        "True or False", "enable_thinking for chat templates that take it (Qwen 3 style).")
    log_probs: Annotated[Int, Field(ge=0, le=MAX_LOG_PROBS)] | None = setting(
        f"an integer from 0 to {MAX_LOG_PROBS} (top alternatives per token)",
        "How many top alternatives to report with each generated token.")
    raw_tools: RawToolsSetting | None = setting(
        RAW_TOOLS_ALLOWED, "Tools the model may call (rendered through its chat template; calls parsed from the output).")

    @field_validator("stop_strings", "tool_call_stop_strings", mode="before")
    @classmethod
    def single_stop_string(cls, value: Any) -> Any:
        """A single string means a list of one."""
        return [value] if isinstance(value, str) else value
