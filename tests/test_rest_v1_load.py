"""LM Studio 0.4's REST v1 load fields around seed 002's, and the round trip: any load response's ``config``
sent back as a request (REST or Python) loads the same configuration; ``num_experts: 0`` = the model's default."""

from __future__ import annotations

import httpx
import pytest

import lmsext
from lmsext import synth
from lmsext.config import LoadModelConfig
from lmsext.config.gpu import REPORTED_LAYER_KEYS
from lmsext.config.load import REPORT_ONLY_KEYS
from lmsext import server as rest

MODEL = "stories260K"
SEED_KEYS = ("context_length", "eval_batch_size", "flash_attention", "num_experts", "offload_kv_cache_to_gpu")

#: Non-default values for every load setting the CPU engine can take (the round trip starts from these).
NON_DEFAULTS = {"context_length": 512, "eval_batch_size": 64, "flash_attention": True, "offload_kv_cache_to_gpu": False,
                "gpu": {"ratio": "off"}, "gpu_strict_vram_cap": False, "rope_frequency_base": 20000.0,
                "rope_frequency_scale": 0.5, "try_mmap": False, "keep_model_in_memory": False, "seed": 7,
                "use_fp16_for_kv_cache": True, "llama_k_cache_quantization_type": "f32",
                "llama_v_cache_quantization_type": "f16", "cpu_thread_pool_size": 1}


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models")
    synth.moe_model(folder).rename(folder / "moe.gguf")  # 4 experts, 2 used per token: the key "moe"
    mp = pytest.MonkeyPatch()
    mp.setenv("LMSEXT_MODELS_PATH", str(folder))
    c = lmsext.Client()
    yield c
    c.llm.unload_all()
    mp.undo()


@pytest.fixture(scope="module")
def http(client):
    handle = rest.serve(port=0, client=client)
    with httpx.Client(base_url=handle.url, timeout=60) as h:
        yield h
    handle.stop()


def _load(http, model: str, config: dict | None, echo: bool = False) -> dict:
    body = {"model": model, **({"config": config} if config is not None else {}), "echo_load_config": echo}
    r = http.post("/api/v1/models/load", json=body)
    assert r.status_code == 200, r.text
    return r.json()


def _params(llm) -> dict:
    """The llama.cpp parameters of an instance; ``offload_kqv`` only where the KV cache really is on a GPU (asked
    for or not, a KV cache with no GPU layer stays in RAM: the response says false, the request leaves it on)."""
    params = {k: dict(v) if isinstance(v, dict) else v for k, v in llm.load_result.llama_params.items()}
    if not llm.get_load_config()["offload_kv_cache_to_gpu"]:
        params["context"].pop("offload_kqv", None)
    return params


def _unload(http, body: dict) -> None:
    assert http.post("/api/v1/models/unload", json={"instance_id": body["instance_id"]}).status_code == 200


def test_load_response_has_the_0_4_fields_and_the_seed_ones(http):
    body = _load(http, MODEL, {"context_length": 1024})
    assert list(body) == ["type", "instance_id", "model_instance_id", "config", "load_time_seconds", "status"]
    assert body["type"] == "llm" and body["status"] == "loaded" and body["instance_id"] == body["model_instance_id"]
    assert list(body["config"])[:5] == list(SEED_KEYS) and body["config"]["num_experts"] == 0  # as the seed shows
    assert body["load_time_seconds"] >= 0
    _unload(http, body)
    echoed = _load(http, MODEL, {"context_length": 1024}, echo=True)
    assert list(echoed)[-1] == "load_config" and echoed["load_config"]["context_length"] == 1024
    assert echoed["load_config"] == echoed["config"]
    models = http.get("/api/v1/models").json()["models"]
    [instance] = next(m for m in models if m["key"] == MODEL)["loaded_instances"]
    assert instance["config"]["parallel"] == 1  # the in-kernel engine runs one prediction per instance
    assert list(instance["config"]).index("parallel") == list(instance["config"]).index("eval_batch_size") + 1
    _unload(http, echoed)


@pytest.mark.parametrize("model, start", [
    (MODEL, None), (MODEL, NON_DEFAULTS), ("moe", None), ("moe", {"num_experts": 1, "context_length": 256}),
    ("moe", {"num_experts": 0}),
])
def test_rest_round_trip_every_field(http, client, model, start):
    first = _load(http, model, start)
    config = first["config"]
    settable = set(LoadModelConfig.field_names("snake"))
    assert settable <= set(config), f"not reported: {settable - set(config)}"  # every field takes part
    llm = client.llm.get(first["instance_id"])
    if start:  # what was asked is what runs
        for key, value in start.items():
            assert config[key] == (value if key != "num_experts" or value else 2) or key == "gpu", (key, config[key])
    again = _load(http, model, config)  # the response's own config, verbatim, as a request
    assert again["config"] == config
    twin = client.llm.get(again["instance_id"])
    assert _params(twin) == _params(llm)  # the same llama.cpp parameters
    _unload(http, again)
    _unload(http, first)


def test_python_round_trip_and_num_experts_zero(client):
    moe = client.llm.load("moe", config={"numExperts": 1})
    assert moe.get_load_config()["num_experts"] == 1
    back = client.llm.load("moe", config=moe.get_load_config())
    assert back.get_load_config() == moe.get_load_config()
    default = client.llm.load("moe", config={"numExperts": 0})
    assert default.get_load_config()["num_experts"] == 2  # the model's own expert_used_count
    assert not any("expert_used_count" in str(k) for k in default.load_result.llama_params.get("kv_overrides") or {})
    dense = client.llm.load(MODEL, config={"num_experts": 0})  # 0 on a dense model: its default (none), not an error
    assert dense.get_load_config()["num_experts"] == 0
    for llm in (moe, back, default, dense):
        llm.unload()


def test_report_only_keys_are_only_dropped_beside_what_they_are_derived_from():
    assert "decode_threads" in REPORT_ONLY_KEYS and "layers" in REPORTED_LAYER_KEYS
    cfg = LoadModelConfig.parse({"gpu": {"ratio": 0.0, "layers": 0, "total_layers": 6}, "decode_threads": {"max": 1}})
    assert cfg.explicit()["gpu"].explicit() == {"ratio": 0.0}
    with pytest.raises(lmsext.ConfigError, match="layers"):
        LoadModelConfig.parse({"gpu": {"layers": 3}})  # without the ratio it would be a setting: refused


def test_lm_studio_parallel_in_a_request_sets_max_parallel_predictions(http, client):
    """LM Studio 0.4 reports ``parallel`` in an instance's config: sent back as a request it loads that many slots."""
    body = _load(http, "stories260K", {"context_length": 512, "parallel": 2})
    try:
        assert body["config"]["max_parallel_predictions"] == 2 and body["config"]["parallel"] == 2
        again = _load(http, "stories260K", body["config"])
        assert again["config"]["max_parallel_predictions"] == 2
        http.post("/api/v1/models/unload", json={"instance_id": again["instance_id"]})
    finally:
        http.post("/api/v1/models/unload", json={"instance_id": body["instance_id"]})
