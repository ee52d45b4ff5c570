"""GGUF's binary layout for the validator (:mod:`.validate`): the format's constants and llama.cpp's limits,
the summary a parse produces, a bounds-checked cursor over the file and the metadata value reader.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

import gguf
import numpy as np

from ..config.limits import MAX_EXPERTS as LLAMA_MAX_EXPERTS

GGUF_MAGIC = b"GGUF"
SUPPORTED_VERSIONS = (2, 3)
HEADER_SIZE = 24
DEFAULT_ALIGNMENT = 32
#: llama.cpp's limits (``GGML_MAX_NAME``, ``GGML_MAX_DIMS``, ``LLAMA_MAX_LAYERS``, ``LLAMA_MAX_EXPERTS``).
MAX_NAME = 64
MAX_DIMS = 4
MAX_LAYERS = 512
MAX_EXPERTS = LLAMA_MAX_EXPERTS
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


class BadGGUF(Exception):
    """A problem found while parsing (turned into ModelLoadError with the file name)."""


class _Cursor:
    """Bounds-checked little-endian reads over the file's bytes."""

    def __init__(self, buf: Any, size: int) -> None:
        self.buf = buf
        self.size = size
        self.pos = 0

    def need(self, n: int, what: str) -> None:
        if n < 0 or self.pos + n > self.size:
            raise BadGGUF(f"{what} at byte {self.pos:,} needs {n:,} bytes but the file ends at {self.size:,} "
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
            raise BadGGUF(f"{what} is {n:,} bytes long (at most {max_len} allowed)")
        self.need(n, what)
        data = bytes(self.buf[self.pos:self.pos + n])
        self.pos += n
        return data

    def string(self, what: str, max_len: int | None = None) -> str:
        data = self.raw_string(what, max_len)
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise BadGGUF(f"{what} is not valid UTF-8: {data[:40]!r}") from None


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
        raise BadGGUF(f"metadata {key!r} has an unknown value type {vtype}")
    itype = cur.u32(f"the item type of array {key!r}")
    count = cur.u64(f"the length of array {key!r}")
    if itype in _SCALARS:
        width = struct.calcsize(_SCALARS[itype][1])
        if count > (cur.size - cur.pos) // width:
            raise BadGGUF(f"array {key!r} claims {count:,} {_value_type_name(itype)} items, more than the "
                       f"{cur.size - cur.pos:,} bytes left in the file")
        value = None
        if keep:
            value = np.frombuffer(cur.buf, dtype=_NUMPY[itype], count=count, offset=cur.pos).tolist()
        cur.pos += count * width
        return value, itype, count
    if itype == _STRING:
        if count > (cur.size - cur.pos) // 8:
            raise BadGGUF(f"array {key!r} claims {count:,} strings, more than fit in the rest of the file")
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
        raise BadGGUF(f"array {key!r} holds arrays (nested arrays are not supported by llama.cpp)")
    raise BadGGUF(f"array {key!r} has an unknown item type {itype}")
