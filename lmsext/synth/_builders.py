"""Cached convenience builders for the synthetic models used by tests, notebooks and benchmarks."""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any, Callable

from ._model import read_hparams, write_model
from ._vocab import builtin_vocab

#: Bump when the bytes written for the same arguments change, so stale cache entries are not reused.
FORMAT_VERSION = 1

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

STORIES_FILE = "stories260K.gguf"


def cache_dir() -> Path:
    """The default cache folder: ``$LMSEXT_CACHE_DIR`` or ``~/.cache/lmsext/synth``."""
    env = os.environ.get("LMSEXT_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "lmsext" / "synth"


def find_stories(filename: str = STORIES_FILE) -> Path | None:
    """Path of ``stories260K.gguf`` in one of the ``LMSEXT_MODELS_PATH`` folders (os.pathsep-separated), else
    the embedded default model's file (for the default name); None only for another name not found."""
    for folder in os.environ.get("LMSEXT_MODELS_PATH", "").split(os.pathsep):
        if folder.strip():
            candidate = Path(folder.strip()).expanduser() / filename
            if candidate.is_file():
                return candidate
    if filename == STORIES_FILE:
        from ..models import embedded_model_path
        embedded = embedded_model_path()
        return embedded if embedded.is_file() else None
    return None


def _source(stories: bool | None) -> Path | None:
    if stories is False:
        return None
    found = find_stories()
    if found is None and stories:
        raise FileNotFoundError(f"{STORIES_FILE} not found in LMSEXT_MODELS_PATH nor inside the package")
    return found


def _cached(kind: str, dest: str | os.PathLike[str] | None, args: dict[str, Any], source: Path | None,
            build: Callable[[Path], Path]) -> Path:
    folder = Path(dest) if dest is not None else cache_dir()
    ident: dict[str, Any] = {"kind": kind, "format": FORMAT_VERSION, "args": args}
    if source is not None:
        st = source.stat()
        ident["source"] = [source.name, st.st_size, st.st_mtime_ns]
    key = hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]
    path = folder / f"{kind}-{key}.gguf"
    if not path.is_file():
        build(path)  # written to a temporary file and renamed: never seen half-written
    return path


def chatml_model(dest: str | os.PathLike[str] | None = None, *, stories: bool | None = None) -> Path:
    """Tiny llama model with a ChatML jinja chat template (cached). Derived from stories260K
    (its tokenizer + weights: it writes stories) when found via ``LMSEXT_MODELS_PATH``,
    otherwise built-in tokenizer and random weights. ``stories``: None=auto, True=require, False=never."""
    src = _source(stories)

    def build(path: Path) -> Path:
        if src is not None:
            return write_model(path, **_dense(read_hparams(src)), chat_template=CHATML_TEMPLATE,
                               weights_from=src, name="lmsext-synth-chatml-stories260K")
        return write_model(path, chat_template=CHATML_TEMPLATE, name="lmsext-synth-chatml-random")

    return _cached("chatml", dest, {"stories": src is not None}, src, build)


def moe_model(dest: str | os.PathLike[str] | None = None, n_expert: int = 4, n_expert_used: int = 2, *,
              stories: bool | None = None) -> Path:
    """Tiny Mixtral-style MoE llama model (cached): ``n_expert`` experts, ``n_expert_used`` per
    token. From stories260K (each expert = its FFN plus a little noise) when found, else random."""
    src = _source(stories)

    def build(path: Path) -> Path:
        if src is not None:
            return write_model(path, **_dense(read_hparams(src)), n_expert=n_expert, n_expert_used=n_expert_used,
                               weights_from=src, name=f"lmsext-synth-moe{n_expert}x-stories260K")
        return write_model(path, n_expert=n_expert, n_expert_used=n_expert_used,
                           name=f"lmsext-synth-moe{n_expert}x-random")

    return _cached("moe", dest, {"n_expert": n_expert, "n_expert_used": n_expert_used, "stories": src is not None},
                   src, build)


def random_shape(n_params_target: int) -> dict[str, int]:
    """``write_model`` shape arguments for about ``n_params_target`` parameters (built-in vocabulary):
    width ~ (64/12 * target)^(1/3) rounded to 64, depth to fill the target."""
    n_vocab = len(builtin_vocab().tokens)
    n_embd = max(64, int(round((n_params_target * 64 / 12) ** (1 / 3) / 64)) * 64)
    n_head = max(1, n_embd // 64) if n_embd >= 128 else n_embd // 32
    n_ff = int(math.ceil(8 * n_embd / 3 / 64) * 64)
    per_layer = 4 * n_embd * n_embd + 3 * n_embd * n_ff + 2 * n_embd
    n_layer = max(1, int(round((n_params_target - 2 * n_vocab * n_embd) / per_layer)))
    return {"n_layer": n_layer, "n_embd": n_embd, "n_head": n_head, "n_head_kv": n_head, "n_ff": n_ff}


def count_params(n_layer: int, n_embd: int, n_head: int, n_head_kv: int, n_ff: int, n_vocab: int,
                 n_expert: int = 0) -> int:
    """Parameter count of a model ``write_model`` writes with these shapes."""
    head_dim = n_embd // n_head
    attn = 2 * n_embd * n_head * head_dim + 2 * n_embd * n_head_kv * head_dim
    ffn = 3 * n_embd * n_ff * max(1, n_expert) + n_expert * n_embd
    return 2 * n_vocab * n_embd + n_embd + n_layer * (attn + ffn + 2 * n_embd)


def random_model(dest: str | os.PathLike[str] | None = None, n_params_target: int = 2_000_000,
                 dtype: str = "f16", *, seed: int = 0, shape: dict[str, int] | None = None,
                 n_vocab: int | None = None) -> Path:
    """Random-weights llama model of about ``n_params_target`` parameters for benchmarks
    (cached; built-in tokenizer, no chat template). E.g. 60_000_000 gives ~60M params.

    ``shape`` (``n_layer``, ``n_embd``, ``n_head``, ``n_head_kv``, ``n_ff``) overrides the shape
    :func:`random_shape` picks (``n_params_target`` is then ignored). ``n_vocab`` pads the
    vocabulary to a real model's size (e.g. 151,936) with filler tokens."""
    vocab_size = n_vocab or len(builtin_vocab().tokens)
    if shape is not None:
        shape = dict(shape)
        n_params_target = count_params(**shape, n_vocab=vocab_size)
    else:
        shape = random_shape(n_params_target)

    def build(path: Path) -> Path:
        return write_model(path, **shape, dtype=dtype, seed=seed, n_vocab=n_vocab,
                           name=f"lmsext-synth-random-{round(n_params_target / 1e6, 1)}M")

    args: dict[str, Any] = {"shape": shape, "dtype": dtype, "seed": seed}
    if n_vocab is not None:  # keeps the cache keys of models without it
        args["n_vocab"] = n_vocab
    return _cached("random", dest, args, None, build)


def _dense(hp: dict[str, int]) -> dict[str, int]:
    return {k: v for k, v in hp.items() if k not in ("n_expert", "n_expert_used")}
