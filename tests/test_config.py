"""Tests of lmsext.config: key spellings, value ranges, error messages, structured forms, merging."""

from __future__ import annotations

import ast
import json
import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

import lmsext.config as config
from lmsext.config.prompt_template import PromptTemplateSpec
from lmsext.config.reasoning import ReasoningParsingSpec
from lmsext.config import (CACHE_QUANTIZATION_TYPES, CONTEXT_OVERFLOW_POLICIES, ConfigError, GpuSetting,
                           LoadModelConfig, PredictionConfig, StructuredSpec)
from lmsext.config.tools import RawToolsSetting
from lmsext.errors import ConfigError as ErrorsConfigError

# --------------------------------------------------------------------------- spelling tables
# (snake, camel, a valid value, the value stored)
LOAD_FIELDS = [
    ("gpu", "gpu", 0.5, GpuSetting(ratio=0.5)),
    ("gpu_strict_vram_cap", "gpuStrictVramCap", True, True),
    ("offload_kv_cache_to_gpu", "offloadKVCacheToGpu", False, False),
    ("context_length", "contextLength", 4096, 4096),
    ("rope_frequency_base", "ropeFrequencyBase", 10000.0, 10000.0),
    ("rope_frequency_scale", "ropeFrequencyScale", 0.5, 0.5),
    ("eval_batch_size", "evalBatchSize", 512, 512),
    ("flash_attention", "flashAttention", True, True),
    ("keep_model_in_memory", "keepModelInMemory", True, True),
    ("seed", "seed", 42, 42),
    ("use_fp16_for_kv_cache", "useFp16ForKVCache", True, True),
    ("try_mmap", "tryMmap", False, False),
    ("cpu_thread_pool_size", "cpuThreadPoolSize", 2, 2),
    ("num_experts", "numExperts", 4, 4),
    ("llama_k_cache_quantization_type", "llamaKCacheQuantizationType", "q8_0", "q8_0"),
    ("llama_v_cache_quantization_type", "llamaVCacheQuantizationType", "q4_0", "q4_0"),
    ("max_parallel_predictions", "maxParallelPredictions", 4, 4),
    ("use_unified_kv_cache", "useUnifiedKvCache", False, False),
]
PREDICTION_FIELDS = [
    ("max_tokens", "maxTokens", 100, 100),
    ("temperature", "temperature", 0.7, 0.7),
    ("stop_strings", "stopStrings", ["\n\n"], ["\n\n"]),
    ("tool_call_stop_strings", "toolCallStopStrings", ["</tool>"], ["</tool>"]),
    ("context_overflow_policy", "contextOverflowPolicy", "rollingWindow", "rollingWindow"),
    ("structured", "structured", {"type": "none"}, StructuredSpec(type="none")),
    ("top_k_sampling", "topKSampling", 40, 40),
    ("repeat_penalty", "repeatPenalty", 1.1, 1.1),
    ("min_p_sampling", "minPSampling", 0.05, 0.05),
    ("top_p_sampling", "topPSampling", 0.95, 0.95),
    ("xtc_probability", "xtcProbability", 0.5, 0.5),
    ("xtc_threshold", "xtcThreshold", 0.1, 0.1),
    ("cpu_threads", "cpuThreads", 4, 4),
    ("draft_model", "draftModel", "qwen2.5-0.5b-instruct", "qwen2.5-0.5b-instruct"),
    ("speculative_decoding_num_draft_tokens_exact", "speculativeDecodingNumDraftTokensExact", 2, 2),
    ("speculative_decoding_min_draft_length_to_consider", "speculativeDecodingMinDraftLengthToConsider", 1, 1),
    ("speculative_decoding_min_continue_drafting_probability", "speculativeDecodingMinContinueDraftingProbability",
     0.75, 0.75),
    ("seed", "seed", 7, 7),
    ("prompt_template", "promptTemplate", "plain", PromptTemplateSpec.parse("plain")),
    ("reasoning_parsing", "reasoningParsing", {"enabled": False}, ReasoningParsingSpec.parse({"enabled": False})),
    ("enable_thinking", "enableThinking", False, False),
    ("log_probs", "logProbs", 5, 5),
    ("raw_tools", "rawTools", {"type": "none"}, RawToolsSetting(type="none")),
]
# The REST names of seed rest-load-a-model.md.
REST_LOAD_KEYS = ["context_length", "eval_batch_size", "flash_attention", "num_experts", "offload_kv_cache_to_gpu"]
ALL_FIELDS = [(LoadModelConfig, *row) for row in LOAD_FIELDS] + [(PredictionConfig, *row) for row in PREDICTION_FIELDS]
FIELD_IDS = [f"{cls.setting_kind}.{row[0]}" for cls, *row in ALL_FIELDS]


def message_of(cls, *args, **kwargs) -> ConfigError:
    """The ConfigError raised by ``cls.parse(*args, **kwargs)`` (fails if none is raised)."""
    with pytest.raises(ConfigError) as info:
        cls.parse(*args, **kwargs)
    return info.value


def assert_one_line(error: ConfigError) -> str:
    text = str(error)
    assert "\n" not in text and text.strip() == text and text
    return text


def test_public_api_is_exactly_the_brief():
    assert sorted(config.__all__) == sorted(["GpuSetting", "LoadModelConfig", "PredictionConfig", "StructuredSpec",
                                            "ConfigError", "CACHE_QUANTIZATION_TYPES",
                                            "CONTEXT_OVERFLOW_POLICIES",
                                            # LM Studio's facts the front ends need (issue 15: public API first)
                                            "CONTEXT_STEP", "DEFAULT_CONTEXT_LENGTH", "SAMPLING_DEFAULTS",
                                            "unescape"])
    assert ConfigError is ErrorsConfigError
    assert CACHE_QUANTIZATION_TYPES == ("f32", "f16", "q8_0", "q4_0", "q4_1", "iq4_nl", "q5_0", "q5_1")
    assert CONTEXT_OVERFLOW_POLICIES == ("stopAtLimit", "truncateMiddle", "rollingWindow")


def test_field_names_in_both_styles():
    assert LoadModelConfig.field_names("snake") == tuple(row[0] for row in LOAD_FIELDS)
    assert LoadModelConfig.field_names("camel") == tuple(row[1] for row in LOAD_FIELDS)
    assert PredictionConfig.field_names() == tuple(row[0] for row in PREDICTION_FIELDS)
    assert PredictionConfig.field_names("camel") == tuple(row[1] for row in PREDICTION_FIELDS)
    assert GpuSetting.field_names("camel") == ("ratio", "mainGpu", "splitStrategy", "disabledGpus")
    with pytest.raises(ConfigError, match="style='kebab'"):
        LoadModelConfig.field_names("kebab")


@pytest.mark.parametrize("cls, snake, camel, value, stored", ALL_FIELDS, ids=FIELD_IDS)
def test_snake_and_camel_spellings_are_equivalent(cls, snake, camel, value, stored):
    by_snake, by_camel = cls.parse({snake: value}), cls.parse({camel: value})
    assert by_snake == by_camel
    assert getattr(by_snake, snake) == stored
    assert by_snake.model_fields_set == by_camel.model_fields_set == {snake}
    assert cls(**{camel: value}) == by_camel
    assert cls.accepted_keys()[camel] == cls.accepted_keys()[snake] == snake
    assert cls.canonical_key(camel) == snake


@pytest.mark.parametrize("key", REST_LOAD_KEYS)
def test_rest_load_names_are_accepted(key):
    camel = dict((row[0], row[1]) for row in LOAD_FIELDS)[key]
    value = dict((row[0], row[2]) for row in LOAD_FIELDS)[key]
    assert LoadModelConfig.parse({key: value}) == LoadModelConfig.parse({camel: value})


def test_rest_example_request_and_response_shapes():
    cfg = LoadModelConfig.parse({"context_length": 16384, "flash_attention": True})
    assert cfg.explicit() == {"context_length": 16384, "flash_attention": True}
    # The REST response reports num_experts 0 for "model default"; sent back, it means the same.
    assert LoadModelConfig.parse({"context_length": 16384, "num_experts": 0}).explicit() == {
        "context_length": 16384, "num_experts": 0}


@pytest.mark.parametrize("cls, alias, canonical, value", [
    (PredictionConfig, "top_k", "top_k_sampling", 40),
    (PredictionConfig, "topK", "top_k_sampling", 40),
    (PredictionConfig, "top_p", "top_p_sampling", 0.9),
    (PredictionConfig, "topP", "top_p_sampling", 0.9),
    (PredictionConfig, "min_p", "min_p_sampling", 0.1),
    (PredictionConfig, "minP", "min_p_sampling", 0.1),
    (PredictionConfig, "stop", "stop_strings", ["END"]),
    (LoadModelConfig, "gpuOffload", "gpu", "max"),
    (LoadModelConfig, "gpu_offload", "gpu", "max"),
    (LoadModelConfig, "offloadKvCacheToGpu", "offload_kv_cache_to_gpu", True),
    (LoadModelConfig, "useFp16ForKvCache", "use_fp16_for_kv_cache", True),
])
def test_short_aliases(cls, alias, canonical, value):
    assert cls.parse({alias: value}) == cls.parse({canonical: value})
    assert cls.parse({alias: value}).model_fields_set == {canonical}


def test_stop_accepts_a_single_string():
    assert PredictionConfig(stop="\n").stop_strings == ["\n"]
    assert PredictionConfig(stopStrings=("a", "b")).stop_strings == ["a", "b"]
    assert PredictionConfig(toolCallStopStrings="</call>").tool_call_stop_strings == ["</call>"]
    assert PredictionConfig(stop=[]).stop_strings == []


# --------------------------------------------------------------------------- ranges
# (cls, key, accepted values, rejected values)
BOUNDARIES = [
    (LoadModelConfig, "contextLength", [1, 131072], [0, -5, 1.5, 4096.0, "4096", True, [4096]]),
    (LoadModelConfig, "evalBatchSize", [1, 2048], [0, -1, 512.0, "512", False]),
    (LoadModelConfig, "numExperts", [0, 1, 8], [-1, 2.0, True]),
    (LoadModelConfig, "seed", [0, 2**32 - 1], [-1, 2**32, 1.0, "1", True]),
    (LoadModelConfig, "ropeFrequencyBase", [1e-9, 1, 1e6, False], [0, 0.0, -1.0, True, math.inf, math.nan, "1"]),
    (LoadModelConfig, "ropeFrequencyScale", [0.25, 8, False], [0, -0.5, True, math.nan]),
    (LoadModelConfig, "llamaKCacheQuantizationType", [*CACHE_QUANTIZATION_TYPES, False],
     ["q8", "Q8_0", "f64", 16, True, 0]),
    (LoadModelConfig, "llamaVCacheQuantizationType", [*CACHE_QUANTIZATION_TYPES, False], ["bf16", True, 0]),
    (LoadModelConfig, "flashAttention", [True, False], [1, 0, "true", "yes", 1.0]),
    (LoadModelConfig, "gpuStrictVramCap", [True, False], [1, "false"]),
    (LoadModelConfig, "offloadKVCacheToGpu", [True, False], [0]),
    (LoadModelConfig, "keepModelInMemory", [True, False], [1]),
    (LoadModelConfig, "useFp16ForKVCache", [True, False], ["True"]),
    (LoadModelConfig, "tryMmap", [True, False], [0.0]),
    (LoadModelConfig, "gpu", [0, 1, 0.0, 1.0, 0.25, "max", "off", {}, {"ratio": 1}],
     [-0.1, 1.01, 2, True, False, "full", "MAX", math.nan, [0.5]]),
    (PredictionConfig, "maxTokens", [1, 10**6, False], [0, -1, True, 1.5, "100"]),
    (PredictionConfig, "temperature", [0, 0.0, 1, 2, 2.0], [-0.01, 2.01, True, "hot", "0.7", math.inf, math.nan]),
    (PredictionConfig, "topKSampling", [0, 1, 100], [-1, True, 40.0]),
    (PredictionConfig, "repeatPenalty", [0.01, 1, 1.5, False], [0, -1, True]),
    (PredictionConfig, "minPSampling", [0, 1, 0.5, False], [-0.01, 1.01, True]),
    (PredictionConfig, "topPSampling", [1e-6, 0.5, 1, False], [0, 0.0, 1.01, -1, True]),
    (PredictionConfig, "xtcProbability", [0, 1, False], [-0.1, 1.1, True]),
    (PredictionConfig, "xtcThreshold", [0, 0.5, 0.25, False], [0.51, -0.1, 1, True]),
    (PredictionConfig, "cpuThreads", [1, 64], [0, -2, True, 4.0]),
    (PredictionConfig, "seed", [0, 2**32 - 1], [-1, 2**32, False]),
    (PredictionConfig, "logProbs", [0, 20], [-1, 21, True, 1.0]),
    (PredictionConfig, "contextOverflowPolicy", list(CONTEXT_OVERFLOW_POLICIES),
     ["stopatlimit", "truncate", 0, True]),
    (PredictionConfig, "draftModel", ["a", "org/model-GGUF"], ["", 3, True, ["a"]]),
    (PredictionConfig, "stopStrings", ["x", ["a", "b"], []], ["", [""], ["a", 3], 3, [None]]),
    (PredictionConfig, "toolCallStopStrings", [["x"]], [[1], True]),
]
ACCEPT_CASES = [(cls, key, v) for cls, key, good, _ in BOUNDARIES for v in good]
REJECT_CASES = [(cls, key, v) for cls, key, _, bad in BOUNDARIES for v in bad]


@pytest.mark.parametrize("cls, key, value", ACCEPT_CASES, ids=[f"{k}={v!r}" for _, k, v in ACCEPT_CASES])
def test_boundary_accepted(cls, key, value):
    cfg = cls.parse({key: value})
    assert cfg.model_fields_set == {cls.canonical_key(key)}


@pytest.mark.parametrize("cls, key, value", REJECT_CASES, ids=[f"{k}={v!r}" for _, k, v in REJECT_CASES])
def test_boundary_rejected_with_key_value_and_allowed(cls, key, value):
    error = message_of(cls, {key: value})
    text = assert_one_line(error)
    assert text.startswith(f"{key}")
    assert ": must be " in text
    assert error.key.startswith(key)
    assert error.allowed and error.allowed in text


def test_int_stored_as_float_and_false_kept():
    assert PredictionConfig(temperature=1).temperature == 1.0
    assert isinstance(PredictionConfig(temperature=1).temperature, float)
    assert PredictionConfig(maxTokens=False).max_tokens is False
    assert PredictionConfig(repeatPenalty=False).repeat_penalty is False
    assert LoadModelConfig(ropeFrequencyBase=False).rope_frequency_base is False


@pytest.mark.parametrize("key", ["contextLength", "evalBatchSize", "numExperts", "seed"])
@pytest.mark.parametrize("flag", [True, False])
def test_bool_is_not_an_int(key, flag):
    assert "must be an integer" in str(message_of(LoadModelConfig, {key: flag}))


def test_error_message_examples_from_the_brief():
    assert str(message_of(LoadModelConfig, contextLength=-5)) == "contextLength=-5: must be an integer >= 1"
    assert str(message_of(PredictionConfig, temperature="hot")) == \
        "temperature='hot': must be a number from 0 to 2"
    assert str(message_of(LoadModelConfig, context_length=True)) == "context_length=True: must be an integer >= 1"


def test_error_carries_key_value_allowed():
    error = message_of(PredictionConfig, {"maxTokens": -1})
    assert (error.key, error.value) == ("maxTokens", -1)
    assert error.allowed == "an integer >= 1, or False for no limit"
    assert PredictionConfig.allowed("max_tokens") == error.allowed


def test_long_values_are_truncated():
    error = message_of(PredictionConfig, temperature="x" * 500)
    text = assert_one_line(error)
    shown = text.split("=", 1)[1].split(": must be")[0]
    assert len(shown) <= 60 and shown.endswith("...")
    assert error.value == "x" * 500


def test_multiline_values_stay_on_one_line():
    assert_one_line(message_of(PredictionConfig, draftModel=["a\nb", "c"]))
    assert_one_line(message_of(PredictionConfig, structured={"type": "gbnf", "gbnfGrammar": "a ::= b\nc ::= d"}))


def test_never_a_raw_validation_error():
    for attempt in (lambda: LoadModelConfig(contextLength="x"), lambda: LoadModelConfig.model_validate({"seed": -1}),
                    lambda: GpuSetting(ratio=3), lambda: StructuredSpec(type="gbnf"),
                    lambda: PredictionConfig.model_validate([1])):
        with pytest.raises(ConfigError):
            try:
                attempt()
            except ValidationError:  # pragma: no cover - the failure we test against
                pytest.fail("raw pydantic ValidationError escaped")


# --------------------------------------------------------------------------- unknown keys
@pytest.mark.parametrize("cls, typo, suggestion", [
    (LoadModelConfig, "contextLenght", "contextLength"),
    (LoadModelConfig, "context_lenght", "context_length"),
    (LoadModelConfig, "contextlength", "contextLength"),
    (LoadModelConfig, "ContextLength", "contextLength"),
    (LoadModelConfig, "flashAttn", "flashAttention"),
    (LoadModelConfig, "flash_attn", "flash_attention"),
    (LoadModelConfig, "offloadKvCacheToGPU", "offloadKVCacheToGpu"),
    (LoadModelConfig, "num_expert", "num_experts"),
    (PredictionConfig, "maxToken", "maxTokens"),
    (PredictionConfig, "max_token", "max_tokens"),
    (PredictionConfig, "temprature", "temperature"),
    (PredictionConfig, "stopString", "stopStrings"),
    (PredictionConfig, "repeat_penality", "repeat_penalty"),
])
def test_typo_suggests_nearest_key_in_same_style(cls, typo, suggestion):
    error = message_of(cls, {typo: 1})
    kind = cls.setting_kind
    assert str(error) == f"unknown {kind} setting {typo!r} — did you mean {suggestion!r}?"
    assert error.key == typo


def test_typo_in_gpu_dict():
    error = message_of(LoadModelConfig, gpu={"mainGPU": 1})
    assert str(error) == "unknown gpu setting 'mainGPU' — did you mean 'mainGpu'?"
    assert "'split_strategy'" in str(message_of(LoadModelConfig, gpu={"split_stratgy": "evenly"}))


def test_unknown_key_without_close_match_lists_valid_keys():
    text = assert_one_line(message_of(LoadModelConfig, {"xyzzy": 1}))
    assert text.startswith("unknown load setting 'xyzzy' (valid: gpu, gpu_strict_vram_cap,")
    text = str(message_of(PredictionConfig, {"fooBarBaz": 1}))
    assert "maxTokens" in text and "max_tokens" not in text


def test_non_string_key():
    assert "must be strings" in str(message_of(LoadModelConfig, {1: 2}))


@pytest.mark.parametrize("cls, key, other_kind", [
    (LoadModelConfig, "temperature", "prediction"),
    (LoadModelConfig, "maxTokens", "prediction"),
    (LoadModelConfig, "top_k", "prediction"),
    (PredictionConfig, "contextLength", "load"),
    (PredictionConfig, "flash_attention", "load"),
    (PredictionConfig, "gpu", "load"),
])
def test_setting_of_the_other_config(cls, key, other_kind):
    assert str(message_of(cls, {key: 1})) == f"{key!r} is a {other_kind} setting, not a {cls.setting_kind} setting"


def test_gpu_setting_at_top_level_says_where_it_goes():
    text = str(message_of(LoadModelConfig, mainGpu=1))
    assert text.startswith("'mainGpu' is a gpu setting, not a load setting") and "gpu={" in text
    assert str(message_of(LoadModelConfig, gpu={"contextLength": 5})) == \
        "'contextLength' is a load setting, not a gpu setting"


def test_typo_of_the_other_configs_key():
    assert str(message_of(LoadModelConfig, temprature=1)) == \
        "unknown load setting 'temprature' — did you mean the prediction setting 'temperature'?"


@pytest.mark.parametrize("cls, first, second", [
    (LoadModelConfig, "contextLength", "context_length"),
    (LoadModelConfig, "gpu", "gpuOffload"),
    (LoadModelConfig, "offloadKVCacheToGpu", "offloadKvCacheToGpu"),
    (PredictionConfig, "stop", "stopStrings"),
    (PredictionConfig, "top_k", "topKSampling"),
    (PredictionConfig, "topP", "top_p_sampling"),
])
def test_same_setting_twice_is_an_error_naming_both(cls, first, second):
    text = assert_one_line(message_of(cls, {first: 1, second: 2}))
    assert repr(first) in text and repr(second) in text and "give it once" in text


def test_non_dict_input():
    text = str(message_of(LoadModelConfig, [("contextLength", 5)]))
    assert text.startswith("load settings must be a dict")
    assert "PredictionConfig" in str(message_of(LoadModelConfig, PredictionConfig()))


# --------------------------------------------------------------------------- gpu
@pytest.mark.parametrize("given, expected", [
    (0.5, {"ratio": 0.5}), (1, {"ratio": 1.0}), (0, {"ratio": 0.0}), ("max", {"ratio": "max"}),
    ("off", {"ratio": "off"}),
    ({"ratio": 0.5, "mainGpu": 1, "splitStrategy": "favorMainGpu", "disabledGpus": [2, 3]},
     {"ratio": 0.5, "main_gpu": 1, "split_strategy": "favorMainGpu", "disabled_gpus": [2, 3]}),
    ({"main_gpu": 0, "split_strategy": "evenly", "disabled_gpus": []},
     {"main_gpu": 0, "split_strategy": "evenly", "disabled_gpus": []}),
])
def test_gpu_forms(given, expected):
    assert LoadModelConfig(gpu=given).gpu.explicit() == expected
    assert GpuSetting.parse(given).explicit() == expected


def test_gpu_instance_and_nested_errors():
    assert LoadModelConfig(gpu=GpuSetting(ratio="max")).gpu.ratio == "max"
    assert str(message_of(LoadModelConfig, gpu={"mainGpu": -1})) == \
        "gpu.mainGpu=-1: must be an integer >= 0 (a GPU index)"
    assert str(message_of(LoadModelConfig, gpu={"disabledGpus": [0, -1]})).startswith("gpu.disabledGpus[1]=-1:")
    assert str(message_of(LoadModelConfig, gpuOffload={"splitStrategy": "even"})).startswith(
        "gpuOffload.splitStrategy='even': must be 'evenly' or 'favorMainGpu'")
    assert str(message_of(LoadModelConfig, gpu=1.5)).startswith("gpu=1.5: must be a GPU offload ratio from 0 to 1")
    assert str(message_of(GpuSetting, 7)).startswith("gpu=7: must be a GPU offload ratio")


# --------------------------------------------------------------------------- structured
class Person(BaseModel):
    name: str
    age: int


SCHEMA = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}


@pytest.mark.parametrize("given", [
    SCHEMA,
    {"type": "json", "jsonSchema": SCHEMA},
    {"type": "json", "json_schema": SCHEMA},
    {"type": "json_schema", "json_schema": {"name": "answer", "strict": True, "schema": SCHEMA}},
    StructuredSpec(type="json", json_schema=SCHEMA),
])
def test_structured_json_forms(given):
    spec = PredictionConfig(structured=given).structured
    assert (spec.type, spec.json_schema, spec.gbnf_grammar, spec.model_class) == ("json", SCHEMA, None, None)


@pytest.mark.parametrize("schema", [
    {"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object"},
    {"properties": {"a": {}}},
    {"anyOf": [{"type": "string"}, {"type": "null"}]},
    {"type": ["string", "null"]},
    {"type": "array", "items": {"type": "integer"}},
    {"enum": ["a", "b"]},
])
def test_structured_plain_schema_variants(schema):
    assert StructuredSpec.parse(schema).json_schema == schema


def test_structured_from_pydantic_class():
    spec = PredictionConfig(structured=Person).structured
    assert spec.type == "json" and spec.model_class is Person
    assert spec.json_schema == Person.model_json_schema()
    assert spec.to_dict("camel") == {"type": "json", "jsonSchema": Person.model_json_schema()}
    assert StructuredSpec.parse({"type": "json", "model_class": Person}).model_class is Person


def test_structured_gbnf_and_none():
    grammar = 'root ::= "yes" | "no"'
    for given in ({"type": "gbnf", "gbnfGrammar": grammar}, {"type": "gbnf", "gbnf_grammar": grammar}):
        spec = StructuredSpec.parse(given)
        assert (spec.type, spec.gbnf_grammar, spec.json_schema) == ("gbnf", grammar, None)
    assert StructuredSpec.parse({"type": "none"}) == StructuredSpec(type="none")
    assert StructuredSpec.parse({"type": "json"}).json_schema is None


def test_structured_is_copied():
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    spec = StructuredSpec.parse(schema)
    schema["properties"]["a"]["type"] = "integer"
    assert spec.json_schema["properties"]["a"]["type"] == "string"


@pytest.mark.parametrize("given, start", [
    ({"type": "object", "properties": {"a": {"type": "strin"}}},
     "structured.properties.a.type='strin': must be one of"),
    ({"type": "objekt"}, "structured.type='objekt': must be one of 'array'"),
    ({"type": "object", "properties": ["a"]}, "structured.properties=['a']: must be a dict"),
    ({"type": "object", "properties": {"a": "string"}}, "structured.properties.a='string': must be a JSON schema"),
    ({"type": "json", "jsonSchema": {"type": 5}}, "structured.jsonSchema.type=5:"),
    ({"type": "json", "jsonSchema": "{}"}, "structured.jsonSchema='{}': must be a JSON schema dict"),
    ({"type": "gbnf", "gbnfGrammar": "answer ::= [a-z]+"}, "structured.gbnfGrammar='answer ::= [a-z]+': must be a "
                                                           "non-empty GBNF grammar string with a 'root ::=' rule"),
    ({"type": "gbnf", "gbnfGrammar": ""}, "structured.gbnfGrammar='': must be"),
    ({"type": "gbnf"}, "structured.gbnfGrammar=None: must be"),
    ({"type": "json", "jsonschema": {}}, "unknown structured setting 'jsonschema' in structured — did you mean "
                                         "'jsonSchema'?"),
    ({"type": "json", "jsonSchema": {}, "json_schema": {}}, "'jsonSchema' and 'json_schema' in structured"),
    ({"type": "none", "jsonSchema": SCHEMA}, "structured.jsonSchema is not allowed with type 'none'"),
    ({"type": "gbnf", "gbnfGrammar": "root ::= x", "jsonSchema": SCHEMA}, "structured.jsonSchema is not allowed"),
    ({"type": "json_schema", "json_schema": SCHEMA}, "structured.json_schema={"),
    ({"type": "json_schema", "json_schema": {"schema": SCHEMA}, "strict": True}, "unknown key 'strict'"),
    ({}, "structured={}: must be {'type': 'json', 'jsonSchema': {...}}, {'type': 'gbnf', 'gbnfGrammar': '...'}, "
         "{'type': 'none'}, a JSON schema dict, a pydantic model class or OpenAI's"),
    ({"name": "x"}, "structured={'name': 'x'}: must be"),
    (int, "structured=<class 'int'>: must be"),
    ("json", "structured='json': must be"),
    ({"type": "json", "model_class": dict}, "structured.model_class=<class 'dict'>: must be a pydantic model class"),
    ({"type": "object", "default": {1, 2}}, "structured: JSON schema is not JSON-serialisable"),
])
def test_structured_errors(given, start):
    error = message_of(PredictionConfig, structured=given)
    assert assert_one_line(error).startswith(start)
    assert error.key.startswith("structured")


def test_structured_to_dict_styles():
    spec = StructuredSpec.parse({"type": "json", "jsonSchema": SCHEMA})
    assert spec.to_dict("camel") == {"type": "json", "jsonSchema": SCHEMA}
    assert spec.to_dict("snake") == {"type": "json", "json_schema": SCHEMA}
    gbnf = StructuredSpec.parse({"type": "gbnf", "gbnfGrammar": "root ::= x"})
    assert gbnf.to_dict("camel") == {"type": "gbnf", "gbnfGrammar": "root ::= x"}
    assert StructuredSpec(type="none").to_dict("camel") == {"type": "none"}
    assert StructuredSpec.parse(spec.to_dict("camel")) == spec


# --------------------------------------------------------------------------- construction, merging, export
def test_none_means_not_set():
    assert LoadModelConfig.parse(None) == LoadModelConfig()
    cfg = LoadModelConfig(contextLength=None, gpu=None, seed=3)
    assert cfg.model_fields_set == {"seed"} and cfg.context_length is None
    assert LoadModelConfig().explicit() == {} and PredictionConfig().to_dict() == {}


def test_parse_forms():
    cfg = LoadModelConfig(context_length=2048)
    assert LoadModelConfig.parse(cfg) is cfg
    assert LoadModelConfig.parse({"contextLength": 1024}, contextLength=4096, flash_attention=True).explicit() == \
        {"context_length": 4096, "flash_attention": True}
    assert LoadModelConfig.parse(cfg, seed=1).explicit() == {"context_length": 2048, "seed": 1}
    assert LoadModelConfig.parse(None, num_experts=2).explicit() == {"num_experts": 2}
    assert PredictionConfig.parse(dict(temperature=0.2)).temperature == 0.2


def test_merged_overrides_and_keeps_set_fields():
    base = PredictionConfig(temperature=0.7, maxTokens=100, stop="x")
    merged = base.merged({"max_tokens": False, "topK": 20})
    assert merged.explicit() == {"max_tokens": False, "temperature": 0.7, "stop_strings": ["x"], "top_k_sampling": 20}
    assert base.explicit() == {"max_tokens": 100, "temperature": 0.7, "stop_strings": ["x"]}  # unchanged
    assert base.merged(None) == base and base.merged({"temperature": None}) == base
    assert base.merged(PredictionConfig(temperature=0.1)).temperature == 0.1
    assert PredictionConfig().merged(base).explicit() == base.explicit()
    with pytest.raises(ConfigError, match="maxTokens=0"):
        base.merged({"maxTokens": 0})


def test_merged_gpu_key_by_key():
    cfg = LoadModelConfig(gpu={"ratio": 0.5, "mainGpu": 0}, contextLength=4096)
    merged = cfg.merged({"gpu": {"mainGpu": 1}})
    assert merged.gpu.explicit() == {"ratio": 0.5, "main_gpu": 1}
    assert cfg.merged({"gpu": "max"}).gpu.explicit() == {"ratio": "max", "main_gpu": 0}
    assert LoadModelConfig().merged({"gpu": 0.25}).gpu == GpuSetting(ratio=0.25)


def test_explicit_and_to_dict():
    cfg = LoadModelConfig(gpu={"ratio": "max", "main_gpu": 1}, offloadKVCacheToGpu=True, seed=5)
    assert cfg.explicit() == {"gpu": GpuSetting(ratio="max", main_gpu=1), "offload_kv_cache_to_gpu": True, "seed": 5}
    assert cfg.to_dict("camel") == {"gpu": {"ratio": "max", "mainGpu": 1}, "offloadKVCacheToGpu": True, "seed": 5}
    assert cfg.to_dict() == {"gpu": {"ratio": "max", "main_gpu": 1}, "offload_kv_cache_to_gpu": True, "seed": 5}
    full = cfg.to_dict("camel", only_set=False)
    assert list(full) == list(LoadModelConfig.field_names("camel"))
    assert full["contextLength"] is None and full["gpu"]["splitStrategy"] is None
    json.dumps(full)
    with pytest.raises(ConfigError):
        cfg.to_dict("CAMEL")


FULL_LOAD = {row[1]: row[2] for row in LOAD_FIELDS}
FULL_PREDICTION = {row[1]: row[2] for row in PREDICTION_FIELDS} | {
    "structured": {"type": "json", "jsonSchema": SCHEMA}}


@pytest.mark.parametrize("cls, data", [
    (LoadModelConfig, FULL_LOAD),
    (PredictionConfig, FULL_PREDICTION),
    (LoadModelConfig, {"gpu": {"disabledGpus": [1]}}),
    (PredictionConfig, {"structured": {"type": "gbnf", "gbnfGrammar": "root ::= x"}}),
    (PredictionConfig, {"maxTokens": False, "repeatPenalty": False}),
])
@pytest.mark.parametrize("style", ["camel", "snake"])
def test_to_dict_round_trip(cls, data, style):
    cfg = cls.parse(data)
    exported = cfg.to_dict(style)
    assert json.loads(json.dumps(exported)) == exported
    again = cls.parse(exported)
    assert again == cfg and again.model_fields_set == cfg.model_fields_set
    assert cls.parse(cfg.to_dict(style, only_set=False)) == cfg


def test_immutable():
    cfg = LoadModelConfig(contextLength=5)
    with pytest.raises(ConfigError, match="read-only"):
        cfg.context_length = 6
    assert cfg.model_copy(update={"seed": 1}).seed == 1


def test_model_validate_json_copy_and_pickle():
    import copy
    import pickle

    cfg = LoadModelConfig.model_validate_json('{"contextLength": 8, "gpu": {"mainGpu": 1}}')
    assert cfg.explicit() == {"gpu": GpuSetting(main_gpu=1), "context_length": 8}
    assert copy.deepcopy(cfg) == cfg
    assert pickle.loads(pickle.dumps(cfg)).model_fields_set == cfg.model_fields_set
    with pytest.raises(ConfigError, match=r"^gpu\.mainGpu=-1: must be"):
        LoadModelConfig.model_validate_json('{"gpu": {"mainGpu": -1}}')
    with pytest.raises(ConfigError, match="not valid JSON"):
        PredictionConfig.model_validate_json("{temperature: 1")


def test_repr_shows_only_set_fields():
    assert repr(LoadModelConfig(contextLength=5)) == "LoadModelConfig(context_length=5)"
    assert repr(PredictionConfig()) == "PredictionConfig()"


def test_allowed_and_accepted_keys():
    assert LoadModelConfig.allowed("numExperts").startswith("an integer >= 0")
    assert "top_k" in PredictionConfig.accepted_keys() and "stop" in PredictionConfig.accepted_keys()
    assert LoadModelConfig.canonical_key("nope") is None
    with pytest.raises(ConfigError, match="did you mean 'numExperts'"):
        LoadModelConfig.allowed("numExpert")


def test_json_schema_generation_works():
    load_schema = LoadModelConfig.model_json_schema()
    assert "contextLength" not in load_schema["properties"]  # python names in the schema, aliases on input
    assert PredictionConfig.model_json_schema()["properties"]["temperature"]["allowed"] == "a number from 0 to 2"
    assert LoadModelConfig(contextLength=8).model_dump(by_alias=True, exclude_unset=True) == {"contextLength": 8}


def test_config_package_imports_no_engine_or_ui():
    package = Path(config.__file__).parent
    for path in package.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            else:
                continue
            for name in names:
                assert not name.startswith(("llama_cpp", "lmsext.engine", "lmsext.ui")), (path.name, name)
                assert not name.startswith("lmsext") or name == "lmsext.errors", (path.name, name)


# --------------------------------------------------------------------------- property-based round trips
finite = dict(allow_nan=False, allow_infinity=False)
load_values = st.fixed_dictionaries({}, optional={
    "gpu": st.one_of(st.floats(0, 1, **finite), st.sampled_from(["max", "off"]),
                     st.fixed_dictionaries({}, optional={"ratio": st.floats(0, 1, **finite),
                                                         "mainGpu": st.integers(0, 8),
                                                         "splitStrategy": st.sampled_from(["evenly", "favorMainGpu"]),
                                                         "disabledGpus": st.lists(st.integers(0, 8), max_size=3)})),
    "contextLength": st.integers(1, 2**20),
    "ropeFrequencyBase": st.one_of(st.just(False), st.floats(1e-3, 1e7, **finite)),
    "seed": st.integers(0, 2**32 - 1),
    "flashAttention": st.booleans(),
    "llamaKCacheQuantizationType": st.sampled_from([*CACHE_QUANTIZATION_TYPES, False]),
    "numExperts": st.integers(1, 64),
})
prediction_values = st.fixed_dictionaries({}, optional={
    "maxTokens": st.one_of(st.just(False), st.integers(1, 10**6)),
    "temperature": st.floats(0, 2, **finite),
    "stopStrings": st.lists(st.text(min_size=1, max_size=5), max_size=3),
    "topPSampling": st.one_of(st.just(False), st.floats(1e-6, 1, **finite)),
    "xtcThreshold": st.one_of(st.just(False), st.floats(0, 0.5, **finite)),
    "contextOverflowPolicy": st.sampled_from(CONTEXT_OVERFLOW_POLICIES),
    "logProbs": st.integers(0, 20),
})


@settings(max_examples=150, deadline=None)
@given(data=load_values, style=st.sampled_from(["snake", "camel"]), snake=st.booleans())
def test_load_round_trip_property(data, style, snake):
    if snake:  # the same settings spelled snake_case must give the same config
        data = {LoadModelConfig.canonical_key(k): v for k, v in data.items()}
    cfg = LoadModelConfig.parse(data)
    assert cfg.model_fields_set == {LoadModelConfig.canonical_key(k) for k in data}
    assert LoadModelConfig.parse(cfg.to_dict(style)) == cfg


@settings(max_examples=150, deadline=None)
@given(first=prediction_values, second=prediction_values, style=st.sampled_from(["snake", "camel"]))
def test_prediction_merge_property(first, second, style):
    a, b = PredictionConfig.parse(first), PredictionConfig.parse(second)
    merged = a.merged(b.to_dict(style))
    assert merged.model_fields_set == a.model_fields_set | b.model_fields_set
    for name in merged.model_fields_set:
        expected = getattr(b, name) if name in b.model_fields_set else getattr(a, name)
        assert getattr(merged, name) == expected
    assert PredictionConfig.parse(merged.to_dict(style)) == merged
