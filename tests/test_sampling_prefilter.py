"""The repeat penalty on the top candidates (sampling.prefilter_size) draws exactly what the chain over
the whole vocabulary draws: same tokens, same seeds, on real llama.cpp samplers."""

from __future__ import annotations

import numpy as np
import pytest

from lmsext.engine.distribution import _Branch
from lmsext.engine.generate import GenerationRequest, generate
from lmsext.engine.sampling import REPEAT_LAST_N, SamplerChain, SamplingSettings, prefilter_size

N_VOCAB = 151_936


def _settings(**kw) -> SamplingSettings:
    base = dict(temperature=0.8, top_k=40, top_p=0.95, min_p=0.05, repeat_penalty=1.1, xtc_probability=0.0,
                xtc_threshold=0.1, seed=42)
    base.update(kw)
    return SamplingSettings(**base)


CASES = {
    "lmstudio defaults": _settings(),
    "strong penalty": _settings(repeat_penalty=3.0, top_k=5),
    "greedy": _settings(temperature=0.0, repeat_penalty=1.5),
    "top-k 1": _settings(top_k=1, repeat_penalty=2.0),
    "xtc": _settings(xtc_probability=0.5, xtc_threshold=0.05, top_k=60),
}


def test_prefilter_size_only_where_exact():
    assert prefilter_size(_settings()) == 40 + REPEAT_LAST_N
    assert prefilter_size(_settings(temperature=0.0)) == 1 + REPEAT_LAST_N
    assert prefilter_size(_settings(top_k=0)) == 0  # top-p over every token needs every penalised logit
    assert prefilter_size(_settings(repeat_penalty=1.0)) == 0  # no penalty: nothing to move


@pytest.mark.parametrize("name", list(CASES))
def test_top_candidates_draw_the_same_tokens_as_the_whole_vocabulary(module_model, name):
    settings = CASES[name]
    vocab = module_model.engine.vocab
    rng = np.random.default_rng(7)
    penalty_mattered = False
    for trial in range(6):
        logits = (rng.standard_normal(N_VOCAB) * 3).astype(np.float32)
        # the penalty window holds the most likely tokens, so the penalty really reorders the top
        top = np.argsort(-logits)[:200]
        history = [int(t) for t in rng.choice(top, size=REPEAT_LAST_N)]
        no_penalty = SamplingSettings(**{**settings.__dict__, "repeat_penalty": 1.0})
        draws = []
        for s, prefilter in ((settings, False), (settings, True), (no_penalty, False)):
            with SamplerChain(vocab, N_VOCAB, s, history, prefilter=prefilter) as chain:
                out = []
                for _ in range(40):
                    b = _Branch.from_logits(logits)
                    b.apply(chain.ptr)
                    out.append(b.selected())
                draws.append(out)
        assert draws[0] == draws[1], (name, trial)
        penalty_mattered |= draws[0] != draws[2]
    assert penalty_mattered  # the comparison is not between two no-ops


def test_generation_is_identical_with_and_without_the_prefilter(module_model):
    engine = module_model.engine
    prompt = engine.tokenize("Once upon a time, there was a little girl")
    for seed in (1, 2, 3):
        runs = []
        for prefilter in (False, True):
            req = GenerationRequest(prompt_tokens=prompt, sampling=_settings(seed=seed, repeat_penalty=1.8, top_k=20),
                                    max_tokens=120, prefilter=prefilter)
            runs.append([e.token for e in generate(engine, req)])
        assert runs[0] == runs[1] and len(runs[0]) >= 100
    # and the penalty is in effect: a run without it differs
    req = GenerationRequest(prompt_tokens=prompt, sampling=_settings(seed=3, repeat_penalty=1.0, top_k=20), max_tokens=120)
    assert [e.token for e in generate(engine, req)] != runs[0]
