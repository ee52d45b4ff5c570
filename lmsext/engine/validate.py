"""GGUF hardening: check a file's header, metadata and tensor table before llama.cpp sees it.

llama.cpp trusts much of what a GGUF file says: some malformed files make it abort
(``GGML_ASSERT``), throw C++ exceptions nobody catches, or read out of bounds — which would take the
whole notebook kernel down. :func:`validate_gguf` parses the file itself, with every length, count
and offset checked against the file size, and then checks the metadata llama.cpp is known to
assert on (found by fuzzing, see ``tests/test_gguf_fuzz.py``):

* header: magic, version 2 or 3, little-endian, plausible tensor and metadata counts;
* metadata: every key, string and array inside the file, known value types, no duplicate keys,
  ``general.alignment`` a power of two;
* tensors: unique names shorter than 64 bytes, 1–4 dimensions ≥ 1, a known ggml type whose block
  divides the rows, data aligned, inside the file and not overlapping another tensor;
* architecture hyper-parameters: ``block_count`` 1..512, attention layers with ≥ 1 head and KV
  head, finite floats (non-negative epsilons), consistent expert counts;
* tokenizer: present (``tokenizer.ggml.model`` not ``none``), token texts valid UTF-8 without NUL
  and unique, byte tokens only where the tokenizer type has them and spelled ``<0xXX>``, and
  every byte of UTF-8 text representable (llama.cpp throws on a byte it cannot map).

Every problem raises :class:`~lmsext.errors.ModelLoadError` with one line naming the file and the
problem. Results are cached per (path, size, mtime).
"""

from __future__ import annotations

import math
import mmap
import os
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gguf
import numpy as np

from ..config.error_messages import short_repr
from ..errors import ConfigError, ModelLoadError

GGUF_MAGIC = b"GGUF"
SUPPORTED_VERSIONS = (2, 3)
HEADER_SIZE = 24
DEFAULT_ALIGNMENT = 32
#: llama.cpp's limits (``GGML_MAX_NAME``, ``GGML_MAX_DIMS``, ``LLAMA_MAX_LAYERS``, ``LLAMA_MAX_EXPERTS``).
MAX_NAME = 64
MAX_DIMS = 4
MAX_LAYERS = 512
MAX_EXPERTS = 512
#: Smallest possible encodings, to bound the counts in the header by the file size.
MIN_KV_BYTES = 8 + 4 + 1          # key length, value type, one byte of value
MIN_TENSOR_INFO_BYTES = 8 + 4 + 8 + 4 + 8  # name length, n_dims, one dim, type, offset

# GGUF value types: id → (name, struct format or None)
_SCALARS: dict[int, tuple[str, str]] = {
    0: ("uint8", "<B"), 1: ("int8", "<b"), 2: ("uint16", "<H"), 3: ("int16", "<h"), 4: ("uint32", "<I"),
    5: ("int32", "<i"), 6: ("float32", "<f"), 7: ("bool", "<?"), 10: ("uint64", "<Q"), 11: ("int64", "<q"),
    12: ("float64", "<d"),
}
_STRING, _ARRAY = 8, 9
_U64 = struct.Struct("<Q")
_NUMPY = {0: "<u1", 1: "<i1", 2: "<u2", 3: "<i2", 4: "<u4", 5: "<i4", 6: "<f4", 7: "<u1", 10: "<u8", 11: "<i8",
          12: "<f8"}

#: Token types (llama.cpp's ``llama_token_type``).
TOKEN_TYPE_BYTE = 6
#: Tokenizers whose byte tokens are spelled ``<0xXX>`` (SentencePiece / Unigram).
SPM_LIKE = ("llama", "t5")
NO_TOKENIZER = ("none", "no_vocab")
_BYTE_TOKEN = re.compile(r"<0x[0-9A-Fa-f]{2}>")
#: Bytes that occur in UTF-8 text (C0, C1 and F5..FF never do).
UTF8_BYTES = tuple(b for b in range(256) if not (b in (0xC0, 0xC1) or b >= 0xF5))
#: Metadata that is big and not needed by the checks: kept out of memory.
_SKIP_VALUES = ("tokenizer.ggml.merges", "tokenizer.ggml.precompiled_charsmap", "tokenizer.ggml.scores")


@dataclass(frozen=True)
class TensorInfo:
    """One entry of the tensor table."""

    name: str
    shape: tuple[int, ...]
    type_id: int
    offset: int  # from the start of the data section
    nbytes: int

    @property
    def type_name(self) -> str:
        try:
            return gguf.GGMLQuantizationType(self.type_id).name
        except ValueError:
            return str(self.type_id)


@dataclass
class GGUFSummary:
    """What :func:`validate_gguf` read: header, metadata (big arrays summarised) and tensor table."""

    path: str
    file_size: int
    version: int
    alignment: int
    data_offset: int
    metadata: dict[str, Any] = field(default_factory=dict)
    metadata_types: dict[str, tuple[int, int | None]] = field(default_factory=dict)
    array_lengths: dict[str, int] = field(default_factory=dict)
    tensors: list[TensorInfo] = field(default_factory=list)

    @property
    def tensor_bytes(self) -> int:
        """Bytes of tensor data (what the weights take in memory)."""
        return sum(t.nbytes for t in self.tensors)

    @property
    def architecture(self) -> str:
        return self.metadata.get("general.architecture", "")


class _Bad(Exception):
    """A problem found while parsing (turned into ModelLoadError with the file name)."""


class _Cursor:
    """Bounds-checked little-endian reads over the file's bytes."""

    def __init__(self, buf: Any, size: int) -> None:
        self.buf = buf
        self.size = size
        self.pos = 0

    def need(self, n: int, what: str) -> None:
        if n < 0 or self.pos + n > self.size:
            raise _Bad(f"{what} at byte {self.pos:,} needs {n:,} bytes but the file ends at {self.size:,} "
                       "(truncated or corrupt)")

    def unpack(self, fmt: str, what: str) -> Any:
        n = struct.calcsize(fmt)
        self.need(n, what)
        value = struct.unpack_from(fmt, self.buf, self.pos)[0]
        self.pos += n
        return value

    def u32(self, what: str) -> int:
        return self.unpack("<I", what)

    def u64(self, what: str) -> int:
        return self.unpack("<Q", what)

    def raw_string(self, what: str, max_len: int | None = None) -> bytes:
        n = self.u64(f"the length of {what}")
        if max_len is not None and n > max_len:
            raise _Bad(f"{what} is {n:,} bytes long (at most {max_len} allowed)")
        self.need(n, what)
        data = bytes(self.buf[self.pos:self.pos + n])
        self.pos += n
        return data

    def string(self, what: str, max_len: int | None = None) -> str:
        data = self.raw_string(what, max_len)
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise _Bad(f"{what} is not valid UTF-8: {data[:40]!r}") from None


def _value_type_name(t: int) -> str:
    return _SCALARS[t][0] if t in _SCALARS else {8: "string", 9: "array"}.get(t, f"unknown type {t}")


def _read_value(cur: _Cursor, vtype: int, key: str, keep: bool) -> tuple[Any, int | None, int | None]:
    """Read one metadata value; returns (value or None when not kept, item type, array length)."""
    if vtype in _SCALARS:
        value = cur.unpack(_SCALARS[vtype][1], f"the value of {key!r}")
        return value, None, None
    if vtype == _STRING:
        raw = cur.raw_string(f"the string value of {key!r}")
        return raw.decode("utf-8", errors="replace"), None, None
    if vtype != _ARRAY:
        raise _Bad(f"metadata {key!r} has an unknown value type {vtype}")
    itype = cur.u32(f"the item type of array {key!r}")
    count = cur.u64(f"the length of array {key!r}")
    if itype in _SCALARS:
        width = struct.calcsize(_SCALARS[itype][1])
        if count > (cur.size - cur.pos) // width:
            raise _Bad(f"array {key!r} claims {count:,} {_value_type_name(itype)} items, more than the "
                       f"{cur.size - cur.pos:,} bytes left in the file")
        value = None
        if keep:
            value = np.frombuffer(cur.buf, dtype=_NUMPY[itype], count=count, offset=cur.pos).tolist()
        cur.pos += count * width
        return value, itype, count
    if itype == _STRING:
        if count > (cur.size - cur.pos) // 8:
            raise _Bad(f"array {key!r} claims {count:,} strings, more than fit in the rest of the file")
        items: list[bytes] = []
        buf, pos, size = cur.buf, cur.pos, cur.size
        length = _U64.unpack_from
        for i in range(count):  # the hot loop of big vocabularies: inlined bounds checks
            if pos + 8 > size:
                cur.pos = pos
                cur.need(8, f"the length of item {i} of array {key!r}")
            n = length(buf, pos)[0]
            pos += 8
            if n > size - pos:
                cur.pos = pos
                cur.need(n, f"item {i} of array {key!r}")
            if keep:
                items.append(buf[pos:pos + n])
            pos += n
        cur.pos = pos
        return (items if keep else None), itype, count
    if itype == _ARRAY:
        raise _Bad(f"array {key!r} holds arrays (nested arrays are not supported by llama.cpp)")
    raise _Bad(f"array {key!r} has an unknown item type {itype}")


def _parse(path: Path, buf: Any, size: int) -> GGUFSummary:
    cur = _Cursor(buf, size)
    version, n_tensors, n_kv = _read_header(cur, buf, size)
    summary = GGUFSummary(path=str(path), file_size=size, version=version, alignment=DEFAULT_ALIGNMENT,
                          data_offset=0)
    _read_metadata(cur, summary, n_kv)
    summary.alignment = _alignment(summary)
    infos = _read_tensor_infos(cur, n_tensors)
    data_offset = -(-cur.pos // summary.alignment) * summary.alignment
    if data_offset > size:
        raise _Bad(f"the tensor data should start at byte {data_offset:,} but the file ends at {size:,} (truncated)")
    summary.data_offset = data_offset
    _check_tensors(summary, infos)
    return summary


def _read_header(cur: _Cursor, buf: Any, size: int) -> tuple[int, int, int]:
    """The version, tensor count and metadata count, each checked against what the file can hold."""
    if size < HEADER_SIZE:
        raise _Bad(f"is only {size} bytes: a GGUF header alone takes {HEADER_SIZE}")
    magic = bytes(buf[0:4])
    if magic != GGUF_MAGIC:
        raise _Bad("is not a GGUF file (it does not start with b'GGUF')")  # no bytes of it: it may be a secret
    cur.pos = 4
    version = cur.u32("the version")
    if version not in SUPPORTED_VERSIONS:
        swapped = struct.unpack("<I", struct.pack(">I", version))[0]
        if swapped in SUPPORTED_VERSIONS:
            raise _Bad(f"is a big-endian GGUF (version {swapped}); llama.cpp here reads little-endian files only")
        raise _Bad(f"has GGUF version {version}; llama.cpp reads versions {SUPPORTED_VERSIONS[0]} and "
                   f"{SUPPORTED_VERSIONS[1]}")
    n_tensors = cur.u64("the tensor count")
    n_kv = cur.u64("the metadata count")
    room = size - HEADER_SIZE
    if n_kv > room // MIN_KV_BYTES:
        raise _Bad(f"header claims {n_kv:,} metadata entries; a file of {size:,} bytes has room for at most "
                   f"{room // MIN_KV_BYTES:,}")
    if n_tensors > room // MIN_TENSOR_INFO_BYTES:
        raise _Bad(f"header claims {n_tensors:,} tensors; a file of {size:,} bytes has room for at most "
                   f"{room // MIN_TENSOR_INFO_BYTES:,}")
    return version, n_tensors, n_kv


def _read_metadata(cur: _Cursor, summary: GGUFSummary, n_kv: int) -> None:
    """The ``n_kv`` metadata entries into ``summary`` (values of huge arrays skipped, their lengths kept)."""
    meta = summary.metadata
    for i in range(n_kv):
        key = cur.string(f"the name of metadata entry {i}")
        if not key:
            raise _Bad(f"metadata entry {i} has an empty name")
        if key in meta or key in summary.array_lengths:
            raise _Bad(f"metadata key {key!r} appears twice")
        vtype = cur.u32(f"the value type of {key!r}")
        keep = key not in _SKIP_VALUES
        value, itype, count = _read_value(cur, vtype, key, keep)
        summary.metadata_types[key] = (vtype, itype)
        if count is not None:
            summary.array_lengths[key] = count
        meta[key] = value


def _alignment(summary: GGUFSummary) -> int:
    """general.alignment, checked (a uint32 power of two, not implausibly large), or the default."""
    meta = summary.metadata
    alignment = meta.get("general.alignment", DEFAULT_ALIGNMENT)
    if "general.alignment" in meta:
        if summary.metadata_types["general.alignment"][0] != 4:
            raise _Bad("general.alignment must be a uint32")
        if alignment <= 0 or alignment & (alignment - 1):
            raise _Bad(f"general.alignment is {alignment}: must be a power of two")
        if alignment > 1 << 20:
            raise _Bad(f"general.alignment is {alignment:,}: implausibly large")
    return alignment


def _read_tensor_infos(cur: _Cursor, n_tensors: int) -> list[tuple[str, tuple[int, ...], int, int]]:
    """Name, shape, ggml type id and data offset of each tensor, in file order."""
    names: set[str] = set()
    infos: list[tuple[str, tuple[int, ...], int, int]] = []
    for i in range(n_tensors):
        name = cur.string(f"the name of tensor {i}", max_len=MAX_NAME - 1)
        if name in names:
            raise _Bad(f"tensor {name!r} appears twice")
        names.add(name)
        n_dims = cur.u32(f"the dimension count of tensor {name!r}")
        if not 1 <= n_dims <= MAX_DIMS:
            raise _Bad(f"tensor {name!r} has {n_dims} dimensions (1 to {MAX_DIMS} allowed)")
        shape = tuple(cur.u64(f"dimension {d} of tensor {name!r}") for d in range(n_dims))
        type_id = cur.u32(f"the type of tensor {name!r}")
        offset = cur.u64(f"the data offset of tensor {name!r}")
        infos.append((name, shape, type_id, offset))
    return infos


def _check_tensors(summary: GGUFSummary, infos: list[tuple[str, tuple[int, ...], int, int]]) -> None:
    """Each tensor's shape, type, alignment and extent inside the file; no two overlap. Fills summary.tensors."""
    size, alignment, data_offset = summary.file_size, summary.alignment, summary.data_offset
    spans = []
    for name, shape, type_id, offset in infos:
        if any(d < 1 for d in shape):
            raise _Bad(f"tensor {name!r} has a zero dimension: {list(shape)}")
        if any(d >= 1 << 62 for d in shape):
            raise _Bad(f"tensor {name!r} has an impossible dimension: {list(shape)}")
        try:
            qtype = gguf.GGMLQuantizationType(type_id)
            block, type_size = gguf.GGML_QUANT_SIZES[qtype]
        except (ValueError, KeyError):
            raise _Bad(f"tensor {name!r} has an unknown ggml type id {type_id}") from None
        if shape[0] % block:
            raise _Bad(f"tensor {name!r} ({qtype.name}) has rows of {shape[0]} elements, not a multiple of the "
                       f"type's {block}-element block")
        n_elements = math.prod(shape)
        nbytes = n_elements // block * type_size
        if offset % alignment:
            raise _Bad(f"tensor {name!r} starts at offset {offset:,}, not a multiple of the alignment {alignment}")
        end = data_offset + offset + nbytes
        if end > size:
            raise _Bad(f"tensor {name!r} ({qtype.name} {'×'.join(map(str, shape))}) ends at byte {end:,} but the "
                       f"file ends at {size:,} (truncated or corrupt)")
        summary.tensors.append(TensorInfo(name, shape, type_id, offset, nbytes))
        spans.append((offset, offset + nbytes, name))
    spans.sort()
    for (s0, e0, n0), (s1, e1, n1) in zip(spans, spans[1:]):
        if s1 < e0:
            raise _Bad(f"tensors {n0!r} and {n1!r} overlap in the file")


# ------------------------------------------------------------------------------ semantic checks


def _as_list(value: Any, n: int) -> list[Any] | None:
    if isinstance(value, list):
        return value
    if value is None:
        return None
    return [value] * max(n, 1)


def _check_architecture(s: GGUFSummary) -> None:
    meta = s.metadata
    arch = meta.get("general.architecture")
    if "general.architecture" not in meta:
        raise _Bad("has no general.architecture in its metadata")
    if not isinstance(arch, str) or s.metadata_types["general.architecture"][0] != _STRING:
        raise _Bad("general.architecture must be a string")
    if not re.fullmatch(r"[A-Za-z0-9_.\-]{1,64}", arch):
        raise _Bad(f"general.architecture {arch[:40]!r} is not an architecture name")
    prefix = arch + "."
    for key, value in meta.items():
        if not key.startswith(prefix):
            continue
        values = value if isinstance(value, list) else [value]
        vtype, itype = s.metadata_types[key]
        if (itype if vtype == _ARRAY else vtype) in (6, 12):
            for v in values:
                if not math.isfinite(v):
                    raise _Bad(f"metadata {key} is {v}: must be a finite number")
                if "epsilon" in key and v < 0:
                    raise _Bad(f"metadata {key} is {v}: an epsilon must be >= 0")

    def integer(key: str) -> Any:
        vtype, itype = s.metadata_types.get(key, (None, None))
        t = itype if vtype == _ARRAY else vtype
        if t is None or t not in (0, 1, 2, 3, 4, 5, 10, 11):
            return None  # absent or not an integer: llama.cpp reports that itself
        return meta.get(key)

    n_layer = integer(f"{arch}.block_count")
    if isinstance(n_layer, list):
        raise _Bad(f"{arch}.block_count must be one number, not an array")
    if n_layer is not None and not 1 <= n_layer <= MAX_LAYERS:
        raise _Bad(f"{arch}.block_count is {n_layer}: llama.cpp supports 1 to {MAX_LAYERS} layers")
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
                raise _Bad(f"{key} is {v} for layer {layer}, which has attention weights: must be >= 1")
    n_expert = integer(f"{arch}.expert_count")
    n_used = integer(f"{arch}.expert_used_count")
    used_max = max(n_used) if isinstance(n_used, list) and n_used else n_used
    if isinstance(n_expert, list):
        raise _Bad(f"{arch}.expert_count must be one number, not an array")
    if n_expert is not None and n_expert > MAX_EXPERTS:
        raise _Bad(f"{arch}.expert_count is {n_expert}: llama.cpp supports at most {MAX_EXPERTS} experts")
    if n_expert:
        if used_max is None or used_max < 1:
            raise _Bad(f"{arch}.expert_used_count is {used_max}: a model with {n_expert} experts must use 1 to "
                       f"{n_expert} per token")
        if used_max > n_expert:
            raise _Bad(f"{arch}.expert_used_count is {used_max} but the model has only {n_expert} experts")
    elif used_max:
        raise _Bad(f"{arch}.expert_used_count is {used_max} but the model has no experts (expert_count 0)")


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


def _check_tokenizer(s: GGUFSummary) -> None:
    meta = s.metadata
    model = meta.get("tokenizer.ggml.model")
    if model is None:
        return  # llama.cpp refuses it with a clear message
    if s.metadata_types["tokenizer.ggml.model"][0] != _STRING:
        raise _Bad("tokenizer.ggml.model must be a string")
    if model in NO_TOKENIZER:
        raise _Bad(f"has no tokenizer (tokenizer.ggml.model = {model!r}): lmsext runs models that read and "
                   "write text")
    if "tokenizer.ggml.tokens" not in meta:
        return  # llama.cpp: "cannot find tokenizer vocab"
    vtype, itype = s.metadata_types["tokenizer.ggml.tokens"]
    if vtype != _ARRAY or itype != _STRING:
        raise _Bad("tokenizer.ggml.tokens must be an array of strings")
    raw: list[bytes] = meta["tokenizer.ggml.tokens"]
    if not raw:
        raise _Bad("tokenizer.ggml.tokens is empty")
    texts: list[str] = []
    seen: dict[str, int] = {}
    for i, data in enumerate(raw):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise _Bad(f"token {i} {data[:20]!r} is not valid UTF-8") from None
        if "\0" in text:
            raise _Bad(f"token {i} {text[:20]!r} contains a NUL character")
        if text in seen:
            raise _Bad(f"token {i} {text[:20]!r} is the same text as token {seen[text]} (tokens must be unique)")
        seen[text] = i
        texts.append(text)
    types = meta.get("tokenizer.ggml.token_type")
    if isinstance(types, list):
        for i, t in enumerate(types[:len(texts)]):
            if t == TOKEN_TYPE_BYTE:
                if model not in SPM_LIKE:
                    raise _Bad(f"token {i} {texts[i][:20]!r} is marked as a byte token, which a {model!r} "
                               "tokenizer cannot have")
                if not _BYTE_TOKEN.fullmatch(texts[i]):
                    raise _Bad(f"token {i} {texts[i][:20]!r} is marked as a byte token but is not spelled <0xXX>")
    if model == "llama":
        missing = [b for b in UTF8_BYTES if f"<0x{b:02X}>" not in seen and not (b < 0x80 and chr(b) in seen)]
    elif model == "gpt2":
        table = _bytes_to_unicode()
        missing = [b for b in UTF8_BYTES if table[b] not in seen]
    else:
        missing = []
    if missing:
        shown = ", ".join(f"0x{b:02X}" for b in missing[:4]) + (" …" if len(missing) > 4 else "")
        raise _Bad(f"the {model!r} vocabulary cannot spell {len(missing)} byte value(s) of UTF-8 text ({shown}); "
                   "llama.cpp would crash on text containing them")


# ------------------------------------------------------------------------------ setting limits

#: Integer settings end up in C ``int32``/``uint32`` parameters: larger values would wrap around.
MAX_INT32 = 2**31 - 1
#: More threads than this is never useful, and far more (100,000) crashes ggml's thread pool.
MAX_THREADS = 512
_PREDICTION_LIMITS = (("max_tokens", "maxTokens", MAX_INT32), ("top_k_sampling", "topKSampling", MAX_INT32),
                      ("cpu_threads", "cpuThreads", MAX_THREADS))
_LOAD_LIMITS = (("context_length", "contextLength", MAX_INT32), ("eval_batch_size", "evalBatchSize", MAX_INT32),
                ("num_experts", "numExperts", MAX_EXPERTS), ("cpu_thread_pool_size", "cpuThreadPoolSize", MAX_THREADS))


def _check_limits(config: Any, limits: tuple[tuple[str, str, int], ...]) -> None:
    for name, label, limit in limits:
        value = getattr(config, name, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > limit:
            raise ConfigError(f"{label}={value}: must be at most {limit:,}", key=name, value=value,
                              allowed=f"at most {limit:,}")


#: Stop strings: matching costs O(1) per character whatever their number (textstream.StopStringMatcher),
#: but its automaton holds one node per character of them: these bound its memory (~100 MB).
MAX_STOP_STRINGS = 100_000
MAX_STOP_STRING_CHARS = 1_000_000


def check_prediction_limits(config: Any) -> None:
    """Refuse prediction settings beyond what llama.cpp can take (the config checks the lower bounds)."""
    _check_limits(config, _PREDICTION_LIMITS)
    for name, label in (("stop_strings", "stopStrings"), ("tool_call_stop_strings", "toolCallStopStrings")):
        stops = getattr(config, name, None) or []
        if len(stops) > MAX_STOP_STRINGS:
            raise ConfigError(f"{label}: {len(stops):,} stop strings; at most {MAX_STOP_STRINGS:,}", key=name,
                              allowed=f"at most {MAX_STOP_STRINGS:,} stop strings")
        chars = sum(map(len, stops))
        if chars > MAX_STOP_STRING_CHARS:
            raise ConfigError(f"{label}: {chars:,} characters in all; at most {MAX_STOP_STRING_CHARS:,}", key=name,
                              allowed=f"at most {MAX_STOP_STRING_CHARS:,} characters")


def check_load_limits(config: Any) -> None:
    """Refuse load settings beyond what llama.cpp can take (the config checks the lower bounds)."""
    _check_limits(config, _LOAD_LIMITS)
    _check_gpu_indexes(getattr(config, "gpu", None))


def _check_gpu_indexes(gpu: Any) -> None:
    """``gpu.mainGpu`` and ``gpu.disabledGpus`` are device indexes: below llama.cpp's device limit (its C
    arrays hold ``llama_max_devices()``; 2**31 wrapped negative in the C int, 2**70 became 0) and, when
    the build has GPUs, below the number present. A CPU-only build ignores them (with a load note)."""
    if gpu is None:
        return
    import llama_cpp

    from . import _lib
    limit = max(int(llama_cpp.llama_max_devices()), 1)
    present = _lib.gpu_count()
    main = getattr(gpu, "main_gpu", None)
    indexes = ([("gpu.mainGpu", main)] if main is not None else []) + [
        (f"gpu.disabledGpus[{i}]", d) for i, d in enumerate(getattr(gpu, "disabled_gpus", None) or [])]
    for label, value in indexes:
        if value >= limit:
            raise ConfigError(f"{label}={short_repr(value)}: must be a GPU index from 0 to {limit - 1} "
                              f"(llama.cpp addresses at most {limit} devices)", key=label, value=value)
        if present and value >= present:
            raise ConfigError(f"{label}={value}: this machine has {present} GPU(s): 0 to {present - 1}",
                              key=label, value=value)


# ------------------------------------------------------------------------------ entry point

_cache: dict[tuple[str, int, int], GGUFSummary] = {}


def validate_gguf(path: str | os.PathLike[str]) -> GGUFSummary:
    """Check ``path`` as described in the module docstring; raise :class:`ModelLoadError` on any problem."""
    path = Path(path)
    try:
        st = path.stat()
    except OSError as exc:
        raise ModelLoadError(f"cannot read {path}: {exc.strerror or exc}") from None
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key in _cache:
        return _cache[key]
    try:
        with open(path, "rb") as fh:
            if st.st_size == 0:
                raise _Bad("is empty (0 bytes): not a GGUF file")
            with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
                summary = _parse(path, buf, len(buf))
    except _Bad as exc:
        raise ModelLoadError(f"{path.name} {exc}" if str(exc).startswith(("is ", "has ")) else
                             f"{path.name} is not a valid GGUF file: {exc}") from None
    except OSError as exc:
        raise ModelLoadError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        _check_architecture(summary)
        _check_tokenizer(summary)
    except _Bad as exc:
        raise ModelLoadError(f"{path.name} {exc}" if str(exc).startswith(("is ", "has ")) else
                             f"{path.name} is not a valid GGUF file: {exc}") from None
    # big token lists are not needed after the checks
    summary.metadata.pop("tokenizer.ggml.tokens", None)
    summary.metadata.pop("tokenizer.ggml.token_type", None)
    if len(_cache) > 64:
        _cache.clear()
    _cache[key] = summary
    return summary


__all__ = ["GGUFSummary", "TensorInfo", "check_load_limits", "check_prediction_limits", "validate_gguf"]
