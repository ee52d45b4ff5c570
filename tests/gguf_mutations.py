"""Mutated and truncated GGUF files for the fuzz test (tests/test_gguf_fuzz.py).

Three families, all deterministic for a given seed:

* **raw** — truncations at every interesting boundary and random offsets, random byte flips and
  "interesting" integers written over the header/metadata/tensor-info region;
* **structured** — every integer the GGUF parser reads (key/string/array lengths, value types,
  tensor dims/types/offsets, header counts) located with ``gguf.GGUFReader`` and overwritten with
  boundary values;
* **semantic** — the file re-written with ``gguf.GGUFWriter`` with one metadata value or tensor
  changed to something llama.cpp may not expect (zero heads, mismatched shapes, short vocab arrays,
  token ids out of range, unknown architecture, NaN weights, …).
"""

from __future__ import annotations

import random
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import gguf
import numpy as np

INTERESTING_32 = (0, 1, 2, 3, 7, 8, 0x7F, 0xFF, 0x100, 0x7FFF, 0x8000, 0xFFFF, 0x10000, 0x7FFFFFFF,
                  0x80000000, 0xFFFFFFFE, 0xFFFFFFFF)
INTERESTING_64 = INTERESTING_32 + (0x100000000, 0x7FFFFFFFFFFFFFFF, 0x8000000000000000, 0xFFFFFFFFFFFFFFFF,
                                   1 << 40)
DELETE = object()


@dataclass(frozen=True)
class Mutant:
    """One mutated file: where it is, which family made it, and what was changed."""

    path: Path
    family: str
    what: str


# ------------------------------------------------------------------------------ raw


def _parts(reader: gguf.GGUFReader) -> list[tuple[str, int, np.ndarray]]:
    """(label, file offset, array) of every integer part the GGUF parser reads before the data."""
    base = reader.data.ctypes.data
    out = []
    for name, field in reader.fields.items():
        for i, part in enumerate(field.parts):
            if part.dtype.kind in "ui" and part.size <= 2:
                out.append((f"{name}[{i}]", part.ctypes.data - base, part))
    for t in reader.tensors:
        for i, part in enumerate(t.field.parts):
            if part.dtype.kind in "ui" and part.size <= 4:
                out.append((f"tensor {t.name}[{i}]", part.ctypes.data - base, part))
    return out


def raw_mutants(src: Path, out: Path, rng: random.Random, n_trunc: int, n_flip: int, n_words: int,
                tag: str) -> Iterator[Mutant]:
    data = src.read_bytes()
    reader = gguf.GGUFReader(src)
    meta_end = reader.data_offset
    # truncations: header boundaries, each field/tensor-info start, inside the data, random
    cuts = {0, 1, 3, 4, 7, 8, 12, 16, 20, 23, 24, meta_end - 1, meta_end, meta_end + 1, len(data) - 1,
            len(data) - 32}
    fields = sorted(f.offset for f in reader.fields.values()) + sorted(t.field.offset for t in reader.tensors)
    chosen = set(rng.sample(sorted(cuts), min(len(cuts), n_trunc // 3)))
    chosen.update(rng.sample(fields, min(len(fields), n_trunc // 3)))
    while len(chosen) < n_trunc:
        chosen.add(rng.randrange(1, len(data)))
    for cut in sorted(chosen):
        path = out / f"{tag}-trunc-{cut}.gguf"
        path.write_bytes(data[:cut])
        yield Mutant(path, "truncated", f"{tag} truncated to {cut} of {len(data)} bytes")
    for i in range(n_flip):
        buf = bytearray(data)
        n = rng.choice((1, 1, 2, 4, 16))
        where = []
        for _ in range(n):
            pos = rng.randrange(4, meta_end)
            buf[pos] ^= 1 << rng.randrange(8)
            where.append(pos)
        path = out / f"{tag}-flip-{i}.gguf"
        path.write_bytes(bytes(buf))
        yield Mutant(path, "bitflip", f"{tag} bits flipped at {where}")
    parts = _parts(reader)
    for i in range(n_words):
        label, off, part = rng.choice(parts)
        buf = bytearray(data)
        size = part.dtype.itemsize
        value = rng.choice(INTERESTING_64 if size == 8 else INTERESTING_32)
        if rng.random() < 0.3:  # off by a little instead
            value = (int(part.flat[0]) + rng.choice((-1, 1, 2, -2, 64))) % (1 << (8 * size))
        value %= 1 << (8 * size)
        buf[off:off + size] = value.to_bytes(size, "little")
        path = out / f"{tag}-word-{i}.gguf"
        path.write_bytes(bytes(buf))
        yield Mutant(path, "structured", f"{tag} {label} = {value:#x}")


def header_mutants(src: Path, out: Path, tag: str, pick: Callable[[int], bool] = lambda n: True) -> Iterator[Mutant]:
    """The fixed header: magic, version, tensor count, kv count."""
    data = src.read_bytes()
    edits = [
        ("magic GGUX", 0, b"GGUX"), ("magic lower", 0, b"gguf"), ("version 0", 4, struct.pack("<I", 0)),
        ("version 1", 4, struct.pack("<I", 1)), ("version 4", 4, struct.pack("<I", 4)),
        ("version big-endian 3", 4, struct.pack(">I", 3)),
        ("n_tensors 0", 8, struct.pack("<Q", 0)), ("n_tensors huge", 8, struct.pack("<Q", 1 << 60)),
        ("n_tensors +1", 8, struct.pack("<Q", struct.unpack_from("<Q", data, 8)[0] + 1)),
        ("n_tensors -1", 8, struct.pack("<Q", struct.unpack_from("<Q", data, 8)[0] - 1)),
        ("n_kv 0", 16, struct.pack("<Q", 0)), ("n_kv huge", 16, struct.pack("<Q", 1 << 62)),
        ("n_kv +1", 16, struct.pack("<Q", struct.unpack_from("<Q", data, 16)[0] + 1)),
        ("n_kv -1", 16, struct.pack("<Q", struct.unpack_from("<Q", data, 16)[0] - 1)),
    ]
    for i, (what, off, new) in enumerate(edits):
        if not pick(i):
            continue
        buf = bytearray(data)
        buf[off:off + len(new)] = new
        path = out / f"{tag}-header-{i}.gguf"
        path.write_bytes(bytes(buf))
        yield Mutant(path, "header", f"{tag} {what}")


# ------------------------------------------------------------------------------ semantic

_WRITERS: dict[gguf.GGUFValueType, str] = {
    gguf.GGUFValueType.UINT8: "add_uint8", gguf.GGUFValueType.INT8: "add_int8",
    gguf.GGUFValueType.UINT16: "add_uint16", gguf.GGUFValueType.INT16: "add_int16",
    gguf.GGUFValueType.UINT32: "add_uint32", gguf.GGUFValueType.INT32: "add_int32",
    gguf.GGUFValueType.UINT64: "add_uint64", gguf.GGUFValueType.INT64: "add_int64",
    gguf.GGUFValueType.FLOAT32: "add_float32", gguf.GGUFValueType.FLOAT64: "add_float64",
    gguf.GGUFValueType.BOOL: "add_bool", gguf.GGUFValueType.STRING: "add_string",
}


def _value(field: Any) -> tuple[Any, gguf.GGUFValueType, gguf.GGUFValueType | None]:
    main = field.types[0]
    if main == gguf.GGUFValueType.ARRAY:
        return field.contents(), main, field.types[-1]
    return field.contents(), main, None


def rewrite(src: Path, dst: Path, kv: dict[str, Any] | None = None,
            tensors: Callable[[str, np.ndarray, Any], tuple[np.ndarray, Any] | None] | None = None,
            extra_tensors: list[tuple[str, np.ndarray]] = ()) -> Path:
    """Copy ``src`` to ``dst`` through GGUFWriter with metadata ``kv`` changed (``DELETE`` removes a key;
    a ``(value, GGUFValueType[, item type])`` tuple forces the type) and tensors edited by ``tensors``
    (return ``None`` to drop one, or ``(array, raw_dtype)``)."""
    kv = dict(kv or {})
    reader = gguf.GGUFReader(src)
    arch = reader.fields["general.architecture"].contents()
    writer = gguf.GGUFWriter(dst, arch if not isinstance(kv.get("general.architecture"), str)
                             else kv["general.architecture"])
    done = {"general.architecture"}
    for name, field in reader.fields.items():
        if name.startswith("GGUF.") or name in done:
            continue
        new = kv.pop(name, None) if name in kv else None
        if new is DELETE:
            continue
        value, vtype, itype = _value(field)
        if new is not None:
            if isinstance(new, tuple):
                value, vtype, *rest = new
                itype = rest[0] if rest else itype
            else:
                value = new
        _add(writer, name, value, vtype, itype)
    for name, new in kv.items():
        if new is DELETE or name == "general.architecture":
            continue
        value, vtype, *rest = new if isinstance(new, tuple) else (new, _guess(new))
        _add(writer, name, value, vtype, rest[0] if rest else _guess_item(value))
    for t in reader.tensors:
        arr = np.array(t.data)
        raw_dtype = t.tensor_type
        if tensors is not None:
            res = tensors(t.name, arr, raw_dtype)
            if res is None:
                continue
            arr, raw_dtype = res
        if raw_dtype in (gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16):
            writer.add_tensor(t.name, arr, raw_shape=arr.shape, raw_dtype=raw_dtype)
        else:
            writer.add_tensor(t.name, arr, raw_dtype=raw_dtype)
    for name, arr in extra_tensors:
        writer.add_tensor(name, arr)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return dst


def _guess(value: Any) -> gguf.GGUFValueType:
    if isinstance(value, bool):
        return gguf.GGUFValueType.BOOL
    if isinstance(value, int):
        return gguf.GGUFValueType.UINT32 if 0 <= value < 1 << 32 else gguf.GGUFValueType.INT64
    if isinstance(value, float):
        return gguf.GGUFValueType.FLOAT32
    if isinstance(value, str):
        return gguf.GGUFValueType.STRING
    return gguf.GGUFValueType.ARRAY


def _guess_item(value: Any) -> gguf.GGUFValueType | None:
    if isinstance(value, list) and value:
        return _guess(value[0])
    return None


def _add(writer: gguf.GGUFWriter, name: str, value: Any, vtype: gguf.GGUFValueType,
         itype: gguf.GGUFValueType | None) -> None:
    if vtype == gguf.GGUFValueType.ARRAY:
        writer.add_key_value(name, list(value), vtype, sub_type=itype)
    else:
        writer.add_key_value(name, value, vtype)


def semantic_mutants(src: Path, out: Path, tag: str, pick: Callable[[int], bool] = lambda n: True
                     ) -> Iterator[Mutant]:
    """One meaningful change per file, aimed at llama.cpp's assumptions (case ``i`` only if ``pick(i)``)."""
    reader = gguf.GGUFReader(src)
    arch = reader.fields["general.architecture"].contents()
    n_vocab = len(reader.fields["tokenizer.ggml.tokens"].contents())
    U32, I32, STR, F32, ARR = (gguf.GGUFValueType.UINT32, gguf.GGUFValueType.INT32, gguf.GGUFValueType.STRING,
                               gguf.GGUFValueType.FLOAT32, gguf.GGUFValueType.ARRAY)
    tokens = reader.fields["tokenizer.ggml.tokens"].contents()
    a = arch
    kv_cases: list[tuple[str, dict[str, Any]]] = [
        ("unknown architecture", {"general.architecture": "notanarch"}),
        ("architecture empty", {"general.architecture": ""}),
        ("architecture of another family", {"general.architecture": "bert"}),
        ("architecture gpt2", {"general.architecture": "gpt2"}),
        ("block_count 0", {f"{a}.block_count": 0}),
        ("block_count +1", {f"{a}.block_count": 1 + _int(reader, f"{a}.block_count")}),
        ("block_count huge", {f"{a}.block_count": 1 << 20}),
        ("block_count missing", {f"{a}.block_count": DELETE}),
        ("head_count 0", {f"{a}.attention.head_count": 0}),
        ("head_count 3", {f"{a}.attention.head_count": 3}),
        ("head_count huge", {f"{a}.attention.head_count": 1 << 30}),
        ("head_count_kv 0", {f"{a}.attention.head_count_kv": 0}),
        ("head_count_kv 3", {f"{a}.attention.head_count_kv": 3}),
        ("head_count_kv > head_count", {f"{a}.attention.head_count_kv": 2 * _int(reader, f"{a}.attention.head_count")}),
        ("head_count missing", {f"{a}.attention.head_count": DELETE}),
        ("embedding_length 0", {f"{a}.embedding_length": 0}),
        ("embedding_length 2x", {f"{a}.embedding_length": 2 * _int(reader, f"{a}.embedding_length")}),
        ("embedding_length missing", {f"{a}.embedding_length": DELETE}),
        ("feed_forward_length 0", {f"{a}.feed_forward_length": 0}),
        ("feed_forward_length +1", {f"{a}.feed_forward_length": 1 + _int(reader, f"{a}.feed_forward_length")}),
        ("context_length 0", {f"{a}.context_length": 0}),
        ("context_length 1", {f"{a}.context_length": 1}),
        ("context_length huge", {f"{a}.context_length": 0xFFFFFFFF}),
        ("context_length missing", {f"{a}.context_length": DELETE}),
        ("rope dims 0", {f"{a}.rope.dimension_count": 0}),
        ("rope dims odd", {f"{a}.rope.dimension_count": 7}),
        ("rope dims huge", {f"{a}.rope.dimension_count": 1 << 20}),
        ("rope freq base 0", {f"{a}.rope.freq_base": 0.0}),
        ("rope freq base NaN", {f"{a}.rope.freq_base": float("nan")}),
        ("rope freq base negative", {f"{a}.rope.freq_base": -1e4}),
        ("rms eps 0", {f"{a}.attention.layer_norm_rms_epsilon": 0.0}),
        ("rms eps NaN", {f"{a}.attention.layer_norm_rms_epsilon": float("nan")}),
        ("rms eps as string", {f"{a}.attention.layer_norm_rms_epsilon": ("tiny", STR)}),
        ("block_count as string", {f"{a}.block_count": ("five", STR)}),
        ("block_count as float", {f"{a}.block_count": (5.0, F32)}),
        ("block_count negative int32", {f"{a}.block_count": (-5, I32)}),
        ("head_count as array", {f"{a}.attention.head_count": ([8, 8, 8], ARR, U32)}),
        ("head_count_kv short array", {f"{a}.attention.head_count_kv": ([4], ARR, U32)}),
        ("head_count_kv array with 0", {f"{a}.attention.head_count_kv": ([4, 0, 4, 4, 4, 4, 4, 4][:max(
            1, _int(reader, f"{a}.block_count"))], ARR, U32)}),
        ("expert_count without experts", {f"{a}.expert_count": 4, f"{a}.expert_used_count": 2}),
        ("expert_used_count > expert_count", {f"{a}.expert_count": 2, f"{a}.expert_used_count": 8}),
        ("expert_used_count 0 with experts", {f"{a}.expert_count": 4, f"{a}.expert_used_count": 0}),
        ("expert_used_count huge", {f"{a}.expert_count": 4, f"{a}.expert_used_count": 0xFFFFFFFF}),
        ("sliding window 0", {f"{a}.attention.sliding_window": 0}),
        ("tokenizer model unknown", {"tokenizer.ggml.model": "nosuchtok"}),
        ("tokenizer model gpt2 without merges", {"tokenizer.ggml.model": "gpt2"}),
        ("tokenizer model bert", {"tokenizer.ggml.model": "bert"}),
        ("tokenizer model none", {"tokenizer.ggml.model": "none"}),
        ("tokenizer model missing", {"tokenizer.ggml.model": DELETE}),
        ("tokens missing", {"tokenizer.ggml.tokens": DELETE}),
        ("tokens empty", {"tokenizer.ggml.tokens": ([], ARR, STR)}),
        ("tokens short", {"tokenizer.ggml.tokens": (tokens[: n_vocab // 2], ARR, STR)}),
        ("tokens duplicated", {"tokenizer.ggml.tokens": ([tokens[0]] * n_vocab, ARR, STR)}),
        ("tokens as ints", {"tokenizer.ggml.tokens": (list(range(n_vocab)), ARR, I32)}),
        ("tokens with invalid UTF-8", {"tokenizer.ggml.tokens": (
            [t.encode() if i % 7 else b"\xff\xfe" + t.encode() for i, t in enumerate(tokens)], ARR, STR)}),
        ("token with NUL", {"tokenizer.ggml.tokens": ([t if i != 300 else "a\0b" for i, t in enumerate(tokens)],
                                                       ARR, STR)}),
        ("scores short", {"tokenizer.ggml.scores": ([0.0] * (n_vocab // 2), ARR, F32)}),
        ("scores NaN", {"tokenizer.ggml.scores": ([float("nan")] * n_vocab, ARR, F32)}),
        ("scores as strings", {"tokenizer.ggml.scores": (["x"] * n_vocab, ARR, STR)}),
        ("scores empty", {"tokenizer.ggml.scores": ([], ARR, F32)}),
        ("token_type short", {"tokenizer.ggml.token_type": ([1] * (n_vocab // 2), ARR, I32)}),
        ("token_type out of range", {"tokenizer.ggml.token_type": ([99] * n_vocab, ARR, I32)}),
        ("token_type negative", {"tokenizer.ggml.token_type": ([-1] * n_vocab, ARR, I32)}),
        ("token_type all control", {"tokenizer.ggml.token_type": ([3] * n_vocab, ARR, I32)}),
        ("token_type all unused", {"tokenizer.ggml.token_type": ([5] * n_vocab, ARR, I32)}),
        ("token_type all byte", {"tokenizer.ggml.token_type": ([6] * n_vocab, ARR, I32)}),
        ("no byte tokens", {"tokenizer.ggml.token_type": ([1] * n_vocab, ARR, I32)}),
        ("bos id out of range", {"tokenizer.ggml.bos_token_id": n_vocab}),
        ("bos id huge", {"tokenizer.ggml.bos_token_id": 0xFFFFFFF0}),
        ("bos id negative", {"tokenizer.ggml.bos_token_id": (-2, I32)}),
        ("eos id out of range", {"tokenizer.ggml.eos_token_id": n_vocab + 5}),
        ("eos id huge", {"tokenizer.ggml.eos_token_id": 0x7FFFFFFF}),
        ("unk id out of range", {"tokenizer.ggml.unknown_token_id": n_vocab}),
        ("pad id out of range", {"tokenizer.ggml.padding_token_id": n_vocab + 1}),
        ("eot id out of range", {"tokenizer.ggml.eot_token_id": n_vocab + 1}),
        ("eom id out of range", {"tokenizer.ggml.eom_token_id": n_vocab * 4}),
        ("fim ids out of range", {"tokenizer.ggml.fim_pre_token_id": n_vocab, "tokenizer.ggml.fim_suf_token_id":
                                  n_vocab + 1, "tokenizer.ggml.fim_mid_token_id": n_vocab + 2}),
        ("bos id as string", {"tokenizer.ggml.bos_token_id": ("1", STR)}),
        ("add_bos as string", {"tokenizer.ggml.add_bos_token": ("yes", STR)}),
        ("merges garbage", {"tokenizer.ggml.model": "gpt2", "tokenizer.ggml.merges": (["a", "b c d", " "], ARR,
                                                                                       STR)}),
        ("merges with unknown tokens", {"tokenizer.ggml.model": "gpt2", "tokenizer.ggml.merges": (
            ["zzq qqz", "\u2581 \u2581"] * 10, ARR, STR)}),
        ("pre-tokenizer unknown", {"tokenizer.ggml.model": "gpt2", "tokenizer.ggml.pre": "nosuchpre"}),
        ("chat template garbage", {"tokenizer.chat_template": "{% for %}{{ oops"}),
        ("chat template raises", {"tokenizer.chat_template": "{{ raise_exception('boom') }}"}),
        ("chat template huge loop", {"tokenizer.chat_template": "{% for i in range(10**9) %}x{% endfor %}"}),
        ("chat template as int", {"tokenizer.chat_template": (7, U32)}),
        ("chat template nested loops", {"tokenizer.chat_template":
                                        "{% for i in range(99999) %}{% for j in range(99999) %}x{% endfor %}{% endfor %}"}),
        ("chat template doubling macro", {"tokenizer.chat_template": "{% macro f(s, n) %}{% if n > 0 %}{{ f(s ~ s, n - 1) }}"
                                          "{% else %}{{ s }}{% endif %}{% endmacro %}{{ f('x', 64) }}"}),
        ("chat template huge repeat", {"tokenizer.chat_template": "{{ 'x' * 10**12 }}"}),
        ("chat template recursion", {"tokenizer.chat_template": "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}"}),
        ("tokenizer gpt2 with merges and byte tokens", {"tokenizer.ggml.model": "gpt2", "tokenizer.ggml.merges": (
            ["\u2581 t", "h e"], ARR, STR)}),
        ("tokenizer bert with normal tokens", {"tokenizer.ggml.model": "bert",
                                               "tokenizer.ggml.token_type": ([1] * n_vocab, ARR, I32)}),
        ("tokenizer t5", {"tokenizer.ggml.model": "t5"}),
        ("tokenizer rwkv", {"tokenizer.ggml.model": "rwkv"}),
        ("tokenizer plamo2", {"tokenizer.ggml.model": "plamo2"}),
        ("byte token misspelled", {"tokenizer.ggml.tokens": ([t if t != "<0x41>" else "A-byte" for t in tokens], ARR,
                                                             STR)}),
        ("byte tokens missing", {"tokenizer.ggml.tokens": ([t if not t.startswith("<0x") else f"zz{i}"
                                                            for i, t in enumerate(tokens)], ARR, STR)}),
        ("newline byte token missing", {"tokenizer.ggml.tokens": ([t if t != "<0x0A>" else "zz-newline"
                                                                   for t in tokens], ARR, STR)}),
        ("file_type unknown", {"general.file_type": 9999}),
        ("alignment 0", {"general.alignment": 0}),
        ("alignment 3", {"general.alignment": 3}),
        ("alignment huge", {"general.alignment": 1 << 30}),
        ("name invalid UTF-8", {"general.name": (b"\xff\xfe\xfd", STR)}),
        ("quantization_version huge", {"general.quantization_version": 0xFFFFFFFF}),
        ("unknown keys", {"general.zzz": 1, f"{a}.zzz": ("x", STR), "zzz": ([1, 2, 3], ARR, U32)}),
    ]
    for i, (what, kv) in enumerate(kv_cases):
        if not pick(i):
            continue
        path = out / f"{tag}-kv-{i}.gguf"
        try:
            rewrite(src, path, kv=kv)
        except Exception as exc:  # the writer itself refuses some values: not a file, skip it
            path.unlink(missing_ok=True)
            continue
        yield Mutant(path, "semantic", f"{tag} {what}")

    names = [t.name for t in reader.tensors]
    first_matrix = next(t.name for t in reader.tensors if len(t.shape) == 2 and t.name.startswith("blk."))

    def edit(fn: Callable[[str, np.ndarray, Any], tuple[np.ndarray, Any] | None]):
        return fn

    tensor_cases: list[tuple[str, Callable, list]] = [
        ("token_embd missing", lambda n, a_, d: None if n == "token_embd.weight" else (a_, d), []),
        ("output_norm missing", lambda n, a_, d: None if n == "output_norm.weight" else (a_, d), []),
        ("last block missing", lambda n, a_, d: None if n.startswith(f"blk.{_int(reader, f'{a}.block_count') - 1}.")
         else (a_, d), []),
        ("attn_q missing", lambda n, a_, d: None if n == "blk.0.attn_q.weight" else (a_, d), []),
        ("token_embd transposed", lambda n, a_, d: (a_.T.copy(), d) if n == "token_embd.weight" else (a_, d), []),
        ("token_embd short", lambda n, a_, d: (a_[: a_.shape[0] // 2].copy(), d) if n == "token_embd.weight"
         else (a_, d), []),
        ("output short", lambda n, a_, d: (a_[: a_.shape[0] // 2].copy(), d) if n == "output.weight" else (a_, d), []),
        ("attn_q wrong shape", lambda n, a_, d: (np.zeros((a_.shape[0], a_.shape[1] + 1), a_.dtype), d)
         if n == first_matrix else (a_, d), []),
        ("norm 2-D", lambda n, a_, d: (np.stack([a_, a_]), d) if n == "output_norm.weight" else (a_, d), []),
        ("NaN weights", lambda n, a_, d: (np.full_like(a_, np.nan), d) if n == first_matrix else (a_, d), []),
        ("Inf embeddings", lambda n, a_, d: (np.full_like(a_, np.inf), d) if n == "token_embd.weight" else (a_, d), []),
        ("huge weights", lambda n, a_, d: (np.full_like(a_, 3e38), d) if a_.dtype == np.float32 else (a_, d), []),
        ("duplicate tensor", lambda n, a_, d: (a_, d), [("output_norm.weight", np.ones(4, np.float32))]),
        ("extra unknown tensor", lambda n, a_, d: (a_, d), [("blk.0.zzz.weight", np.ones(4, np.float32))]),
        ("extra tensor beyond block_count", lambda n, a_, d: (a_, d), [("blk.99.attn_q.weight", np.ones((4, 4),
                                                                                                    np.float32))]),
    ]
    for i, (what, fn, extra) in enumerate(tensor_cases):
        if not pick(1000 + i):
            continue
        path = out / f"{tag}-tensor-{i}.gguf"
        try:
            rewrite(src, path, tensors=fn, extra_tensors=extra)
        except Exception:
            path.unlink(missing_ok=True)
            continue
        yield Mutant(path, "semantic", f"{tag} {what}")
    del names


def _int(reader: gguf.GGUFReader, key: str) -> int:
    field = reader.fields.get(key)
    if field is None:
        return 0
    value = field.contents()
    return int(max(value) if isinstance(value, list) else value)


def all_mutants(sources: list[tuple[str, Path]], out: Path, seed: int = 6, *, n_trunc: int = 24, n_flip: int = 24,
                n_words: int = 40, share: float = 1.0) -> list[Mutant]:
    """Mutants of every source, written under ``out``: ``n_trunc`` truncations, ``n_flip`` bit-flipped
    and ``n_words`` overwritten-integer files each, every header and semantic case for the first
    source and a random ``share`` of them for the others."""
    rng = random.Random(seed)
    found: list[Mutant] = []
    for i, (tag, src) in enumerate(sources):
        def pick(n: int, first: bool = i == 0) -> bool:
            return first or rng.random() < share
        found += header_mutants(src, out, tag, pick)
        found += raw_mutants(src, out, rng, n_trunc, n_flip, n_words, tag)
        found += semantic_mutants(src, out, tag, pick)
    return found
