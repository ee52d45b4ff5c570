"""NextTokenExplorer (lmsext/widgets/explorer.py) on the real engine: sliders, Step, Back, click-to-append,
Sample 100 — driven through its Python methods and through the messages its front end sends."""

from __future__ import annotations


import pytest

import lmsext
from lmsext import synth
from lmsext.widgets import NextTokenExplorer
from lmsext.widgets.explorer import SLIDER_DEFAULTS, fate

PROMPT = "Once upon a time, there was a"


pytestmark = pytest.mark.usefixtures("shared_models_only")


@pytest.fixture(scope="module")
def model(module_model):
    return module_model


@pytest.fixture
def explorer(model):
    return NextTokenExplorer(model, PROMPT)


def msg(w, **content):
    """What the front end sends (model.send)."""
    w._on_front_end_msg(w, content, [])


def test_starts_with_lm_studio_defaults_and_the_distribution(explorer, model):
    assert {k: getattr(explorer, k) for k in SLIDER_DEFAULTS} == SLIDER_DEFAULTS
    data = explorer.distribution
    assert len(data["candidates"]) == 20 and explorer.prompt_text == PROMPT and explorer.error == ""
    assert [s["name"] for s in data["stages"]] == ["penalties", "top-k", "top-p", "min-p", "temp"]
    assert explorer.tokens == model.tokenize(PROMPT)
    # exactly what the public API gives for the same config
    ref = model.next_token_distribution(PROMPT, explorer.config)
    assert [c.token for c in explorer.candidates] == [c.token for c in ref.candidates]
    assert [c.final_prob for c in explorer.candidates] == pytest.approx([c.final_prob for c in ref.candidates])
    assert explorer._esm.strip() and "export default" in explorer._esm


def test_sliders_reshape_the_distribution(explorer):
    explorer.top_k = 3
    explorer.top_p = 1.0
    explorer.min_p = 0.0
    cands = explorer.distribution["candidates"]
    assert [c["cut_by"] for c in cands[:3]] == [None] * 3
    assert {c["cut_by"] for c in cands[3:]} == {"top-k"}
    assert sum(c["final_prob"] for c in cands) == pytest.approx(1.0)
    hot = [c["final_prob"] for c in cands[:3]]
    explorer.temperature = 0.2
    cold = [c["final_prob"] for c in explorer.distribution["candidates"][:3]]
    assert cold[0] > hot[0] and cold[2] < hot[2]  # colder: sharper
    explorer.temperature = 0.0
    assert [s["name"] for s in explorer.distribution["stages"]][-1] == "greedy"
    explorer.repeat_penalty = 1.0
    assert "penalties" not in [s["name"] for s in explorer.distribution["stages"]]


def test_step_appends_the_sampled_token_and_back_rewinds(explorer, model):
    start = list(explorer.tokens)
    token = explorer.step()
    assert explorer.tokens == start + [token]
    (g,) = explorer.generated
    assert g["token"] == token and g["how"] == "step" and g["prob"] > 0
    assert explorer.text == PROMPT + g["text"]
    # the step is the token a seeded one-token prediction gives (seed = explorer seed + position)
    r = model.complete(PROMPT, {**explorer.config, "seed": explorer.seed, "maxTokens": 1, "logProbs": 1})
    assert r.logprobs[0].token == token
    second = explorer.step()
    assert len(explorer.generated) == 2
    assert explorer.back() == second and explorer.back() == token
    assert explorer.tokens == start and explorer.back() is None
    assert explorer.step() == token  # replayable


def test_random_seed_mode_draws_afresh_after_back(explorer):
    explorer.temperature, explorer.top_k, explorer.top_p, explorer.min_p = 1.5, 0, 1.0, 0.0  # a wide choice
    first = explorer.step()
    explorer.back()
    assert explorer.step() == first  # fixed (the default): seeded by position, replayed
    explorer.back()
    explorer.seed_mode = "random"
    drawn = set()
    for _ in range(12):
        drawn.add(explorer.step())
        explorer.back()
    assert len(drawn) > 1 and explorer.generated == []
    with pytest.raises(Exception):
        explorer.seed_mode = "sometimes"


def test_a_token_the_repeat_penalty_lowered_is_told_apart_from_one_top_p_cut(model):
    w = NextTokenExplorer(model, "the cat and the cat and the cat and the", {"repeatPenalty": 2.0, "topPSampling": 0.5,
                                                                           "topKSampling": 0, "minPSampling": 0})
    stages = w.dist.stages
    words = {c.token: fate(c, stages) for c in w.candidates}
    repeated = set(w.tokens[-64:])
    lowered = [c for c in w.candidates if "lowered by repeat penalty" in words[c.token]]
    assert lowered and all(c.token in repeated for c in lowered)
    # a penalised token that top-p then removed says both; an unpenalised one cut by top-p says only top-p
    assert any(words[c.token] == "lowered by repeat penalty, then cut by top-p" for c in lowered)
    assert any(words[c.token] == "cut by top-p" and c.token not in repeated for c in w.candidates)
    assert "lowered by repeat penalty, then cut by top-p" in w.summary_html()
    w.repeat_penalty = 1.0
    assert not any("lowered" in fate(c, w.dist.stages) for c in w.candidates)


def test_entropy_and_effective_choices(explorer, model):
    import numpy as np
    explorer.top_k, explorer.top_p, explorer.min_p, explorer.repeat_penalty = 0, 1.0, 0.0, 1.0
    data = explorer.distribution
    p = explorer.dist.probs[explorer.dist.probs > 0]
    assert data["entropy_bits"] == pytest.approx(float(-(p * np.log2(p)).sum()))
    assert data["effective_choices"] == pytest.approx(2 ** data["entropy_bits"]) == pytest.approx(
        float(np.exp(-(p * np.log(p)).sum())))  # exp(entropy in nats)
    assert explorer.entropy == pytest.approx(data["entropy_bits"])
    hot = data["entropy_bits"]
    explorer.temperature = 0.2
    assert explorer.distribution["entropy_bits"] < hot  # colder: fewer effective choices
    assert explorer.distribution["model_entropy_bits"] == pytest.approx(data["model_entropy_bits"])  # the model's own
    explorer.top_k = 1
    assert explorer.distribution["effective_choices"] == pytest.approx(1.0)


def test_an_edited_prompt_and_play(explorer, model):
    explorer.step()
    msg(explorer, action="prompt", text="The dog ran to the")
    assert explorer.prompt_text == "The dog ran to the" and explorer.generated == []
    assert explorer.tokens == model.tokenize("The dog ran to the")
    assert [c.token for c in explorer.candidates] == [c.token for c in model.next_token_distribution(
        "The dog ran to the", explorer.config).candidates]
    msg(explorer, action="play", n=5)
    assert len(explorer.generated) == 5 or model.is_end_of_generation(explorer.generated[-1]["token"])
    played = [g["token"] for g in explorer.generated]
    explorer.reset()
    assert explorer.play(5) == played  # fixed seed: the same five tokens
    msg(explorer, action="play", n=10_000)
    assert "play 10000: give 1 to 500 steps" in explorer.error and len(explorer.generated) == 5
    msg(explorer, action="prompt", text="")
    assert "prompt is empty" in explorer.error or explorer.tokens  # a BOS-adding model accepts ""
    explorer.scale = "log"
    with pytest.raises(Exception):
        explorer.scale = "cubic"


def test_clicking_a_bar_appends_that_token(explorer):
    unlikely = explorer.candidates[-1].token
    msg(explorer, action="pick", token=unlikely)
    assert explorer.generated[-1]["token"] == unlikely and explorer.generated[-1]["how"] == "pick"
    assert explorer.tokens[-1] == unlikely
    assert explorer.distribution["context_tokens"] == len(explorer.tokens)
    msg(explorer, action="back")
    assert explorer.generated == []
    msg(explorer, action="step")
    msg(explorer, action="step")
    assert len(explorer.generated) == 2
    msg(explorer, action="reset")
    assert explorer.generated == []
    msg(explorer, action="pick", token=10**7)
    assert "outside the vocabulary" in explorer.error and explorer.generated == []


def test_sample_100_is_reproducible_and_follows_the_distribution(explorer):
    counts = explorer.sample(100)
    assert sum(counts.values()) == 100
    probs = {c.token: c.final_prob for c in explorer.candidates}
    assert all(explorer.dist.prob(t) > 0 for t in counts)
    hist = explorer.histogram
    assert hist["n"] == 100 and hist["seed"] == 0 and sum(hist["counts"].values()) == 100
    assert explorer.sample(100) == counts
    top = max(probs, key=probs.get)
    assert counts.get(top, 0) > 100 * probs[top] - 20  # the most likely token is drawn about as often
    explorer.seed = 1
    assert explorer.histogram == {}  # a histogram belongs to its settings
    msg(explorer, action="sample", n=100)
    assert explorer.histogram["seed"] == 1 and explorer.histogram["counts"] != hist["counts"]
    explorer.temperature = 1.5
    assert explorer.histogram == {}


def test_extra_config_and_model_key(model, unload_all):
    w = NextTokenExplorer("stories260K", PROMPT, {"temperature": 1.2, "topKSampling": 0, "xtcProbability": 0.5,
                                                  "xtcThreshold": 0.05, "seed": 9}, top_n=5)
    assert w.temperature == 1.2 and w.top_k == 0 and w.seed == 9 and len(w.candidates) == 5
    assert "xtc" in [s["name"] for s in w.distribution["stages"]]
    assert w.config["xtc_probability"] == 0.5


def test_a_chat_prompt(tmp_path):
    client = lmsext.Client()
    chatml = client.llm.load(str(synth.chatml_model(tmp_path)))  # the module's model stays loaded beside it
    try:
        chat = lmsext.Chat("You are terse.")
        chat.add_user_message("Tell me a story")
        w = NextTokenExplorer(chatml, chat, {"temperature": 0})
        assert w.prompt_text.endswith("<|im_start|>assistant\n")
        assert w.tokens == chatml.engine.render_prompt(chat.messages)[0]
        r = chatml.respond(chat, {"temperature": 0, "maxTokens": 1, "logProbs": 1})
        assert w.step() == r.logprobs[0].token
    finally:
        chatml.unload()


def test_busy_model_shows_an_error(explorer, model):
    stream = model.complete_stream(PROMPT, {"maxTokens": 50})
    next(iter(stream))
    try:
        explorer.top_k = 5
        assert "busy" in explorer.error
        msg(explorer, action="step")
        assert "busy" in explorer.error and explorer.generated == []
    finally:
        stream.close()
    explorer.refresh()
    assert explorer.error == ""


def test_bad_values_are_refused(unload_all):
    with pytest.raises(lmsext.ConfigError):
        NextTokenExplorer("stories260K", PROMPT, {"temperature": 5})
    with pytest.raises(TypeError):
        NextTokenExplorer(object(), PROMPT)


def test_static_fallback_where_widgets_do_not_render(explorer):
    bundle = explorer._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert bundle["text/plain"].startswith("NextTokenExplorer on stories260K") and "stages:" in bundle["text/plain"]
    html = bundle["text/html"]
    assert html.count("<tr") == 1 + len(explorer.candidates)
    explorer.top_k = 2
    html = explorer._repr_mimebundle_()["text/html"]
    assert html.count("cut by top-k") == len(explorer.candidates) - 2
