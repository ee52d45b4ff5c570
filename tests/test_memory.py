"""Memory: the estimate before loading, refusing loads that do not fit, and no growth over load/unload cycles.

The estimate (weights + KV cache + compute buffers + overhead, lmsext/engine/estimate.py) is
compared with the growth of the resident set measured in a child process (clean baseline) that
loads the model and fills the whole context — the worst case the compute buffers are sized for.
"""

from __future__ import annotations

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

import lmsext
from lmsext import synth
from lmsext.engine import estimate as estimate_module
from lmsext.engine.estimate import MemoryEstimate
from lmsext.errors import InsufficientMemoryError

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gguf_mutations import rewrite  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TOLERANCE = 0.20
CYCLE_LIMIT_MB = 20

MEASURE = r"""
import gc, json, random, sys
import lmsext
from lmsext.config import LoadModelConfig, PredictionConfig
from lmsext.engine import GenerationRequest, SamplingSettings, generate, plan_load, read_model_info
from lmsext.engine.estimate import estimate_memory, rss_bytes
client = lmsext.Client()
warm = client.llm.load("stories260K", config={"contextLength": 256})  # imports, backend, thread pool, Jinja
warm.complete("Once", config={"maxTokens": 4}); warm.respond("Hi", config={"maxTokens": 2}); warm.unload()
gc.collect()
path, cfg = sys.argv[1], json.loads(sys.argv[2])
info = read_model_info(path)
estimate = estimate_memory(info, plan_load(LoadModelConfig.parse(cfg), info))
base = rss_bytes()
llm = client.llm.load(path, config=cfg)
engine = llm._loaded.handle
rng = random.Random(0)
tokens = [1] + [rng.randrange(3, engine.n_vocab) for _ in range(engine.n_ctx - 9)]  # the whole context
sampling = SamplingSettings.resolve(PredictionConfig.parse({"temperature": 0}), None, None)
for _ in generate(engine, GenerationRequest(prompt_tokens=tokens, sampling=sampling, max_tokens=4,
                                            overflow_policy="stopAtLimit")):
    pass
print(json.dumps({"estimate": estimate.to_dict(), "measured": rss_bytes() - base}))
"""

CYCLES = r"""
import gc, json, sys
import lmsext
from lmsext.engine.estimate import rss_bytes
client = lmsext.Client()
path, cfg = sys.argv[1], json.loads(sys.argv[2])

def cycle():
    llm = client.llm.load(path, config=cfg)
    llm.complete("Once upon a time", config={"maxTokens": 16, "temperature": 0})
    llm.respond("Hello", config={"maxTokens": 4})
    llm.unload()

cycle()  # first use: imports, backend, thread pool
gc.collect()
start = rss_bytes()
after = []
for _ in range(20):
    cycle()
    gc.collect()
    after.append(rss_bytes() - start)
print(json.dumps({"start": start, "after": after}))
"""


def _child(code: str, *args: str) -> dict:
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=300,
                          cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _big_vocabulary_model(folder: Path) -> Path:
    """A generated model with a 32,000-token vocabulary (real models' logits and embeddings dominate)."""
    import gguf
    src = synth.write_model(folder / "head32.gguf", n_layer=2, n_embd=128, n_head=4)
    reader = gguf.GGUFReader(src)
    tokens = reader.fields["tokenizer.ggml.tokens"].contents()
    extra = 32000 - len(tokens)
    A, S, F, I = (gguf.GGUFValueType.ARRAY, gguf.GGUFValueType.STRING, gguf.GGUFValueType.FLOAT32,
                  gguf.GGUFValueType.INT32)

    def grow(name, array, dtype):
        if name in ("token_embd.weight", "output.weight"):
            array = np.concatenate([array, np.zeros((extra, array.shape[1]), array.dtype)])
        return array, dtype

    kv = {"tokenizer.ggml.tokens": (tokens + [f"zz{i}" for i in range(extra)], A, S),
          "tokenizer.ggml.scores": (reader.fields["tokenizer.ggml.scores"].contents() + [0.0] * extra, A, F),
          "tokenizer.ggml.token_type": (reader.fields["tokenizer.ggml.token_type"].contents() + [1] * extra, A, I),
          "llama.vocab_size": 32000}
    return rewrite(src, folder / "vocab32k.gguf", kv=kv, tensors=grow)


@pytest.fixture(scope="module")
def models(stories_path, tmp_path_factory):
    folder = tmp_path_factory.mktemp("memory")
    return {"stories260K": stories_path, "random-6M": synth.random_model(folder, n_params_target=6_000_000),
            "moe": synth.moe_model(folder), "vocab-32k": _big_vocabulary_model(folder)}


CASES = [
    ("stories260K", {"contextLength": 512}),
    ("stories260K", {"contextLength": 2048}),
    ("random-6M", {"contextLength": 1024}),
    ("random-6M", {"contextLength": 2048, "flashAttention": True}),
    ("moe", {"contextLength": 1024, "evalBatchSize": 128}),
    ("vocab-32k", {"contextLength": 1024}),
]


def test_estimate_is_within_20_percent_of_the_measured_resident_memory(models, record_property):
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda case: _child(MEASURE, str(models[case[0]]), json.dumps(case[1])), CASES))
    lines, errors = [], []
    for (name, cfg), r in zip(CASES, results):
        est, measured = r["estimate"], r["measured"]
        error = est["total"] / measured - 1
        errors.append(error)
        lines.append(f"{name} {cfg}: estimate {est['total'] / 2**20:.1f} MiB (weights {est['weights'] / 2**20:.1f} + "
                     f"KV {est['kv_cache'] / 2**20:.1f} + compute {est['compute'] / 2**20:.1f} + overhead "
                     f"{est['overhead'] / 2**20:.1f}), measured {measured / 2**20:.1f} MiB → {error:+.0%}")
    print("\n" + "\n".join(lines))
    record_property("memory_estimates", json.dumps(lines))
    bad = [line for line, e in zip(lines, errors) if abs(e) > TOLERANCE]
    assert not bad, "\n".join(bad)


def test_twenty_load_unload_cycles_leave_rss_where_it_started(models):
    for name, cfg in (("stories260K", {"contextLength": 2048}), ("random-6M", {"contextLength": 1024})):
        r = _child(CYCLES, str(models[name]), json.dumps(cfg))
        growth_mb = [b / 1e6 for b in r["after"]]
        print(f"\n{name}: RSS after each of 20 load/unload cycles (MB over the start, "
              f"{r['start'] / 1e6:.0f} MB): {', '.join(f'{g:.1f}' for g in growth_mb)}")
        assert max(abs(g) for g in growth_mb) < CYCLE_LIMIT_MB, (name, growth_mb)


# ------------------------------------------------------------------------------ API and refusal


@pytest.fixture
def client():
    c = lmsext.Client()
    yield c
    c.llm.unload_all()


def test_estimate_api_before_and_after_loading(client, stories_path):
    before = client.llm.estimate("stories260K", {"contextLength": 1000})
    assert isinstance(before, MemoryEstimate) and before.available and before.fits
    assert before.total == before.weights + before.kv_cache + before.compute + before.overhead
    llm = client.llm.load("stories260K", config={"contextLength": 1000})
    after = llm.estimate()
    assert (after.weights, after.kv_cache, after.compute) == (before.weights, before.kv_cache, before.compute)
    assert after.kv_cache == llm.load_result.memory["kv_cache"]  # context 1000 → 1024, in both
    assert "weights" in after.describe() and "KV cache" in after.describe() and "compute buffers" in after.describe()
    flash = client.llm.estimate("stories260K", {"contextLength": 1000, "flashAttention": True})
    assert flash.compute < before.compute  # no KQ matrix with flash attention


def test_a_load_that_does_not_fit_is_refused_with_the_numbers_unless_forced(client, monkeypatch):
    monkeypatch.setattr(estimate_module, "available_memory", lambda: 4 * 2**20)
    with pytest.raises(InsufficientMemoryError, match=r"not loading stories260K\.gguf: it needs about .* MiB "
                                                      r"\(weights .* KV cache .* compute buffers .*\) but only 4 MiB "
                                                      r"is available.*force=True") as info:
        client.llm.load("stories260K", config={"contextLength": 2048})
    assert info.value.estimate.total > info.value.estimate.available
    assert client.llm.list_loaded() == []
    llm = client.llm.load("stories260K", config={"contextLength": 2048}, force=True)
    assert llm.complete("Once", config={"maxTokens": 3}).stats.predicted_tokens_count == 3


def test_magic_estimate_only_and_force(monkeypatch, unload_all, shell):
    from IPython.utils.capture import capture_output
    ip = shell
    ip.run_line_magic("load_ext", "lmsext")
    with capture_output() as cap:
        value = ip.run_line_magic("lm_load", "stories260K --estimate-only --context-length 2048")
    assert isinstance(value, MemoryEstimate) and lmsext.default_client().llm.list_loaded() == []
    text = cap.outputs[0].data["text/plain"]
    assert "stories260K: weights" in text and "compute buffers" in text and "fits" in text
    monkeypatch.setattr(estimate_module, "available_memory", lambda: 2**20)
    with capture_output() as cap:
        ip.run_line_magic("lm_load", "stories260K --new --context-length 2048")
    assert "not loading stories260K.gguf" in cap.outputs[0].data["text/plain"]
    assert lmsext.default_client().llm.list_loaded() == []
    with capture_output() as cap:
        result = ip.run_line_magic("lm_load", "stories260K --new --context-length 2048 --force")
    assert result.config["context_length"] == 2048
