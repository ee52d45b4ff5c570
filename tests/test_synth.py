"""Synthetic GGUF models (lmsext.synth): written with gguf, then really loaded and run by llama.cpp."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import gguf
import pytest

from lmsext import synth

llama_cpp = pytest.importorskip("llama_cpp")

ROOT = Path(__file__).resolve().parents[1]
STORY_WORDS = {"the", "a", "was", "she", "he", "to", "and", "her", "little", "day", "play", "said", "they", "one"}




@pytest.fixture(scope="module", autouse=True)
def _env(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("LMSEXT_CACHE_DIR", str(tmp_path_factory.mktemp("synth-cache")))
    mp.setenv("LMSEXT_MODELS_PATH", str(tmp_path_factory.mktemp("models")))  # stories260K: the embedded model
    yield
    mp.undo()


def load(path, **kw):
    kw.setdefault("n_ctx", 256)
    return llama_cpp.Llama(model_path=str(path), verbose=False, **kw)


def complete(llm, prompt="Once upon a time", n=20):
    out = llm.create_completion(prompt, max_tokens=n, temperature=0)
    text = out["choices"][0]["text"]
    assert out["usage"]["completion_tokens"] > 0
    assert text.strip(), out
    return text


def looks_like_story(text: str) -> bool:
    letters = sum(c.isascii() and (c.isalpha() or c in " .,'\"!?\n") for c in text)
    words = {w.strip(".,!?\"'").lower() for w in text.split()}
    return letters / len(text) > 0.9 and len(words & STORY_WORDS) >= 2


def fields(path):
    r = gguf.GGUFReader(str(path))
    return r, {k: f.contents() for k, f in r.fields.items()}


# ---------------------------------------------------------------- write_model, random weights


@pytest.mark.parametrize("dtype", ["f32", "f16", "q8_0"])
def test_random_model_dtypes_load_and_generate(tmp_path, dtype):
    path = synth.write_model(tmp_path / f"m-{dtype}.gguf", dtype=dtype, n_head_kv=2, name="t")
    reader, kv = fields(path)
    assert kv["general.architecture"] == "llama" and kv["general.name"] == "t"
    assert kv["general.file_type"] == {"f32": 0, "f16": 1, "q8_0": 7}[dtype]
    assert kv["llama.block_count"] == 2 and kv["llama.embedding_length"] == 64
    assert kv["llama.attention.head_count"] == 4 and kv["llama.attention.head_count_kv"] == 2
    assert kv["llama.rope.dimension_count"] == 16 and kv["llama.feed_forward_length"] == synth.default_n_ff(64)
    assert kv["llama.vocab_size"] == len(kv["tokenizer.ggml.tokens"]) == len(synth.builtin_vocab().tokens)
    types = {t.name: t.tensor_type.name for t in reader.tensors}
    assert types["blk.0.attn_norm.weight"] == "F32"
    assert types["blk.0.attn_q.weight"] == dtype.upper()
    llm = load(path)
    complete(llm, "Hello")


def test_builtin_tokenizer_roundtrips_utf8(tmp_path):
    llm = load(synth.write_model(tmp_path / "m.gguf"))
    for text in ["Once upon a time, the girl said hello.", "héllo wörld — 日本語 🙂\n\ttabs  and  spaces", "x{}[]<>|~`"]:
        toks = llm.tokenize(text.encode(), add_bos=False)
        assert llm.detokenize(toks).decode() == " " + text  # SPM adds the leading space
    the = llm.tokenize(b"the", add_bos=False)
    assert len(the) == 1 and llm._model.token_get_text(the[0]) == "\u2581the"  # whole word, one token


def test_weights_from_shape_mismatch_is_clear(tmp_path):
    src = synth.write_model(tmp_path / "src.gguf", n_layer=1)
    with pytest.raises(ValueError, match="read_hparams"):
        synth.write_model(tmp_path / "bad.gguf", n_layer=1, n_embd=128, weights_from=src)
    hp = synth.read_hparams(src)
    assert hp["n_layer"] == 1 and hp["n_embd"] == 64 and hp["n_head"] == 4
    copy = synth.write_model(tmp_path / "copy.gguf", **hp, weights_from=src)
    a, b = gguf.GGUFReader(str(src)), gguf.GGUFReader(str(copy))
    for ta, tb in zip(a.tensors, b.tensors):
        assert ta.name == tb.name and (ta.data == tb.data).all()


# ---------------------------------------------------------------- ChatML


CHATML_VARIANTS = [pytest.param(True, id="stories"), pytest.param(False, id="random")]


@pytest.mark.parametrize("stories", CHATML_VARIANTS)
def test_chatml_model(stories):
    path = synth.chatml_model(stories=stories)
    _, kv = fields(path)
    assert kv["tokenizer.chat_template"] == synth.CHATML_TEMPLATE
    llm = load(path)
    assert llm.metadata["tokenizer.chat_template"] == synth.CHATML_TEMPLATE
    vocab = llm._model.vocab
    (start,) = llm.tokenize(b"<|im_start|>", add_bos=False, special=True)
    (end,) = llm.tokenize(b"<|im_end|>", add_bos=False, special=True)
    assert llm._model.token_get_text(start) == "<|im_start|>"
    assert llama_cpp.llama_vocab_is_control(vocab, start) and llama_cpp.llama_vocab_is_control(vocab, end)
    assert llm.token_eos() == end and llama_cpp.llama_vocab_eot(vocab) == end
    assert llama_cpp.llama_vocab_is_eog(vocab, end) and not llama_cpp.llama_vocab_is_eog(vocab, start)
    assert len(llm.tokenize(b"<|im_start|>", add_bos=False, special=False)) > 1  # plain text when not special
    text = complete(llm)
    if stories:
        assert looks_like_story(text), text


def test_chatml_stories_chat_turn_ends_with_im_end():
    llm = load(synth.chatml_model(), n_ctx=512)
    r = llm.create_chat_completion(messages=[{"role": "user", "content": "Tell me a story."}],
                                   max_tokens=400, temperature=0)
    choice = r["choices"][0]
    assert choice["finish_reason"] == "stop"  # stopped on <|im_end|>, not on max_tokens
    assert looks_like_story(choice["message"]["content"]), choice


# ---------------------------------------------------------------- MoE


@pytest.mark.parametrize("stories", CHATML_VARIANTS)
def test_moe_model(stories):
    path = synth.moe_model(n_expert=4, n_expert_used=2, stories=stories)
    reader, kv = fields(path)
    assert kv["llama.expert_count"] == 4 and kv["llama.expert_used_count"] == 2
    shapes = {t.name: tuple(int(x) for x in t.shape) for t in reader.tensors}
    n_embd, n_ff = kv["llama.embedding_length"], kv["llama.feed_forward_length"]
    assert shapes["blk.0.ffn_gate_inp.weight"] == (n_embd, 4)  # ggml order (ne0, ne1, ...)
    assert shapes["blk.0.ffn_gate_exps.weight"] == (n_embd, n_ff, 4)
    assert shapes["blk.0.ffn_up_exps.weight"] == (n_embd, n_ff, 4)
    assert shapes["blk.0.ffn_down_exps.weight"] == (n_ff, n_embd, 4)
    assert "blk.0.ffn_gate.weight" not in shapes
    llm = load(path)
    assert llm.metadata["llama.expert_count"] == "4" and llm.metadata["llama.expert_used_count"] == "2"
    text = complete(llm)
    one = load(path, kv_overrides={"llama.expert_used_count": 1})
    text1 = complete(one)
    if stories:
        assert looks_like_story(text) and looks_like_story(text1), (text, text1)


# ---------------------------------------------------------------- random_model, cache, CLI


def test_random_model_shape_and_cache(tmp_path):
    path = synth.random_model(tmp_path, n_params_target=1_500_000)
    assert path.parent == tmp_path and path.suffix == ".gguf"
    _, kv = fields(path)
    hp = synth.read_hparams(path)
    n = synth.count_params(hp["n_layer"], hp["n_embd"], hp["n_head"], hp["n_head_kv"], hp["n_ff"],
                           len(kv["tokenizer.ggml.tokens"]))
    assert 0.6e6 < n < 2.5e6
    assert kv["general.file_type"] == 1
    mtime = path.stat().st_mtime_ns
    again = synth.random_model(tmp_path, n_params_target=1_500_000)
    assert again == path and again.stat().st_mtime_ns == mtime
    assert synth.random_model(tmp_path, n_params_target=1_500_000, seed=1) != path
    complete(load(path), "Hi")
    assert not list(tmp_path.glob("*.part"))


def test_random_model_explicit_shape(tmp_path):
    shape = {"n_layer": 1, "n_embd": 256, "n_head": 8, "n_head_kv": 2, "n_ff": 512}
    path = synth.random_model(tmp_path, dtype="q8_0", shape=shape)
    hp = synth.read_hparams(path)
    assert {k: hp[k] for k in shape} == shape
    _, kv = fields(path)
    n = synth.count_params(**shape, n_vocab=len(kv["tokenizer.ggml.tokens"]))
    assert kv["general.name"] == f"lmsext-synth-random-{round(n / 1e6, 1)}M"
    assert synth.random_model(tmp_path, dtype="q8_0", shape={**shape, "n_ff": 768}) != path
    complete(load(path), "Hi")


def test_builders_default_to_cache_dir():
    a = synth.chatml_model()
    assert a.parent == synth.cache_dir() == Path(os.environ["LMSEXT_CACHE_DIR"])
    mtime = a.stat().st_mtime_ns
    assert synth.chatml_model() == a and a.stat().st_mtime_ns == mtime
    assert synth.moe_model(n_expert=2, n_expert_used=1) != synth.moe_model()


def test_shapes_for_large_target():
    shape = synth.random_shape(60_000_000)
    n = synth.count_params(**shape, n_vocab=len(synth.builtin_vocab().tokens))
    assert 50e6 < n < 75e6 and shape["n_embd"] % shape["n_head"] == 0


def test_cli_and_no_llama_cpp_import(tmp_path):
    out = tmp_path / "cli.gguf"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, "-m", "lmsext.synth", "moe", str(out), "--n-expert", "3", "--n-expert-used", "1",
                    "--stories", "no"], check=True, env=env, cwd=tmp_path, capture_output=True)
    _, kv = fields(out)
    assert kv["llama.expert_count"] == 3 and kv["llama.expert_used_count"] == 1
    code = ("import sys, lmsext; before = 'llama_cpp' in sys.modules; import lmsext.synth; "
            "assert ('llama_cpp' in sys.modules) == before, 'lmsext.synth imported llama_cpp'")
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=tmp_path)
