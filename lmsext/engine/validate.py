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

import functools
import math
import mmap
import os
import struct
from pathlib import Path
from typing import Any

import gguf

from ..config.error_messages import short_repr
from ..errors import ConfigError, ModelLoadError
from .gguf_checks import check_architecture, check_tokenizer
from .gguf_format import (DEFAULT_ALIGNMENT, GGUF_MAGIC, HEADER_SIZE, MAX_DIMS, MAX_NAME, MIN_KV_BYTES,
                          MIN_TENSOR_INFO_BYTES, SUPPORTED_VERSIONS, _SKIP_VALUES, BadGGUF, GGUFSummary, TensorInfo,
                          _Cursor, _read_value)


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
        raise BadGGUF(f"the tensor data should start at byte {data_offset:,} but the file ends at {size:,} (truncated)")
    summary.data_offset = data_offset
    _check_tensors(summary, infos)
    return summary


def _read_header(cur: _Cursor, buf: Any, size: int) -> tuple[int, int, int]:
    """The version, tensor count and metadata count, each checked against what the file can hold."""
    if size < HEADER_SIZE:
        raise BadGGUF(f"is only {size} bytes: a GGUF header alone takes {HEADER_SIZE}")
    magic = bytes(buf[0:4])
    if magic != GGUF_MAGIC:
        raise BadGGUF("is not a GGUF file (it does not start with b'GGUF')")  # no bytes of it: it may be a secret
    cur.pos = 4
    version = cur.u32("the version")
    if version not in SUPPORTED_VERSIONS:
        swapped = struct.unpack("<I", struct.pack(">I", version))[0]
        if swapped in SUPPORTED_VERSIONS:
            raise BadGGUF(f"is a big-endian GGUF (version {swapped}); llama.cpp here reads little-endian files only")
        raise BadGGUF(f"has GGUF version {version}; llama.cpp reads versions {SUPPORTED_VERSIONS[0]} and "
                   f"{SUPPORTED_VERSIONS[1]}")
    n_tensors = cur.u64("the tensor count")
    n_kv = cur.u64("the metadata count")
    room = size - HEADER_SIZE
    if n_kv > room // MIN_KV_BYTES:
        raise BadGGUF(f"header claims {n_kv:,} metadata entries; a file of {size:,} bytes has room for at most "
                   f"{room // MIN_KV_BYTES:,}")
    if n_tensors > room // MIN_TENSOR_INFO_BYTES:
        raise BadGGUF(f"header claims {n_tensors:,} tensors; a file of {size:,} bytes has room for at most "
                   f"{room // MIN_TENSOR_INFO_BYTES:,}")
    return version, n_tensors, n_kv


def _read_metadata(cur: _Cursor, summary: GGUFSummary, n_kv: int) -> None:
    """The ``n_kv`` metadata entries into ``summary`` (values of huge arrays skipped, their lengths kept)."""
    meta = summary.metadata
    for i in range(n_kv):
        key = cur.string(f"the name of metadata entry {i}")
        if not key:
            raise BadGGUF(f"metadata entry {i} has an empty name")
        if key in meta or key in summary.array_lengths:
            raise BadGGUF(f"metadata key {key!r} appears twice")
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
            raise BadGGUF("general.alignment must be a uint32")
        if alignment <= 0 or alignment & (alignment - 1):
            raise BadGGUF(f"general.alignment is {alignment}: must be a power of two")
        if alignment > 1 << 20:
            raise BadGGUF(f"general.alignment is {alignment:,}: implausibly large")
    return alignment


def _read_tensor_infos(cur: _Cursor, n_tensors: int) -> list[tuple[str, tuple[int, ...], int, int]]:
    """Name, shape, ggml type id and data offset of each tensor, in file order."""
    names: set[str] = set()
    infos: list[tuple[str, tuple[int, ...], int, int]] = []
    for i in range(n_tensors):
        name = cur.string(f"the name of tensor {i}", max_len=MAX_NAME - 1)
        if name in names:
            raise BadGGUF(f"tensor {name!r} appears twice")
        names.add(name)
        n_dims = cur.u32(f"the dimension count of tensor {name!r}")
        if not 1 <= n_dims <= MAX_DIMS:
            raise BadGGUF(f"tensor {name!r} has {n_dims} dimensions (1 to {MAX_DIMS} allowed)")
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
            raise BadGGUF(f"tensor {name!r} has a zero dimension: {list(shape)}")
        if any(d >= 1 << 62 for d in shape):
            raise BadGGUF(f"tensor {name!r} has an impossible dimension: {list(shape)}")
        try:
            qtype = gguf.GGMLQuantizationType(type_id)
            block, type_size = gguf.GGML_QUANT_SIZES[qtype]
        except (ValueError, KeyError):
            raise BadGGUF(f"tensor {name!r} has an unknown ggml type id {type_id}") from None
        if shape[0] % block:
            raise BadGGUF(f"tensor {name!r} ({qtype.name}) has rows of {shape[0]} elements, not a multiple of the "
                       f"type's {block}-element block")
        n_elements = math.prod(shape)
        nbytes = n_elements // block * type_size
        if offset % alignment:
            raise BadGGUF(f"tensor {name!r} starts at offset {offset:,}, not a multiple of the alignment {alignment}")
        end = data_offset + offset + nbytes
        if end > size:
            raise BadGGUF(f"tensor {name!r} ({qtype.name} {'×'.join(map(str, shape))}) ends at byte {end:,} but the "
                       f"file ends at {size:,} (truncated or corrupt)")
        summary.tensors.append(TensorInfo(name, shape, type_id, offset, nbytes))
        spans.append((offset, offset + nbytes, name))
    spans.sort()
    for (s0, e0, n0), (s1, e1, n1) in zip(spans, spans[1:]):
        if s1 < e0:
            raise BadGGUF(f"tensors {n0!r} and {n1!r} overlap in the file")


# ------------------------------------------------------------------------------ GPU indexes

def check_gpu_indexes(gpu: Any) -> None:
    """``gpu.mainGpu`` and ``gpu.disabledGpus`` are device indexes: below llama.cpp's device limit (its C
    arrays hold ``llama_max_devices()``; 2**31 wrapped negative in the C int, 2**70 became 0) and, when
    the build has GPUs, below the number present. A CPU-only build ignores them (with a load note)."""
    if gpu is None:
        return
    import llama_cpp

    from .devices import gpu_devices
    limit = max(int(llama_cpp.llama_max_devices()), 1)
    present = len(gpu_devices())  # the GPUs llama.cpp offloads to (the indexes mainGpu/disabledGpus count)
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

def validate_gguf(path: str | os.PathLike[str]) -> GGUFSummary:
    """Check ``path`` as described in the module docstring; raise :class:`ModelLoadError` on any problem.
    A file seen before (same path, size and modification time) is not parsed again."""
    path = Path(path)
    try:
        st = path.stat()
    except OSError as exc:
        raise ModelLoadError(f"cannot read {path}: {exc.strerror or exc}") from None
    return _validated(str(path), str(path.resolve()), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _validated(given: str, resolved: str, size: int, mtime_ns: int) -> GGUFSummary:
    """:func:`validate_gguf` for one state of one file (errors are raised, so never cached)."""
    path = Path(given)
    try:
        with open(path, "rb") as fh:
            if size == 0:
                raise BadGGUF("is empty (0 bytes): not a GGUF file")
            with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
                summary = _parse(path, buf, len(buf))
        check_architecture(summary)
        check_tokenizer(summary)
    except BadGGUF as exc:
        raise ModelLoadError(f"{path.name} {exc}" if str(exc).startswith(("is ", "has ")) else
                             f"{path.name} is not a valid GGUF file: {exc}") from None
    except OSError as exc:
        raise ModelLoadError(f"cannot read {path}: {exc.strerror or exc}") from None
    # big token lists are not needed after the checks
    summary.metadata.pop("tokenizer.ggml.tokens", None)
    summary.metadata.pop("tokenizer.ggml.token_type", None)
    return summary


__all__ = ["GGUFSummary", "TensorInfo", "check_gpu_indexes", "validate_gguf"]
