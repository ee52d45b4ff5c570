"""Every field of LM Studio's Python SDK configs (lmstudio-python 1.6.0b1, ``src/lmstudio/_sdk_models/__init__.py``
``LlmLoadModelConfig`` and ``LlmPredictionConfig``) is accepted in camelCase and snake_case, and every field of
lmsext's own table (``LoadModelConfig``, ``PredictionConfig``) names a test that observes its effect on the real
engine. A field added to the table without such a test fails here.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import llama_cpp
import pytest

from lmsext.config import LoadModelConfig, PredictionConfig
from lmsext.engine import EngineModel
from lmsext.errors import ConfigError
from lmsext.models import embedded_model_path

TESTS = Path(__file__).resolve().parent

#: ``LlmLoadModelConfig`` of lmstudio-python 1.6.0b1 (snake_case attribute → camelCase wire name), in its order.
SDK_LOAD_FIELDS = {
    "gpu": "gpu", "gpu_strict_vram_cap": "gpuStrictVramCap", "offload_kv_cache_to_gpu": "offloadKVCacheToGpu",
    "context_length": "contextLength", "rope_frequency_base": "ropeFrequencyBase",
    "rope_frequency_scale": "ropeFrequencyScale", "eval_batch_size": "evalBatchSize",
    "flash_attention": "flashAttention", "keep_model_in_memory": "keepModelInMemory", "seed": "seed",
    "use_fp16_for_kv_cache": "useFp16ForKVCache", "try_mmap": "tryMmap", "num_experts": "numExperts",
    "llama_k_cache_quantization_type": "llamaKCacheQuantizationType",
    "llama_v_cache_quantization_type": "llamaVCacheQuantizationType",
}

#: ``LlmPredictionConfig`` of lmstudio-python 1.6.0b1, in its order.
SDK_PREDICTION_FIELDS = {
    "max_tokens": "maxTokens", "temperature": "temperature", "stop_strings": "stopStrings",
    "tool_call_stop_strings": "toolCallStopStrings", "context_overflow_policy": "contextOverflowPolicy",
    "structured": "structured", "raw_tools": "rawTools", "top_k_sampling": "topKSampling",
    "repeat_penalty": "repeatPenalty", "min_p_sampling": "minPSampling", "top_p_sampling": "topPSampling",
    "cpu_threads": "cpuThreads", "prompt_template": "promptTemplate", "draft_model": "draftModel",
    "speculative_decoding_num_draft_tokens_exact": "speculativeDecodingNumDraftTokensExact",
    "speculative_decoding_min_draft_length_to_consider": "speculativeDecodingMinDraftLengthToConsider",
    "speculative_decoding_min_continue_drafting_probability": "speculativeDecodingMinContinueDraftingProbability",
    "reasoning_parsing": "reasoningParsing", "raw": "raw",
}

#: SDK fields refused on purpose, with why (the SDK itself raises for ``raw``: it is not in its key map).
REFUSED_LIKE_THE_SDK = {"raw": "LM Studio's raw KV config; lmstudio-python raises Unknown config settings: ['raw']"}

#: Every field of lmsext's table → the test that observes its effect (file::function, in tests/).
OBSERVED_BY = {
    "draft_model": "test_speculative.py::test_greedy_speculation_is_the_plain_output_token_for_token",
    "speculative_decoding_num_draft_tokens_exact": "test_speculative.py::test_identity_pair_accepts_every_draft",
    "speculative_decoding_min_draft_length_to_consider": "test_speculative.py::test_min_draft_length_ignores_shorter_drafts",
    "speculative_decoding_min_continue_drafting_probability":
        "test_speculative.py::test_min_continue_probability_cuts_drafts_short",
    "max_parallel_predictions": "test_parallel.py::test_load_settings_reach_llama_cpp_and_rest",
    "use_unified_kv_cache": "test_parallel.py::test_load_settings_reach_llama_cpp_and_rest",
    "raw_tools": "test_act.py::test_tool_definitions_reach_the_models_template_and_history_renders_calls_and_results",
    "tool_call_stop_strings": "test_act.py::test_a_tool_call_stop_string_ends_the_prediction_with_the_call",
    # load
    "gpu": "test_engine_load.py::test_gpu_ratio_maps_to_layers_and_says_nothing_was_offloaded",
    "gpu_strict_vram_cap": "test_sdk_fields.py::test_gpu_strict_vram_cap_is_reported_and_noted_without_a_gpu",
    "offload_kv_cache_to_gpu": "test_sdk_fields.py::test_offload_kv_cache_to_gpu_reaches_llama_cpp",
    "context_length": "test_engine_load.py::test_context_length_rounded_to_what_llama_cpp_allocates",
    "rope_frequency_base": "test_engine_load.py::test_rope_frequency_base_reaches_llama_cpp",
    "rope_frequency_scale": "test_sdk_fields.py::test_rope_frequency_scale_reaches_llama_cpp",
    "eval_batch_size": "test_engine_load.py::test_eval_batch_size_reaches_n_batch",
    "flash_attention": "test_engine_load.py::test_flash_attention_and_quantized_cache_reach_the_context",
    "keep_model_in_memory": "test_engine_load.py::test_mmap_and_mlock_choose_the_load_mode",
    "seed": "test_api.py::test_load_seed_is_the_default_prediction_seed",  # load; prediction: below
    "use_fp16_for_kv_cache": "test_engine_load.py::test_fp32_cache_when_fp16_disabled",
    "try_mmap": "test_engine_load.py::test_mmap_and_mlock_choose_the_load_mode",
    "cpu_thread_pool_size": "test_threads.py::test_cpu_thread_pool_size_sets_both_and_is_capped_with_a_note",
    "num_experts": "test_engine_load.py::test_num_experts_on_moe_model_overrides_expert_used_count",
    "llama_k_cache_quantization_type": "test_engine_load.py::test_flash_attention_and_quantized_cache_reach_the_context",
    "llama_v_cache_quantization_type": "test_engine_load.py::test_flash_attention_and_quantized_cache_reach_the_context",
    # prediction
    "max_tokens": "test_api.py::test_stop_reasons",
    "temperature": "test_distribution.py::test_top_p_min_p_and_temperature",
    "stop_strings": "test_stop_strings.py::test_fifty_thousand_stop_strings_stop_at_the_one_that_occurs",
    "context_overflow_policy": "test_overflow.py::test_prompt_of_ten_contexts_under_each_policy",
    "structured": "test_api.py::test_structured_output_parses_into_the_pydantic_model",
    "top_k_sampling": "test_distribution.py::test_each_stage_reports_what_it_cut",
    "repeat_penalty": "test_distribution.py::test_repeat_penalty_lowers_the_repeated_tokens",
    "min_p_sampling": "test_distribution.py::test_top_p_min_p_and_temperature",
    "top_p_sampling": "test_distribution.py::test_top_p_min_p_and_temperature",
    "xtc_probability": "test_distribution.py::test_xtc_is_the_mixture_of_applied_and_skipped",
    "xtc_threshold": "test_distribution.py::test_xtc_is_the_mixture_of_applied_and_skipped",
    "cpu_threads": "test_api.py::test_cpu_threads_is_what_llama_cpp_runs_with",
    "prompt_template": "test_prompt_templates.py::test_the_template_is_what_the_model_sees_and_its_stop_strings_apply",
    "reasoning_parsing": "test_reasoning.py::test_grammar_forced_reasoning_on_a_model",
    "enable_thinking": "test_reasoning.py::test_enable_thinking_reaches_a_template_that_takes_it",
    "log_probs": "test_api.py::test_log_probs_give_the_token_probability_and_alternatives",
}
#: A field in both tables (``seed``) needs an observing test for each.
OBSERVED_BY_PREDICTION = {"seed": "test_api.py::test_temperature_zero_is_deterministic_and_seed_reproduces_sampling"}

#: A value each SDK field accepts (the SDK's own types).
SAMPLE = {
    "gpu": {"ratio": 0.5}, "gpu_strict_vram_cap": False, "offload_kv_cache_to_gpu": True, "context_length": 1024,
    "rope_frequency_base": 10000.0, "rope_frequency_scale": 1.0, "eval_batch_size": 256, "flash_attention": False,
    "keep_model_in_memory": False, "seed": 7, "use_fp16_for_kv_cache": True, "try_mmap": True, "num_experts": 0,
    "llama_k_cache_quantization_type": "q8_0", "llama_v_cache_quantization_type": "f16",
    "max_tokens": 50, "temperature": 0.6, "stop_strings": ["\n\n"], "context_overflow_policy": "stopAtLimit",
    "structured": {"type": "json", "jsonSchema": {"type": "object"}}, "top_k_sampling": 40, "repeat_penalty": 1.1,
    "min_p_sampling": 0.05, "top_p_sampling": 0.95, "cpu_threads": 2,
    "prompt_template": {"type": "manual", "manualPromptTemplate": {
        "beforeSystem": "", "afterSystem": "\n", "beforeUser": "Q: ", "afterUser": "\n", "beforeAssistant": "A:",
        "afterAssistant": "\n"}, "stopStrings": ["Q:"]},
    "reasoning_parsing": {"enabled": True, "startString": "<think>", "endString": "</think>"},
    "raw_tools": {"type": "toolArray", "tools": [{"type": "function", "function": {
        "name": "add", "description": "Add two integers.", "parameters": {
            "type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}}}}]},
    "tool_call_stop_strings": ["</tool_call>"],
    "draft_model": "lookup", "speculative_decoding_num_draft_tokens_exact": 4,
    "speculative_decoding_min_draft_length_to_consider": 1, "speculative_decoding_min_continue_drafting_probability": 0.5,
    "max_parallel_predictions": 2, "use_unified_kv_cache": True,
}

SDK_FIELDS = [(LoadModelConfig, k, v) for k, v in SDK_LOAD_FIELDS.items()] + [
    (PredictionConfig, k, v) for k, v in SDK_PREDICTION_FIELDS.items()]
APPLIED = [(cls, snake, camel) for cls, snake, camel in SDK_FIELDS
           if snake not in REFUSED_LIKE_THE_SDK]


@pytest.mark.parametrize("cls, snake, camel", APPLIED, ids=[f"{c.setting_kind}.{s}" for c, s, _ in APPLIED])
def test_every_sdk_field_is_accepted_in_both_spellings(cls, snake, camel):
    from_camel, from_snake = cls.parse({camel: SAMPLE[snake]}), cls.parse({snake: SAMPLE[snake]})
    assert from_camel == from_snake and from_camel.model_fields_set == {snake}
    assert cls.canonical_key(camel) == cls.canonical_key(snake) == snake
    assert from_camel.to_dict("camel")[camel] is not None


@pytest.mark.parametrize("snake", list(REFUSED_LIKE_THE_SDK))
def test_raw_is_refused_in_one_line_as_the_sdk_does(snake):
    with pytest.raises(ConfigError) as err:
        PredictionConfig.parse({SDK_PREDICTION_FIELDS[snake]: {"fields": []}})
    assert "raw" in str(err.value) and "\n" not in str(err.value)


def _test_exists(reference: str) -> bool:
    file, _, name = reference.partition("::")
    tree = ast.parse((TESTS / file).read_text(encoding="utf-8"))
    return any(isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == name
               for node in ast.walk(tree))


def test_every_field_of_the_table_has_a_test_that_observes_it():
    table = {"load": LoadModelConfig.model_fields, "prediction": PredictionConfig.model_fields}
    missing = [f"{kind}.{name}" for kind, fields in table.items() for name in fields
               if name not in OBSERVED_BY]
    assert not missing, f"fields without a test observing their effect: {missing}"
    references = {**OBSERVED_BY, **{f"prediction.{k}": v for k, v in OBSERVED_BY_PREDICTION.items()}}
    broken = {k: v for k, v in references.items() if not _test_exists(v)}
    assert not broken, f"observing tests that do not exist: {broken}"
    stale = [k for k in OBSERVED_BY if k not in LoadModelConfig.model_fields and k not in PredictionConfig.model_fields]
    assert not stale, f"OBSERVED_BY names fields that are not settings: {stale}"
    sdk = set(SDK_LOAD_FIELDS) | set(SDK_PREDICTION_FIELDS)
    assert sdk <= set(OBSERVED_BY) | set(REFUSED_LIKE_THE_SDK)


# ---- observing tests for the fields no other test observed


def _load(config):
    return EngineModel.load(embedded_model_path(), LoadModelConfig.parse({"contextLength": 256, **config}))


def test_rope_frequency_scale_reaches_llama_cpp():
    engine, report = _load({"ropeFrequencyScale": 0.5})
    assert re.search(r"llama_context: freq_scale\s+= 0\.5\b", "\n".join(report.log_lines))
    assert report.plan.effective["rope_frequency_scale"] == 0.5
    engine.close()


def test_offload_kv_cache_to_gpu_reaches_llama_cpp():
    on, on_report = _load({"offloadKVCacheToGpu": True})
    off, off_report = _load({"offloadKVCacheToGpu": False})
    assert on_report.plan.context_params["offload_kqv"] is True and off_report.plan.context_params["offload_kqv"] is False
    if not llama_cpp.llama_supports_gpu_offload():  # said, not pretended: the KV cache stays in RAM
        assert on_report.plan.effective["offload_kv_cache_to_gpu"] is False
        assert any("KV cache stays in RAM" in note for note in on_report.plan.notes)
    on.close()
    off.close()


def test_gpu_strict_vram_cap_is_reported_and_noted_without_a_gpu():
    engine, report = _load({"gpuStrictVramCap": True})
    assert report.plan.effective["gpu_strict_vram_cap"] is True
    if not llama_cpp.llama_supports_gpu_offload():
        assert any("gpu_strict_vram_cap has no effect" in note for note in report.plan.notes)
    engine.close()
