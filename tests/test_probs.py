"""Token probabilities of generated text: ``log_probs`` results, their rendering, ``--probs`` on the magics."""

from __future__ import annotations

import html as htmllib
import math
import re

import pytest
from IPython.utils.capture import capture_output

import lmsext
from lmsext import synth
from lmsext.engine import TokenLogProb
from lmsext.results import PredictionResult, PredictionStats
from lmsext import render as views
from lmsext import magics as magics_module
from lmsext import session as session_module

TITLE = re.compile(r'<span class="lmsext-token" data-p="([0-9.]+)" title="([^"]*)"[^>]*>(.*?)</span>', re.S)


pytestmark = pytest.mark.usefixtures("shared_models_only")


@pytest.fixture(scope="module")
def model(module_model):
    return module_model


def fake_result(content, tokens):
    """A PredictionResult whose logprobs are ``[(text, p, [(alt text, alt p)])]``."""
    lps = [TokenLogProb(token=i, text=t, logprob=math.log(p), top=[(100 + j, a, math.log(q)) for j, (a, q) in
                                                                     enumerate(alts)])
           for i, (t, p, alts) in enumerate(tokens)]
    stats = PredictionStats(stop_reason="eosFound", predicted_tokens_count=len(tokens), prompt_tokens_count=1,
                            tokens_per_second=None, time_to_first_token_sec=None, generation_time_sec=0.0)
    return PredictionResult(content=content, stats=stats, model_instance_id="x", model_info=None,
                            prediction_config={}, logprobs=lps)


# ------------------------------------------------------------------------------ results and rendering

def test_pieces_add_up_to_the_content_and_carry_their_probabilities(model):
    r = model.complete("Once upon a time", {"temperature": 0.9, "seed": 3, "maxTokens": 30, "logProbs": 4})
    pieces = views.token_pieces(r)
    assert "".join(t for t, _ in pieces) == r.content
    assert len(r.logprobs) == 30 and all(len(lp.top) == 4 for lp in r.logprobs)
    for text, lp in pieces:
        assert lp is not None and text == lp.text
        assert lp.logprob <= 0 and lp.top[0][2] >= lp.logprob  # the top alternative is at least as likely
    html = views.token_probs_html(r)
    spans = TITLE.findall(html)
    assert len(spans) == 30
    for (p, title, text), lp in zip(spans, r.logprobs):
        assert float(p) == pytest.approx(lp.sampled_probability, abs=1e-4)  # coloured by the drawn probability
        assert f'data-model-p="{math.exp(lp.logprob):.4f}"' in html  # the model's own beside it
        title = htmllib.unescape(title)
        assert title.startswith(repr(lp.text)) and title.count("\n") == 4  # the chosen token + 4 alternatives
        assert htmllib.unescape(text) == lp.text


def test_greedy_tokens_are_the_most_likely_alternative(model):
    r = model.complete("Once upon a time", {"temperature": 0, "maxTokens": 10, "logProbs": 3, "repeatPenalty": False})
    for lp in r.logprobs:
        assert lp.top[0][0] == lp.token and lp.top[0][2] == pytest.approx(lp.logprob)
    assert "→ " + repr(r.logprobs[0].text) in htmllib.unescape(views.token_probs_html(r))


def test_the_sampled_probability_is_the_one_the_token_was_drawn_with(model):
    prompt = "Once upon a time"
    warm = model.complete(prompt, {"temperature": 0.3, "seed": 5, "maxTokens": 20, "logProbs": 3})
    top = [lp for lp in warm.logprobs if lp.top[0][0] == lp.token]  # the model's most likely token was drawn
    assert top and all(lp.sampled_probability >= math.exp(lp.logprob) - 1e-6 for lp in top)
    assert any(lp.sampled_probability > math.exp(lp.logprob) + 0.01 for lp in top)  # temperature 0.3 sharpens
    assert all(0.0 < lp.sampled_probability <= 1.0 for lp in warm.logprobs)
    greedy = model.complete(prompt, {"temperature": 0, "maxTokens": 20, "logProbs": 3})
    assert all(lp.sampled_probability == 1.0 for lp in greedy.logprobs)
    assert any(math.exp(lp.logprob) < 0.9 for lp in greedy.logprobs)  # while the model's own is lower
    # the explorer's distribution for the first token is the one the first token was drawn from
    for config in ({"temperature": 0.3, "seed": 5}, {"temperature": 1.5, "seed": 4, "xtcProbability": 0.5,
                                                      "xtcThreshold": 0.05, "topKSampling": 0, "minPSampling": False}):
        first = model.complete(prompt, {**config, "maxTokens": 1, "logProbs": 1}).logprobs[0]
        explained = model.next_token_distribution(prompt, config)
        assert first.sampled_probability == pytest.approx(explained.prob(first.token), abs=1e-5)
    # computing it changes no draw: the same seed gives the same text with and without logProbs
    for settings in ({"temperature": 0.8, "seed": 11}, {"temperature": 1.0, "seed": 2, "xtcProbability": 0.5,
                                                        "xtcThreshold": 0.1, "repeatPenalty": 1.3}):
        plain = model.complete(prompt, {**settings, "maxTokens": 40})
        probed = model.complete(prompt, {**settings, "maxTokens": 40, "logProbs": 2})
        assert probed.content == plain.content


def test_a_stop_string_is_not_shown(model):
    r = model.complete("Once upon a time", {"temperature": 0, "maxTokens": 40, "logProbs": 2, "stopStrings": ["."]})
    assert r.stats.stop_reason == "stopStringFound"
    pieces = views.token_pieces(r)
    assert "".join(t for t, _ in pieces) == r.content and "." not in r.content
    assert len(r.logprobs) >= len([p for p in pieces if p[1] is not None])


def test_rendering_escapes_and_colours():
    r = fake_result("<b>&x", [("<b>", 0.9, [("<b>", 0.9), ("<i>", 0.05)]), ("&x", 0.02, [("&y", 0.5), ("&x", 0.02)])])
    html = views.token_probs_html(r)
    assert "<b>&x" not in html and "&lt;b&gt;" in html and "&amp;x" in html
    spans = TITLE.findall(html)
    assert [float(p) for p, _, _ in spans] == [0.9, 0.02]
    assert views.prob_colour(0.9) in html and views.prob_colour(0.02) in html
    assert views.prob_colour(1.0) == "hsl(120,85%,82%)" and views.prob_colour(0.0) == "hsl(0,85%,82%)"
    text = views.token_probs_text(r)
    assert "\x1b[32m<b>" in text and "\x1b[31m&x" in text  # green for likely, red for unlikely
    assert "'&y' 0.50" in text and "stop: eosFound" in text
    assert "token probability (the model's)" in html  # no sampled probability (a remote server): the model's
    r.logprobs[1].sampled_probability, r.logprobs[0].sampled_probability = 0.9, 1.0  # the engine's drawn ones
    html, text = views.token_probs_html(r), views.token_probs_text(r)
    assert [float(p) for p, _, _ in TITLE.findall(html)] == [1.0, 0.9] and views.prob_colour(0.02) not in html
    assert "drawn with (after temperature" in html and "drawn with p=0.900 · model p=0.020" in htmllib.unescape(html)
    assert "\x1b[32m&x" in text and " drawn  model" in text  # green now: it was drawn with 90 %


def test_a_character_split_over_two_tokens():
    r = fake_result("héllo", [("h", 0.9, []), ("\ufffd", 0.5, []), ("\ufffd", 0.6, []), ("llo", 0.7, [])])
    pieces = views.token_pieces(r)
    assert "".join(t for t, _ in pieces) == "héllo"
    assert [t for t, _ in pieces] == ["h", "", "é", "llo"]


# ------------------------------------------------------------------------------ magics

@pytest.fixture
def lm(ip, monkeypatch):
    monkeypatch.setattr(session_module, "_session", None)
    m = magics_module.get_magics(ip)
    m.display_mode = "rich"
    m.stream_update_interval = 0.05
    before = lmsext.default_client().llm.list_loaded()
    yield m
    m.display_mode = "auto"
    for llm in lmsext.default_client().llm.list_loaded():  # every client shares them: the module's model stays
        if llm not in before:
            llm.unload()


def run_cell(ip, magic, line, cell):
    with capture_output() as cap:
        ip.run_cell_magic(magic, line, cell)
    return cap


def test_lm_complete_probs_colours_every_token(ip, lm):
    ip.run_line_magic("lm_load", "stories260K --context-length 256")
    cap = run_cell(ip, "lm_complete", "--probs 3 --temperature 0 --max-tokens 12", "Once upon a time")
    result = ip.user_ns["_lm"]
    assert len(result.logprobs) == 12 and all(len(lp.top) == 3 for lp in result.logprobs)
    probs = [o.data["text/html"] for o in cap.outputs if "lmsext-probs" in o.data.get("text/html", "")]
    assert len(probs) == 1
    spans = TITLE.findall(probs[0])
    assert len(spans) == 12 and "".join(htmllib.unescape(t) for _, _, t in spans) == result.content
    assert "hover a token" in probs[0] and "probability each token was drawn with" in probs[0]  # says what colours
    assert all(float(p) == 1.0 for p, _, _ in spans)  # temperature 0: every token was certain to be drawn
    shown = cap.stdout + "".join(o.data.get("text/html", "") for o in cap.outputs)
    assert shown.count("maxPredictedTokensReached") == 1  # each fact once: the stats line under the stream only


def test_lm_respond_probs_default_alternatives(ip, lm, tmp_path):
    path = synth.chatml_model(tmp_path)
    ip.run_line_magic("lm_load", f"{path} --context-length 256")
    cap = run_cell(ip, "lm_respond", "--probs --temperature 0 --max-tokens 10 --no-history", "Tell me a story")
    result = ip.user_ns["_lm"]
    assert result.logprobs and all(len(lp.top) == 5 for lp in result.logprobs)
    assert any("lmsext-probs" in o.data.get("text/html", "") for o in cap.outputs)


def test_without_probs_nothing_extra(ip, lm):
    ip.run_line_magic("lm_load", "stories260K --context-length 256")
    cap = run_cell(ip, "lm_complete", "--temperature 0 --max-tokens 5", "Once upon a time")
    assert ip.user_ns["_lm"].logprobs is None
    assert not any("lmsext-probs" in o.data.get("text/html", "") for o in cap.outputs)


def test_probs_out_of_range_is_one_red_line(ip, lm):
    ip.run_line_magic("lm_load", "stories260K --context-length 256")
    ip.user_ns.pop("_lm", None)
    cap = run_cell(ip, "lm_complete", "--probs 30 --max-tokens 5", "Once upon a time")
    (out,) = cap.outputs
    assert '<span style="color:red">' in out.data["text/html"] and "--probs 30" in out.data["text/plain"]
    assert "_lm" not in ip.user_ns


def test_text_mode_prints_the_table(ip, lm):
    lm.display_mode = "text"
    ip.run_line_magic("lm_load", "stories260K --context-length 256")
    cap = run_cell(ip, "lm_complete", "--probs 2 --temperature 0 --max-tokens 6", "Once upon a time")
    plain = [o.data["text/plain"] for o in cap.outputs if "alternatives" in o.data.get("text/plain", "")]
    assert len(plain) == 1
    rows = [line for line in plain[0].splitlines() if re.match(r"^'.*' +[01]\.\d{3}", line)]
    assert len(rows) == 6
