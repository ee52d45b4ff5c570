"""Rendering (lmsext.render) and the magics' argument helpers (lmsext.magics.args, .flags) without a model."""

from __future__ import annotations

import pytest
from IPython.core.error import UsageError

from lmsext.engine.gguf_info import ModelInfo
from lmsext.errors import ConfigError
from lmsext.results import LoadResult, PredictionResult, PredictionStats
from lmsext import render as views
from lmsext.magics.args import config_value, interpolate, key_values, unescape, value_goes_to_displayhook
from lmsext.config import LoadModelConfig, PredictionConfig
from lmsext.magics.flags import LOAD_FLAGS, PREDICTION_FLAGS, flag_values, parse_flags, reword_flag_error
from lmsext.magics.models import ModelMagics
from lmsext.magics.predict import PredictMagics
from lmsext.session import Session

CONFIG = {"context_length": 1024, "eval_batch_size": 512, "flash_attention": False, "num_experts": 2,
          "offload_kv_cache_to_gpu": False,
          "gpu": {"ratio": 0.5, "layers": 0, "total_layers": 6, "main_gpu": 0, "split_strategy": "evenly",
                  "disabled_gpus": []},
          "seed": None, "rope_frequency_base": False, "llama_k_cache_quantization_type": "f16"}


def info(**kw):
    base = dict(path="/m/<x>.gguf", file_size=1_185_376, architecture="llama", name="x", parameter_count=292_800,
                quantization="F32", n_layer=5, n_embd=64, n_head=8, n_head_kv=4, n_vocab=512, trained_context=2048,
                expert_count=0, expert_used_count=0, chat_template=None, bos_token_id=1, eos_token_id=2)
    return ModelInfo(**{**base, **kw})


def load_result(**kw):
    base = dict(model_instance_id="x", model_key="x", path="/m/<x>.gguf", config=dict(CONFIG), load_time_seconds=0.0123,
                requested={"context_length": 1000, "gpu": {"ratio": 0.5}},
                notes=["context_length 1000 → 1024: rounded", "gpu 0.5 requested → 0 of 6 layers offloaded: <no GPU>"],
                model_info=info(expert_count=4, expert_used_count=2), memory={"weights": 1_171_200, "kv_cache": 655_360},
                chat_template="lmsext-plain", llama_params={"context": {"n_ctx": 1024}})
    return LoadResult(**{**base, **kw})


def stats(**kw):
    base = dict(stop_reason="maxPredictedTokensReached", predicted_tokens_count=50, prompt_tokens_count=3,
                tokens_per_second=5117.08, time_to_first_token_sec=0.0021, generation_time_sec=0.01)
    return PredictionStats(**{**base, **kw})


def test_text_summary_sections_and_alignment():
    text = views.load_summary_text(load_result())
    assert text.splitlines()[0] == "loaded x as 'x' in 0.012 s"
    for expected in ("experts          4 (2 used per token by default)", "file size        1.13 MiB",
                     "parameters       293K", "Memory     weights 1.12 MiB · KV cache 640 KiB · total 1.74 MiB",
                     "Load time  0.012 s", "  ! gpu 0.5 requested → 0 of 6 layers offloaded: <no GPU>"):
        assert expected in text, expected
    rows = {line.split()[0]: line for line in text.splitlines() if line[:2] in (" !", " *")}
    assert rows["!context_length"].split()[1:] == ["1024", "1000"]  # effective, then requested
    assert "0/6 layers on GPU (ratio 0.5)" in rows["!gpu"] and rows["!gpu"].rstrip().endswith("0.5")
    assert rows["*num_experts"].split()[1] == "2"
    cols = {line.index(line.split()[1]) for line in rows.values()}
    assert len(cols) == 1  # one aligned value column
    assert "null (random per prediction)" in text and "false (the model's own)" in text


def test_html_summary_escapes_and_marks_what_was_applied_differently():
    html = views.load_summary_html(load_result())
    assert "&lt;x&gt;.gguf" in html and "<x>" not in html and "&lt;no GPU&gt;" in html
    assert html.count("⚠") == 2  # context_length and gpu rows
    assert "<b>context_length</b>" in html and "<b>num_experts</b>" in html  # REST keys in bold
    assert "n_ctx" in html and "llama.cpp parameters" in html


def test_reused_summary_and_result_reprs():
    lr = load_result(reused=True)
    assert views.load_summary_text(lr).startswith("'x' was already loaded")
    assert lr._repr_html_() == views.load_summary_html(lr) and str(lr) == views.load_summary_text(lr)
    b = views.load_summary_bundle(lr)
    assert set(b) == {"text/plain", "text/html"}


def test_stats_line_and_prediction_reprs():
    assert views.stats_line(stats()) == ("50 tokens · 5117.1 tok/s · first token 2.1 ms · "
                                         "stop: maxPredictedTokensReached (hit the token limit)")
    s = stats(stop_reason="stopStringFound", stop_string="\n", tokens_per_second=None, time_to_first_token_sec=1.5,
              truncated_prompt_tokens_count=7, error="boom")
    assert views.stats_line(s) == ("50 tokens · – tok/s · first token 1.50 s · stop: stopStringFound (stop string '\\n' matched) · "
                                   "7 prompt tokens truncated · error: boom")
    r = PredictionResult(content="<b>hi</b>", stats=stats(), model_instance_id="x", model_info=info(),
                         prediction_config={}, parse_error="output is not complete JSON")
    html = r._repr_html_()
    assert "&lt;b&gt;hi&lt;/b&gt;" in html and "lmsext-stats" in html and "not complete JSON" in html
    assert views.prediction_text(r) == "<b>hi</b>\noutput is not complete JSON\n\n[" + views.stats_line(r.stats) + "]"


def test_stop_reasons_in_plain_words_beside_lm_studios_names():
    """Every stop reason of LM Studio's eight has its plain words; the notebook's default limit says how to change it."""
    from lmsext.render.stop_reasons import STOP_LABELS, bound_note
    assert set(STOP_LABELS) == {"userStopped", "modelUnloaded", "failed", "eosFound", "stopStringFound", "toolCalls",
                                "maxPredictedTokensReached", "contextLengthReached"}
    assert views.stats_line(stats(stop_reason="eosFound")).endswith("stop: eosFound (the model ended its reply)")
    assert views.stats_line(stats(stop_reason="userStopped")).endswith("stop: userStopped (stopped by the user)")
    bounded = stats(notes=[bound_note(256)])
    assert views.stats_line(bounded).endswith(
        "stop: maxPredictedTokensReached (hit the 256-token limit — --max-tokens to change)")
    assert views.stats_line(stats(stop_reason="eosFound", notes=[bound_note(256)])).endswith("(the model ended its reply)")


def test_stream_bundle_markdown_only_for_the_final_frame():
    assert "text/markdown" not in views.stream_bundle("**a**", markdown=True)
    final = views.stream_bundle("**a**", stats(), markdown=True)
    assert final["text/markdown"].startswith("**a**") and "maxPredictedTokensReached" in final["text/markdown"]


def test_error_bundle_is_one_red_line():
    b = views.error_bundle("%lm_load: bad\nvalue <here>")
    assert b["text/plain"] == "\x1b[31m%lm_load: bad value <here>\x1b[0m"
    assert b["text/html"] == '<span style="color:red">%lm_load: bad value &lt;here&gt;</span>'


def test_table_bundle_aligns_and_handles_empty():
    b = views.table_bundle(["a", "long header"], [["xxxxx", 1], ["y", 22]], title="T")
    lines = b["text/plain"].splitlines()
    assert lines == ["T", "a      long header", "xxxxx  1", "y      22"]
    assert "<th" in b["text/html"]
    assert views.table_bundle(["a"], [], empty="nothing")["text/plain"] == "nothing"


# ------------------------------------------------------------------------------ magic_args helpers

def test_key_values_parses_literals_lists_with_spaces_and_bare_words():
    assert key_values("temperature=0.3 maxTokens=40 stop=['a b', \"c\"] policy=rollingWindow flag=true x=None") == {
        "temperature": 0.3, "maxTokens": 40, "stop": ["a b", "c"], "policy": "rollingWindow", "flag": True,
        "x": None}
    assert key_values("gpu={'ratio': 0.5}  seed = 3") == {"gpu": {"ratio": 0.5}, "seed": 3}
    assert key_values("") == {}
    with pytest.raises(UsageError, match="expected key=value"):
        key_values("temperature")
    with pytest.raises(UsageError, match="given twice"):
        key_values("a=1 a=2")


def test_interpolate_names_attributes_items_formats_and_escapes():
    ns = {"name": "Lily", "d": {"k": 1}, "x": 0.12345}
    assert interpolate("{name} {d[k]} {x:.2f} {{lit}} }}", ns) == "Lily 1 0.12 {lit} }"
    with pytest.raises(UsageError, match="no variable 'nope'"):
        interpolate("{nope}", ns)
    with pytest.raises(UsageError, match="literal braces"):
        interpolate("{} and {", ns)


def test_unescape_and_config_value():
    assert unescape(r"a\nb\tc\\n\q") == "a\nb\tc\\n\\q"
    assert config_value('{"contextLength": 512}', {}) == {"contextLength": 512}
    assert config_value("{cfg}", {"cfg": {"a": 1}}) == {"a": 1}
    with pytest.raises(UsageError, match="must be a JSON object"):
        config_value("[1]", {})


def test_flag_errors_name_the_flag():
    exc = ConfigError("llama_k_cache_quantization_type='q9': must be one of x", key="llama_k_cache_quantization_type",
                      value="q9", allowed="one of x")
    assert str(reword_flag_error(exc, LOAD_FLAGS)) == "--k-cache 'q9': must be one of x"
    other = ConfigError("numExperts=2: dense", key="num_experts")
    assert reword_flag_error(other, LOAD_FLAGS) is other


#: a valid value for the flags whose setting takes no plain number
FLAG_SAMPLES = {"--gpu": "off", "--k-cache": "q8_0", "--v-cache": "q8_0", "--stop": "x", "--top-p": "0.9",
                "--min-p": "0.1", "--temperature": "0.5", "--repeat-penalty": "1.1"}


@pytest.mark.parametrize("magic, table, settings", [(ModelMagics.lm_load, LOAD_FLAGS, LoadModelConfig),
                                                     (PredictMagics.lm_respond, PREDICTION_FLAGS, PredictionConfig),
                                                     (PredictMagics.lm_complete, PREDICTION_FLAGS, PredictionConfig)])
def test_each_flag_of_the_derived_tables_sets_exactly_its_setting(magic, table, settings):
    """The flag -> setting tables are read from the magics' argparse flags: each flag, parsed by the magic's
    own parser, sets its one setting; the flags that are no setting (--model, --structured) are not in them."""
    assert {"--k-cache", "--mmap", "--context-length"} <= set(LOAD_FLAGS.values())
    assert {"--top-k", "--stop", "--probs", "--seed"} <= set(PREDICTION_FLAGS.values())
    assert "structured" not in PREDICTION_FLAGS and "--model" not in PREDICTION_FLAGS.values()
    for key, flag in table.items():
        try:
            args = magic.parser.parse_args([flag])  # a switch (--mmap), or an optional value (--probs)
        except UsageError:  # "expected one argument"
            args = magic.parser.parse_args([flag, FLAG_SAMPLES.get(flag, "2")])
        config = parse_flags(settings, flag_values(args, table), table)
        assert config.model_fields_set == {key}, flag


@pytest.mark.parametrize("cell, mode, expected", [
    ("get_ipython().run_line_magic('lm_load', 'x')", "last_expr", True),
    ("r = get_ipython().run_line_magic('lm_load', 'x')", "last_expr", False),
    ("r = get_ipython().run_line_magic('lm_load', 'x')", "last_expr_or_assign", True),
    ("get_ipython().run_line_magic('lm_load', 'x')\nprint(1)", "last_expr", False),
    ("get_ipython().run_line_magic('lm_load', 'x')\nprint(1)", "all", True),
    ("get_ipython().run_line_magic('lm_load', 'y')", "last_expr", False),
    ("get_ipython().run_line_magic('lm_load', 'x')", "none", False),
])
def test_value_goes_to_displayhook(cell, mode, expected):
    assert value_goes_to_displayhook(cell, mode, "lm_load", "x") is expected
    assert value_goes_to_displayhook(None, mode, "lm_load", "x") is False  # no cell running: never guess


def test_session_update_validates_before_changing_and_notifies():
    s = Session()
    seen = []
    s.observe(lambda c: seen.append(c["name"]), names=["load_config", "prediction_config"])
    s.update("predict", {"temperature": 0.5, "maxTokens": 10})
    s.update("load", {"gpu": "off", "contextLength": 512})
    assert s.prediction_config.temperature == 0.5 and s.load_config.gpu.ratio == "off"
    with pytest.raises(ConfigError, match="temperature"):
        s.update("predict", {"temperature": 5, "maxTokens": 3})
    assert s.prediction_config.max_tokens == 10 and seen == ["prediction_config", "load_config"]
    s.update("predict", {"maxTokens": None})
    assert s.prediction_config.explicit() == {"temperature": 0.5}
    s.update("load", {"gpu": None})
    assert s.load_config.explicit() == {"context_length": 512}
    s.reset()
    assert s.load_config.explicit() == {} == s.prediction_config.explicit()
