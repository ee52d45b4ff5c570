"""The engine interface (lmsext.backend.Engine): Client and LLM reach the engine only through it, so a second
engine plugs in beside LocalEngine. Here that second engine is LocalEngine seen through a narrow wrapper
that offers only the base interface (none of the optional capabilities) and records each call."""

from __future__ import annotations

import pytest

import lmsext
from lmsext.backend import (Engine, LoadedModel, SupportsEstimate, SupportsNextTokenDistribution,
                            SupportsVocabulary)
from lmsext.engine.local import LocalEngine

BASE_CALLS = ("check_load_config", "check_prediction_config", "resolve", "model_info", "list_downloaded", "load", "unload", "is_loaded",
              "check_loaded", "tokenize", "apply_prompt_template", "predict", "stop", "close")


class BaseOnlyEngine:
    """Only the calls of :class:`Engine`, each recorded, delegated to a real LocalEngine."""

    def __init__(self) -> None:
        self.inner = LocalEngine()
        self.calls: list[str] = []

    def __getattr__(self, name: str):
        if name not in BASE_CALLS:
            raise AttributeError(name)
        method = getattr(self.inner, name)

        def call(*args, **kwargs):
            self.calls.append(name)
            return method(*args, **kwargs)
        return call


for _name in BASE_CALLS:  # typing.Protocol's isinstance looks at the class, not __getattr__
    setattr(BaseOnlyEngine, _name, (lambda n: lambda self, *a, **k: self.__getattr__(n)(*a, **k))(_name))


def test_local_engine_implements_the_interface_and_its_capabilities():
    engine = LocalEngine()
    assert isinstance(engine, Engine)
    assert isinstance(engine, SupportsNextTokenDistribution) and isinstance(engine, SupportsEstimate)
    assert isinstance(engine, SupportsVocabulary)
    assert isinstance(lmsext.Client().engine, LocalEngine)  # the default


def test_a_client_on_another_engine_loads_predicts_and_unloads_through_the_interface(shared_models_only):
    engine = BaseOnlyEngine()
    assert isinstance(engine, Engine) and not isinstance(engine, SupportsEstimate)
    client = lmsext.Client(engine=engine)
    try:
        llm = client.llm.load("stories260K", config={"contextLength": 256})
        assert isinstance(llm._loaded, LoadedModel) and llm.get_context_length() == 256
        assert llm.load_result.config["context_length"] == 256 and llm.load_result.setting_params
        result = llm.complete("Once upon a time", config={"maxTokens": 8, "temperature": 0})
        assert result.stats.predicted_tokens_count == 8 and result.content
        assert result.stats.prompt_tokens_count == len(llm.tokenize("Once upon a time"))
        reply = llm.respond("Hi", config={"maxTokens": 4, "temperature": 0})
        assert reply.stats.stop_reason in ("maxPredictedTokensReached", "eosFound")
        assert [m.model_key for m in client.list_downloaded_models()].count("stories260K") == 1
        for name in ("resolve", "load", "predict", "tokenize", "list_downloaded"):
            assert name in engine.calls, name
        # optional capabilities the engine lacks: one clear line, and the instance stays usable
        with pytest.raises(lmsext.LmsextError, match="next-token distribution needs an in-kernel engine; "
                                                     "BaseOnlyEngine does not provide it"):
            llm.next_token_distribution("Once")
        with pytest.raises(lmsext.LmsextError, match="memory estimate needs an in-kernel engine"):
            llm.estimate()
        with pytest.raises(lmsext.LmsextError, match="load preview needs an in-kernel engine"):
            client.llm.plan("stories260K")
        assert llm.complete("Once", config={"maxTokens": 2}).stats.predicted_tokens_count == 2
        llm.unload()
        assert "unload" in engine.calls and not llm.loaded
        with pytest.raises(lmsext.ModelNotLoadedError):
            llm.complete("Once")
    finally:
        client.llm.unload_all()


def test_plan_and_model_info_are_public_api(client, stories_path):
    info = client.llm.model_info("stories260K")
    assert info.path == str(stories_path) and info.n_layer > 0
    preview = client.llm.plan(info, {"contextLength": 512})
    assert preview.effective["context_length"] == 512 and preview.offloadable_layers >= info.n_layer
    assert client.llm.plan("stories260K", {"contextLength": 512}) == preview
    with pytest.raises(lmsext.ConfigError, match="contextLength"):
        client.llm.plan(info, {"contextLength": -1})


def test_the_facts_front_ends_read_are_the_engines_own():
    """One table: the sampler defaults and the context step the panels read from lmsext.config are the
    ones the engine samples and allocates with."""
    from lmsext.config import CONTEXT_STEP, DEFAULT_CONTEXT_LENGTH, SAMPLING_DEFAULTS
    from lmsext.engine import params, sampling
    assert sampling.DEFAULTS is SAMPLING_DEFAULTS
    assert params.CONTEXT_STEP == CONTEXT_STEP and params.DEFAULT_CONTEXT_LENGTH == DEFAULT_CONTEXT_LENGTH
