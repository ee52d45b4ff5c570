"""What llama.cpp asserts on beyond the layout (:mod:`.validate` calls these after parsing): the
architecture's hyper-parameters and the tokenizer's vocabulary.
"""

from __future__ import annotations

import math
import re
from typing import Any

from .gguf_format import _ARRAY, _STRING, MAX_EXPERTS, MAX_LAYERS, BadGGUF, GGUFSummary

#: Token types (llama.cpp's ``llama_token_type``).
TOKEN_TYPE_BYTE = 6
#: Tokenizers whose byte tokens are spelled ``<0xXX>`` (SentencePiece / Unigram).
SPM_LIKE = ("llama", "t5")
NO_TOKENIZER = ("none", "no_vocab")
_BYTE_TOKEN = re.compile(r"<0x[0-9A-Fa-f]{2}>")
#: Bytes that occur in UTF-8 text (C0, C1 and F5..FF never do).
UTF8_BYTES = tuple(b for b in range(256) if not (b in (0xC0, 0xC1) or b >= 0xF5))



def _as_list(value: Any, n: int) -> list[Any] | None:
    if isinstance(value, list):
        return value
    if value is None:
        return None
    return [value] * max(n, 1)


def check_architecture(s: GGUFSummary) -> None:
    meta = s.metadata
    arch = meta.get("general.architecture")
    if "general.architecture" not in meta:
        raise BadGGUF("has no general.architecture in its metadata")
    if not isinstance(arch, str) or s.metadata_types["general.architecture"][0] != _STRING:
        raise BadGGUF("general.architecture must be a string")
    if not re.fullmatch(r"[A-Za-z0-9_.\-]{1,64}", arch):
        raise BadGGUF(f"general.architecture {arch[:40]!r} is not an architecture name")
    prefix = arch + "."
    for key, value in meta.items():
        if not key.startswith(prefix):
            continue
        values = value if isinstance(value, list) else [value]
        vtype, itype = s.metadata_types[key]
        if (itype if vtype == _ARRAY else vtype) in (6, 12):
            for v in values:
                if not math.isfinite(v):
                    raise BadGGUF(f"metadata {key} is {v}: must be a finite number")
                if "epsilon" in key and v < 0:
                    raise BadGGUF(f"metadata {key} is {v}: an epsilon must be >= 0")

    def integer(key: str) -> Any:
        vtype, itype = s.metadata_types.get(key, (None, None))
        t = itype if vtype == _ARRAY else vtype
        if t is None or t not in (0, 1, 2, 3, 4, 5, 10, 11):
            return None  # absent or not an integer: llama.cpp reports that itself
        return meta.get(key)

    n_layer = integer(f"{arch}.block_count")
    if isinstance(n_layer, list):
        raise BadGGUF(f"{arch}.block_count must be one number, not an array")
    if n_layer is not None and not 1 <= n_layer <= MAX_LAYERS:
        raise BadGGUF(f"{arch}.block_count is {n_layer}: llama.cpp supports 1 to {MAX_LAYERS} layers")
    n = n_layer or 0
    n_head = _as_list(integer(f"{arch}.attention.head_count"), n)
    n_head_kv = _as_list(integer(f"{arch}.attention.head_count_kv"), n)
    attention_layers = sorted({int(m.group(1)) for t in s.tensors
                               if (m := re.match(r"blk\.(\d+)\.attn_(k|qkv|kv|k_b|kv_a_mqa)\.weight$", t.name))})
    for layer in attention_layers:
        for key, values in ((f"{arch}.attention.head_count", n_head), (f"{arch}.attention.head_count_kv", n_head_kv)):
            if values is None:
                continue
            v = values[layer] if layer < len(values) else (values[-1] if len(values) == 1 else None)
            if v is not None and v < 1:
                raise BadGGUF(f"{key} is {v} for layer {layer}, which has attention weights: must be >= 1")
    n_expert = integer(f"{arch}.expert_count")
    n_used = integer(f"{arch}.expert_used_count")
    used_max = max(n_used) if isinstance(n_used, list) and n_used else n_used
    if isinstance(n_expert, list):
        raise BadGGUF(f"{arch}.expert_count must be one number, not an array")
    if n_expert is not None and n_expert > MAX_EXPERTS:
        raise BadGGUF(f"{arch}.expert_count is {n_expert}: llama.cpp supports at most {MAX_EXPERTS} experts")
    if n_expert:
        if used_max is None or used_max < 1:
            raise BadGGUF(f"{arch}.expert_used_count is {used_max}: a model with {n_expert} experts must use 1 to "
                       f"{n_expert} per token")
        if used_max > n_expert:
            raise BadGGUF(f"{arch}.expert_used_count is {used_max} but the model has only {n_expert} experts")
    elif used_max:
        raise BadGGUF(f"{arch}.expert_used_count is {used_max} but the model has no experts (expert_count 0)")


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte → printable character table (byte-level BPE vocabularies spell bytes this way)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def check_tokenizer(s: GGUFSummary) -> None:
    meta = s.metadata
    model = meta.get("tokenizer.ggml.model")
    if model is None:
        return  # llama.cpp refuses it with a clear message
    if s.metadata_types["tokenizer.ggml.model"][0] != _STRING:
        raise BadGGUF("tokenizer.ggml.model must be a string")
    if model in NO_TOKENIZER:
        raise BadGGUF(f"has no tokenizer (tokenizer.ggml.model = {model!r}): lmsext runs models that read and "
                   "write text")
    if "tokenizer.ggml.tokens" not in meta:
        return  # llama.cpp: "cannot find tokenizer vocab"
    vtype, itype = s.metadata_types["tokenizer.ggml.tokens"]
    if vtype != _ARRAY or itype != _STRING:
        raise BadGGUF("tokenizer.ggml.tokens must be an array of strings")
    raw: list[bytes] = meta["tokenizer.ggml.tokens"]
    if not raw:
        raise BadGGUF("tokenizer.ggml.tokens is empty")
    texts: list[str] = []
    seen: dict[str, int] = {}
    for i, data in enumerate(raw):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise BadGGUF(f"token {i} {data[:20]!r} is not valid UTF-8") from None
        if "\0" in text:
            raise BadGGUF(f"token {i} {text[:20]!r} contains a NUL character")
        if text in seen:
            raise BadGGUF(f"token {i} {text[:20]!r} is the same text as token {seen[text]} (tokens must be unique)")
        seen[text] = i
        texts.append(text)
    types = meta.get("tokenizer.ggml.token_type")
    if isinstance(types, list):
        for i, t in enumerate(types[:len(texts)]):
            if t == TOKEN_TYPE_BYTE:
                if model not in SPM_LIKE:
                    raise BadGGUF(f"token {i} {texts[i][:20]!r} is marked as a byte token, which a {model!r} "
                               "tokenizer cannot have")
                if not _BYTE_TOKEN.fullmatch(texts[i]):
                    raise BadGGUF(f"token {i} {texts[i][:20]!r} is marked as a byte token but is not spelled <0xXX>")
    if model == "llama":
        missing = [b for b in UTF8_BYTES if f"<0x{b:02X}>" not in seen and not (b < 0x80 and chr(b) in seen)]
    elif model == "gpt2":
        table = _bytes_to_unicode()
        missing = [b for b in UTF8_BYTES if table[b] not in seen]
    else:
        missing = []
    if missing:
        shown = ", ".join(f"0x{b:02X}" for b in missing[:4]) + (" …" if len(missing) > 4 else "")
        raise BadGGUF(f"the {model!r} vocabulary cannot spell {len(missing)} byte value(s) of UTF-8 text ({shown}); "
                   "llama.cpp would crash on text containing them")
