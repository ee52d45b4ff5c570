"""Each LM Studio load setting reaches llama.cpp: checked on the real engine (its own log and getters)."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import llama_cpp
import pytest

from lmsext.config import LoadModelConfig
from lmsext.engine import EngineModel, LOAD_SETTINGS, read_model_info
from lmsext.engine import logs
from lmsext.engine.devices import gpu_devices
from lmsext.errors import ConfigError, ModelLoadError, ModelNotLoadedError
from lmsext import synth
from lmsext.models import embedded_model_path

STORIES = embedded_model_path()


def load(config=None, path=STORIES):
    return EngineModel.load(path, LoadModelConfig.parse(config))


def log_text(report) -> str:
    return "\n".join(report.log_lines)


def test_defaults_are_lm_studio_defaults_and_reported():
    engine, report = load()
    eff = report.plan.effective
    assert eff["context_length"] == 2048  # min(4096, trained 2048)
    assert eff["eval_batch_size"] == 512 and engine.n_batch == 512
    gpu = bool(gpu_devices())  # what this build reports: default gpu is max where llama.cpp sees a GPU
    assert eff["flash_attention"] is False or gpu  # AUTO (resolved by llama.cpp) where layers go to a GPU
    assert eff["num_experts"] == 0  # dense, as in seed 002's response
    assert eff["offload_kv_cache_to_gpu"] is gpu  # reported honestly: False without a GPU backend
    assert eff["gpu"]["layers"] == (6 if gpu else 0) and eff["gpu"]["total_layers"] == 6
    assert set(s.name for s in LOAD_SETTINGS if "(" not in s.name) <= set(eff)
    engine.close()


def test_context_length_rounded_to_what_llama_cpp_allocates():
    engine, report = load({"contextLength": 1000})
    assert engine.n_ctx == 1024
    assert report.plan.effective["context_length"] == 1024
    assert any("1000 → 1024" in n for n in report.plan.notes)
    engine.close()


def test_eval_batch_size_reaches_n_batch():
    engine, report = load({"evalBatchSize": 64, "contextLength": 512})
    assert engine.n_batch == 64 and report.n_ubatch == 64
    engine.close()


@pytest.fixture(scope="module")
def head32_model(tmp_path_factory):
    """A generated model whose attention heads (32) fit the quantized cache blocks."""
    return synth.write_model(tmp_path_factory.mktemp("m") / "head32.gguf", n_layer=2, n_embd=128, n_head=4)


def test_flash_attention_and_quantized_cache_reach_the_context(head32_model):
    engine, report = load({"flashAttention": True, "llamaKCacheQuantizationType": "q8_0",
                           "llamaVCacheQuantizationType": "q8_0", "contextLength": 512}, path=head32_model)
    text = log_text(report)
    assert re.search(r"flash_attn\s+= enabled", text)
    assert "K (q8_0)" in text and "V (q8_0)" in text
    f16_engine, f16_report = load({"contextLength": 512}, path=head32_model)
    assert report.kv_cache_bytes < f16_report.kv_cache_bytes
    engine.close(), f16_engine.close()


def test_fp32_cache_when_fp16_disabled():
    engine, report = load({"useFp16ForKVCache": False, "contextLength": 256})
    assert "K (f32)" in log_text(report)
    engine.close()


def test_quantized_v_cache_without_flash_attention_is_refused_before_llama_cpp(head32_model):
    with pytest.raises(ConfigError, match="flash attention"):
        load({"llamaVCacheQuantizationType": "q4_0"}, path=head32_model)


def test_quantized_cache_on_a_head_size_that_does_not_fit_is_refused():
    with pytest.raises(ConfigError, match="head size 8 is not a multiple"):
        load({"flashAttention": True, "llamaKCacheQuantizationType": "q8_0"})


def test_rope_frequency_base_reaches_llama_cpp():
    engine, report = load({"ropeFrequencyBase": 20000.0, "contextLength": 256})
    assert re.search(r"llama_context: freq_base\s+= 20000", log_text(report))
    engine.close()


def test_mmap_and_mlock_choose_the_load_mode():
    engine, report = load({"tryMmap": False, "contextLength": 256})
    assert "load_mode = none" in log_text(report)
    engine.close()
    engine, report = load({"keepModelInMemory": True, "contextLength": 256})
    assert "load_mode = mmap+mlock" in log_text(report)
    assert report.plan.effective["keep_model_in_memory"] is True
    engine.close()


def test_gpu_ratio_maps_to_layers_and_says_nothing_was_offloaded():
    engine, report = load({"gpu": {"ratio": 0.5}, "contextLength": 256})
    assert report.plan.model_params["n_gpu_layers"] == 3  # 0.5 × (5 blocks + output)
    if gpu_devices():  # what this build reports
        assert report.plan.effective["gpu"]["layers"] == 3 and not any("offloaded" in n for n in report.plan.notes)
    else:
        assert report.plan.effective["gpu"]["layers"] == 0
        assert any("0 of 6 layers offloaded" in n and "no GPU backend" in n for n in report.plan.notes)
    engine.close()


def test_num_experts_on_moe_model_overrides_expert_used_count(tmp_path):
    moe = synth.moe_model(tmp_path)
    info = read_model_info(moe)
    assert info.expert_count == 4 and info.expert_used_count == 2
    engine, report = load({"numExperts": 1, "contextLength": 256}, path=moe)
    assert report.plan.kv_overrides == {"llama.expert_used_count": 1}
    assert re.search(r"n_expert_used\s+= 1\b", log_text(report))
    assert report.plan.effective["num_experts"] == 1
    engine.close()


@pytest.mark.parametrize("n", [5, 99])
def test_num_experts_above_expert_count_is_refused(tmp_path, n):
    with pytest.raises(ConfigError, match=r"has 4 experts; choose 1\.\.4"):
        load({"numExperts": n}, path=synth.moe_model(tmp_path))


def test_num_experts_zero_is_the_models_default(tmp_path):
    with pytest.raises(ConfigError, match="numExperts"):
        LoadModelConfig.parse({"numExperts": -1})
    engine, report = load({"numExperts": 0, "contextLength": 256}, path=synth.moe_model(tmp_path))
    assert report.plan.kv_overrides == {} and report.plan.effective["num_experts"] == 2
    assert re.search(r"n_expert_used\s+= 2\b", log_text(report))
    engine.close()


def test_num_experts_on_dense_model_is_refused():
    with pytest.raises(ConfigError, match="dense model"):
        load({"numExperts": 2})


def test_camel_snake_and_rest_spellings_load_identically():
    a, ra = load({"contextLength": 512, "evalBatchSize": 128, "flashAttention": True})
    b, rb = load({"context_length": 512, "eval_batch_size": 128, "flash_attention": True})
    assert ra.plan.effective == rb.plan.effective
    assert ra.plan.context_params == rb.plan.context_params
    a.close(), b.close()


def test_using_a_closed_model_raises_instead_of_crashing():
    engine, _ = load({"contextLength": 256})
    engine.close()
    engine.close()  # twice is fine
    with pytest.raises(ModelNotLoadedError):
        engine.tokenize("hello")
    with pytest.raises(ModelNotLoadedError):
        _ = engine.ctx


def test_bad_files_are_clear_errors(tmp_path):
    empty = tmp_path / "empty.gguf"
    empty.write_bytes(b"")
    text = tmp_path / "notes.gguf"
    text.write_text("hello, not a model")
    truncated = tmp_path / "truncated.gguf"
    truncated.write_bytes(STORIES.read_bytes()[:5000])
    for path, pattern in [(empty, "empty or truncated"), (text, "not a GGUF file"),
                          (tmp_path, "is a directory"), (truncated, "not a valid GGUF|could not load")]:
        with pytest.raises(ModelLoadError, match=pattern):
            load(None, path=path)


def test_llama_cpp_logs_go_to_python_logging_not_the_terminal(capfd):
    with logs.capture_logs(logging.DEBUG) as records:
        engine, _ = load({"contextLength": 256})
    engine.close()
    out, err = capfd.readouterr()
    assert out == "" and err == ""
    levels = {r.levelno for r in records}
    assert logging.INFO in levels or logging.DEBUG in levels
    assert all(r.name == "lmsext.llama_cpp" for r in records)
    assert not any(r.levelno >= logging.ERROR for r in records)
