"""The next-token distribution (lmsext/engine/distribution.py) on the real engine.

The central claim: the distribution the explorer shows for a config is the one the engine samples
from. Tested statistically — 2000 one-token predictions through the public API, one seed each,
against the explorer's theoretical distribution — and exactly (the first draw of the chain with a
seed is the token ``complete(maxTokens=1, seed=…)`` produces).
"""

from __future__ import annotations


import numpy as np
import pytest

import lmsext
from lmsext import synth
from lmsext.engine.distribution import chi_square, total_variation
from lmsext.errors import ModelBusyError, PredictionError

PROMPT = "She saw a big big dog. The big"  # repeated tokens: the repeat penalty has something to do
N = 2000


pytestmark = pytest.mark.usefixtures("shared_models_only")


@pytest.fixture(scope="module")
def model(module_model):
    return module_model


def engine_samples(model, prompt, config, n=N):
    """n next tokens, each from its own one-token prediction through the public API (seed = i)."""
    eos = [t for t in range(model.engine.n_vocab) if model.engine.is_eog(t)]
    counts: dict[int, int] = {}
    for seed in range(n):
        r = model.complete(prompt, {**config, "seed": seed, "maxTokens": 1, "logProbs": 1})
        token = r.logprobs[0].token if r.logprobs else eos[0]
        assert r.logprobs or r.stats.stop_reason == "eosFound"
        counts[token] = counts.get(token, 0) + 1
    return counts


CONFIGS = {
    "lmstudio-defaults": {},
    "hot-penalised": {"temperature": 1.3, "topKSampling": 0, "topPSampling": 0.98, "minPSampling": 0.01,
                      "repeatPenalty": 1.5},
    "top-k-cool": {"temperature": 0.7, "topKSampling": 8, "topPSampling": False, "minPSampling": False},
    "xtc": {"temperature": 1.0, "xtcProbability": 0.5, "xtcThreshold": 0.05, "topKSampling": 0,
            "topPSampling": False, "minPSampling": False, "repeatPenalty": False},
}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_engine_samples_from_the_distribution_the_explorer_shows(model, name):
    config = CONFIGS[name]
    dist = model.next_token_distribution(PROMPT, config)
    assert abs(dist.probs.sum() - 1) < 1e-6
    counts = engine_samples(model, PROMPT, config)
    stat, df, p = chi_square(counts, dist.probs)
    tv = total_variation(counts, dist.probs)
    # expected TV of N draws is about 0.5 * sum(sqrt(p (1-p) / N)); allow 3x that plus a small floor
    bound = 1.5 * float(np.sqrt(dist.probs * (1 - dist.probs) / N).sum()) + 0.005
    print(f"{name}: support {len(dist.support)}, chi2 {stat:.1f} on {df} df, p={p:.3f}, TV {tv:.4f} (< {bound:.4f})")
    assert p > 1e-3, (stat, df, p)
    assert tv < bound


def test_the_statistical_test_has_power(model):
    """The same samples against the distribution of another temperature are rejected."""
    config = CONFIGS["hot-penalised"]
    counts = engine_samples(model, PROMPT, config)
    wrong = model.next_token_distribution(PROMPT, {**config, "temperature": 1.0})
    stat, df, p = chi_square(counts, wrong.probs)
    assert p < 1e-6, (stat, df, p)
    no_penalty = model.next_token_distribution(PROMPT, {**config, "repeatPenalty": False})
    assert chi_square(counts, no_penalty.probs)[2] < 1e-6


@pytest.mark.parametrize("name", ["lmstudio-defaults", "hot-penalised", "xtc"])
def test_first_draw_is_the_token_a_seeded_prediction_produces(model, name):
    config = CONFIGS[name]
    for seed in range(25):
        r = model.complete(PROMPT, {**config, "seed": seed, "maxTokens": 1, "logProbs": 1})
        d = model.next_token_distribution(PROMPT, {**config, "seed": seed}, samples=1)
        assert r.logprobs and d.samples == [r.logprobs[0].token]


def test_samples_are_reproducible_with_a_seed(model):
    config = {**CONFIGS["hot-penalised"], "seed": 42}
    a = model.next_token_distribution(PROMPT, config, samples=100)
    b = model.next_token_distribution(PROMPT, config, samples=100)
    c = model.next_token_distribution(PROMPT, {**config, "seed": 43}, samples=100)
    assert a.samples == b.samples and len(a.samples) == 100
    assert a.samples != c.samples
    assert all(a.probs[t] > 0 for t in a.samples)
    assert sum(a.sample_counts().values()) == 100 and all(a.text(t) for t in a.sample_counts())


def test_each_stage_reports_what_it_cut(model):
    d = model.next_token_distribution(PROMPT, {"temperature": 1.0, "topKSampling": 5, "topPSampling": False,
                                               "minPSampling": False, "repeatPenalty": False}, top_n=12)
    assert [s.name for s in d.stages] == ["top-k", "temp"]
    top_k = d.stages[0]
    assert top_k.kept == 5 and top_k.removed == d.n_vocab - 5 and top_k.setting == "top_k=5"
    assert 0 < top_k.removed_mass < 1
    assert [c.cut_by for c in d.candidates] == [None] * 5 + ["top-k"] * 7
    kept = d.candidates[:5]
    mass = sum(c.prob for c in kept)
    for c in kept:  # renormalised: the model's probability over the kept mass (temperature 1)
        assert c.final_prob == pytest.approx(c.prob / mass, rel=1e-4)
        assert c.stage_probs[0] == pytest.approx(c.final_prob, rel=1e-4)
    assert d.other_prob == pytest.approx(0, abs=1e-6) and len(d.support) == 5
    # the candidates are the most likely tokens under the model, in order
    probs = [c.prob for c in d.candidates]
    assert probs == sorted(probs, reverse=True) and probs[0] == pytest.approx(float(d.model_probs.max()))


def test_top_p_min_p_and_temperature(model):
    base = {"topKSampling": 0, "repeatPenalty": False}
    d = model.next_token_distribution(PROMPT, {**base, "temperature": 1.0, "topPSampling": 0.5, "minPSampling": False})
    kept = d.support
    mass = float(d.model_probs[kept].sum())
    assert mass >= 0.5 and mass - float(d.model_probs[kept[-1]]) < 0.5  # the smallest set reaching 0.5
    d = model.next_token_distribution(PROMPT, {**base, "temperature": 1.0, "topPSampling": False, "minPSampling": 0.2})
    best = float(d.model_probs.max())
    assert set(d.support) == set(np.flatnonzero(d.model_probs >= 0.2 * best - 1e-7).tolist())
    for t in (0.5, 1.7):
        d = model.next_token_distribution(PROMPT, {**base, "temperature": t, "topPSampling": False,
                                                   "minPSampling": False})
        expected = d.model_probs ** (1 / t)
        expected /= expected.sum()
        assert np.allclose(d.probs, expected, atol=1e-5)
        assert [s.name for s in d.stages] == ["temp"] and d.stages[0].removed == 0


def test_repeat_penalty_lowers_the_repeated_tokens(model):
    d = model.next_token_distribution(PROMPT, {"temperature": 1.0, "topKSampling": 0, "topPSampling": False,
                                               "minPSampling": False, "repeatPenalty": 2.0}, top_n=40)
    assert d.stages[0].name == "penalties" and d.stages[0].removed == 0
    history = set(model.tokenize(PROMPT))
    repeated = [c for c in d.candidates if c.token in history]
    fresh = [c for c in d.candidates if c.token not in history]
    assert repeated and fresh
    assert all(c.final_prob < c.prob for c in repeated)
    assert all(c.final_prob > c.prob for c in fresh)


def test_greedy_is_a_point_mass_on_what_temperature_zero_generates(model):
    d = model.next_token_distribution(PROMPT, {"temperature": 0})
    assert [s.name for s in d.stages] == ["penalties", "greedy"]
    assert d.stages[-1].kept == 1 and d.probs.max() == 1.0
    r = model.complete(PROMPT, {"temperature": 0, "maxTokens": 1, "logProbs": 1})
    assert d.most_likely == r.logprobs[0].token
    assert [c.token for c in d.candidates if c.cut_by is None] == [d.most_likely]
    assert {c.cut_by for c in d.candidates if c.token != d.most_likely} == {"greedy"}


def test_xtc_is_the_mixture_of_applied_and_skipped(model):
    cfg = {"temperature": 1.0, "topKSampling": 0, "topPSampling": False, "minPSampling": False,
           "repeatPenalty": False, "xtcThreshold": 0.05}
    skipped = model.next_token_distribution(PROMPT, cfg)
    applied = model.next_token_distribution(PROMPT, {**cfg, "xtcProbability": 1.0})
    half = model.next_token_distribution(PROMPT, {**cfg, "xtcProbability": 0.5})
    assert np.allclose(half.probs, 0.5 * skipped.probs + 0.5 * applied.probs, atol=1e-6)
    xtc = half.stages[0]
    assert xtc.name == "xtc" and xtc.chance == 0.5 and xtc.removed >= 1
    assert applied.probs[skipped.most_likely] == 0  # XTC removes the most likely of the tokens above the threshold


def test_reuses_the_kv_prefix_and_reads_only_the_last_logits(model):
    engine = model.engine
    tokens = model.tokenize(PROMPT)
    d1 = model.next_token_distribution(tokens, {"temperature": 0})
    assert engine.cached_tokens == tokens
    longer = tokens + [d1.most_likely]
    d2 = model.next_token_distribution(longer, {"temperature": 1.0})
    assert engine.cached_tokens == longer and d2.prompt_tokens == longer
    fresh = model.next_token_distribution(longer, {"temperature": 1.0})
    assert np.allclose(d2.model_probs, fresh.model_probs, atol=1e-5)
    # a prediction afterwards reuses the same cache
    r = model.complete(PROMPT, {"temperature": 0, "maxTokens": 2})
    assert r.stats.cached_prompt_tokens_count == len(tokens) - 1


def test_chat_and_token_prompts(tmp_path):
    client = lmsext.Client()
    chatml = client.llm.load(str(synth.chatml_model(tmp_path)))  # the module's model stays loaded beside it
    try:
        chat = lmsext.Chat("You are terse.")
        chat.add_user_message("Tell me a story")
        d = chatml.next_token_distribution(chat, {"temperature": 0})
        tokens, _ = chatml.engine.render_prompt(chat.messages)
        assert d.prompt_tokens == tokens
        r = chatml.respond(chat, {"temperature": 0, "maxTokens": 1, "logProbs": 1})
        assert r.logprobs[0].token == d.most_likely
    finally:
        chatml.unload()


def test_structured_output_grammar_is_a_stage(model):
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    d = model.next_token_distribution("Once upon a time", {"structured": {"type": "json", "jsonSchema": schema},
                                                           "temperature": 1.0})
    assert d.stages[0].name == "grammar" and d.stages[0].removed > 0
    assert all(d.text(t).lstrip().startswith("{") or not d.text(t).strip() for t in d.support if d.text(t))


def test_bad_input_and_busy_model(model):
    with pytest.raises(PredictionError, match="outside the vocabulary"):
        model.next_token_distribution([1, 10**6])
    with pytest.raises(lmsext.ConfigError):
        model.next_token_distribution(PROMPT, {"temperature": -1})
    stream = model.complete_stream(PROMPT, {"maxTokens": 50})
    next(iter(stream))
    try:
        with pytest.raises(ModelBusyError):
            model.next_token_distribution(PROMPT)
    finally:
        stream.close()
    assert model.next_token_distribution(PROMPT).candidates  # usable again


def test_summary_text(model):
    d = model.next_token_distribution(PROMPT, {"seed": 1}, top_n=3)
    text = str(d)
    assert "model p" in text and "stages:" in text and "top-k(top_k=40" in text
    data = d.to_dict()
    assert len(data["candidates"]) == 3 and data["settings"]["seed"] == 1
    assert [s["name"] for s in data["stages"]] == ["penalties", "top-k", "top-p", "min-p", "temp"]


def test_numpy_token_ids_are_token_ids(module_model):
    """A NumPy array or a list of NumPy integers is a token-id prompt (it was taken for a chat history)."""
    ids = module_model.tokenize("Once upon a time")
    expected = module_model.next_token_distribution(ids).most_likely
    assert module_model.next_token_distribution(np.array(ids, dtype=np.int32)).most_likely == expected
    assert module_model.next_token_distribution([np.int64(t) for t in ids]).most_likely == expected
