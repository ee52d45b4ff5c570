"""Fuzz: hundreds of mutated and truncated GGUF files, each loaded through lmsext in a child process.

The files are made at test time (tests/gguf_mutations.py) from stories260K and generated models
(ChatML, MoE, random weights): header edits, truncations, bit flips, boundary integers over every
length/count/type/offset the parser reads, and metadata/tensor changes aimed at llama.cpp's
assumptions. Each child loads a batch (load → complete → respond → unload); a child that dies is
replaced and the file it died on is loaded alone to pin the crash on it (tests/gguf_fuzz_runner.py).

Required: zero crashes (a death by any signal, a non-zero exit or a hang is a failure), and every
file that is not loaded gets an lmsext error whose message is one line naming the problem.
"""

from __future__ import annotations

import collections
import json
import sys
from pathlib import Path

import pytest

from lmsext import synth
from lmsext.engine.validate import validate_gguf
from lmsext.errors import ModelLoadError

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gguf_fuzz_runner import run_files  # noqa: E402
from gguf_mutations import all_mutants, rewrite  # noqa: E402

MIN_FILES = 200


@pytest.fixture(scope="module")
def sources(stories_path, tmp_path_factory):
    folder = tmp_path_factory.mktemp("fuzz-src")
    return [("stories", stories_path), ("chatml", synth.chatml_model(folder)), ("moe", synth.moe_model(folder)),
            ("random", synth.random_model(folder, n_params_target=300_000))]


@pytest.fixture(scope="module")
def fuzz_run(sources, tmp_path_factory):
    out = tmp_path_factory.mktemp("fuzz")
    mutants = all_mutants(sources, out, seed=6, n_trunc=10, n_flip=10, n_words=16, share=0.12)
    run = run_files([str(m.path) for m in mutants], batch=80, per_file_timeout=30.0, parallel=2)
    return mutants, run


def test_mutated_gguf_files_never_crash_and_every_rejection_is_a_clear_error(fuzz_run, record_property):
    mutants, run = fuzz_run
    assert len(mutants) >= MIN_FILES
    outcomes = [run.outcomes[str(m.path)] for m in mutants]
    by_status = collections.Counter(o.status for o in outcomes)
    by_family = collections.Counter((m.family, o.status) for m, o in zip(mutants, outcomes))
    stats = {"files": len(mutants), "children": run.children, "seconds": round(run.seconds, 1),
             **{k: by_status.get(k, 0) for k in ("loaded", "err", "exc", "crash", "hang")},
             "by_family": {f"{f}/{s}": n for (f, s), n in sorted(by_family.items())}}
    record_property("gguf_fuzz", json.dumps(stats))
    print("\ngguf fuzz:", json.dumps(stats))
    crashes = [f"{m.what}: {o.status} {o.detail}" for m, o in zip(mutants, outcomes) if o.status in ("crash", "hang")]
    assert not crashes, f"{len(crashes)} file(s) crashed or hung the process:\n" + "\n".join(crashes[:20])
    unclear = [f"{m.what}: {o.detail}" for m, o in zip(mutants, outcomes) if o.status == "exc"]
    assert not unclear, "errors that are not lmsext errors:\n" + "\n".join(unclear[:20])
    for m, o in zip(mutants, outcomes):
        if o.status != "err":
            continue
        msg = o.message
        assert msg and "\n" not in msg and len(msg) < 400, (m.what, msg)
        assert m.path.name in msg or "chat template" in msg, (m.what, msg)
    # the run exercised both sides: harmless mutations still load and work, harmful ones are refused
    assert by_status["loaded"] >= 30 and by_status["err"] >= MIN_FILES // 2


def test_crash_inputs_found_by_fuzzing_are_refused_before_llama_cpp(stories_path, tmp_path):
    """Each of these used to abort the process inside llama.cpp; now the validator names the problem."""
    cases = {
        "block_count 0": ({"llama.block_count": 0}, "block_count is 0"),
        "block_count 513": ({"llama.block_count": 513}, "supports 1 to 512 layers"),
        "rms epsilon NaN": ({"llama.attention.layer_norm_rms_epsilon": float("nan")}, "must be a finite number"),
        "KV heads 0 in a layer": ({"llama.attention.head_count_kv": ([4, 0, 4, 4, 4], 9, 4)}, "head_count_kv is 0"),
        "more experts used than exist": ({"llama.expert_count": 2, "llama.expert_used_count": 8},
                                         "expert_used_count is 8"),
        "experts without any used": ({"llama.expert_count": 4, "llama.expert_used_count": 0}, "must use 1 to 4"),
        "byte tokens in a BPE vocabulary": ({"tokenizer.ggml.model": "gpt2", "tokenizer.ggml.merges": (["a b"], 9, 8)},
                                            "byte token"),
        "no tokenizer": ({"tokenizer.ggml.model": "none"}, "has no tokenizer"),
    }
    for what, (kv, pattern) in cases.items():
        path = rewrite(stories_path, tmp_path / f"{len(what)}-{what.replace(' ', '_')}.gguf", kv=kv)
        with pytest.raises(ModelLoadError, match=pattern):
            validate_gguf(path)


def test_validator_accepts_the_real_and_generated_models(sources):
    for _, path in sources:
        summary = validate_gguf(path)
        assert summary.tensors and summary.tensor_bytes <= summary.file_size
