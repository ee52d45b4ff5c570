"""Bounded by default in the notebook: %%lm_respond / %%lm_complete (and the session defaults the panels read)
stop at LMMagics.default_max_tokens when no setting gives maxTokens, and the stats line says so; the Python
API keeps LM Studio's unlimited default."""

from __future__ import annotations

import pytest
from IPython.utils.capture import capture_output

import lmsext
from lmsext import magics as magics_module
from lmsext import session as session_module
from lmsext.config import PredictionConfig
from lmsext.session import NOTEBOOK_MAX_TOKENS

PROMPT = "Once upon a time"


@pytest.fixture
def lm(ip, unload_all, monkeypatch):
    monkeypatch.setattr(session_module, "_session", None)
    m = magics_module.get_magics(ip)
    m.display_mode = "text"
    yield m
    m.display_mode = "auto"
    m.default_max_tokens = NOTEBOOK_MAX_TOKENS
    m.default_prediction_config = {}
    # %config LMMagics.… also stays in the shell's config, which the next %load_ext reads: take it back too
    ip.config.LMMagics.pop("default_max_tokens", None)


def cell(ip, magic: str, line: str, body: str = PROMPT):
    with capture_output() as cap:
        ip.run_cell_magic(magic, line, body)
    return ip.user_ns["_lm"], cap.stdout


def test_the_magics_stop_at_the_default_limit_and_say_how_to_change_it(ip, lm):
    assert lm.default_max_tokens == NOTEBOOK_MAX_TOKENS == 256
    ip.run_line_magic("config", "LMMagics.default_max_tokens = 7")
    result, out = cell(ip, "lm_complete", "--temperature 0")
    assert result.stats.predicted_tokens_count == 7 and result.prediction_config["maxTokens"] == 7
    assert "stop: maxPredictedTokensReached (hit the 7-token limit — --max-tokens to change)" in out
    assert out.count("maxPredictedTokensReached") == 1  # the stop reason is said once
    result, out = cell(ip, "lm_respond", "--temperature 0 --no-history", "Tell me a story")
    assert result.stats.predicted_tokens_count == 7 and "hit the 7-token limit" in out


def test_an_explicit_limit_is_not_the_default_one(ip, lm):
    ip.run_line_magic("config", "LMMagics.default_max_tokens = 7")
    result, out = cell(ip, "lm_complete", "--temperature 0 --max-tokens 5")
    assert result.stats.predicted_tokens_count == 5
    assert "stop: maxPredictedTokensReached (hit the token limit)" in out and "--max-tokens to change" not in out
    with capture_output():
        ip.run_line_magic("lm_config", "predict maxTokens=false")  # LM Studio's "no limit" lifts it
    result, out = cell(ip, "lm_complete", "--temperature 0 --stop .")  # (no limit: a stop string ends it)
    assert result.prediction_config["maxTokens"] is False and result.stats.stop_reason == "stopStringFound"
    assert "limit" not in out


def test_no_limit_when_set_to_zero_and_in_the_python_api(ip, lm):
    ip.run_line_magic("config", "LMMagics.default_max_tokens = 0")
    result, _ = cell(ip, "lm_complete", "--temperature 0")
    assert "maxTokens" not in result.prediction_config
    api = lmsext.Client().llm.model().complete(PROMPT, {"temperature": 0})
    assert "maxTokens" not in api.prediction_config and "limit" not in repr(api.stats.notes)


def test_the_panels_session_defaults_carry_the_bound(lm):
    session = lm.session
    assert session.bounded(PredictionConfig()).max_tokens == NOTEBOOK_MAX_TOKENS
    assert session.bounded(PredictionConfig(max_tokens=12)).max_tokens == 12
    assert session.bounded(PredictionConfig.parse({"maxTokens": False})).max_tokens is False
    lm.default_max_tokens = 64
    assert session_module.get_session().max_tokens_bound == 64


def test_lm_config_shows_the_bound_in_the_effective_settings(ip, lm):
    with capture_output() as cap:
        ip.run_line_magic("lm_config", "predict")
    text = cap.outputs[0].data["text/plain"]
    assert "maxTokens 256 when nothing sets it: LMMagics.default_max_tokens" in text
    assert text.split("effective for")[1].count("256") >= 2  # the title and the effective value
