"""Speculative decoding on an instance with maxParallelPredictions > 1 (lmsext/engine/scheduler.py)."""

from __future__ import annotations

import pytest

from lmsext import synth
from lmsext.errors import ConfigError
from lmsext.models import embedded_model_path

pytestmark = pytest.mark.usefixtures("shared_models_only")

GREEDY = {"temperature": 0, "maxTokens": 60, "logProbs": 1}


@pytest.fixture(scope="module")
def models(module_client):
    """(parallel identity target, solo identity target, the draft's identifier)."""
    c = module_client
    c.llm.load(str(embedded_model_path()), config={"contextLength": 512}, identifier="pspec-draft")
    target = str(synth.identity_target(extra_layers=4, n_ff=0))
    par = c.llm.load(target, config={"contextLength": 1024, "maxParallelPredictions": 3}, identifier="pspec-par")
    solo = c.llm.load(target, config={"contextLength": 512}, identifier="pspec-solo")
    return par, solo, "pspec-draft"


def test_a_draft_is_never_silently_dropped_on_a_parallel_instance(models):
    """A draft on a scheduler instance is refused in one line naming draftModel and maxParallelPredictions;
    the instance then predicts as before."""
    par, solo, draft = models
    for key in (draft, "lookup"):
        with pytest.raises(ConfigError) as info:
            par.complete("Once upon a time", {**GREEDY, "draftModel": key})
        msg = str(info.value)
        assert "\n" not in msg and "draftModel" in msg and "maxParallelPredictions 3" in msg, msg
    plain = par.complete("Once upon a time", GREEDY)
    assert plain.content == solo.complete("Once upon a time", GREEDY).content
