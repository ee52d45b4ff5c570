"""Read a GGUF file's metadata (through the bounds-checked validator) before llama.cpp ever sees the file.

The result, :class:`ModelInfo`, feeds the load guards (expert counts, trained context), the
load-config summary and the widgets' slider ranges.
"""

from __future__ import annotations

import collections
import functools
import hashlib
import math
import os
from pathlib import Path

import gguf

from ..backend import ModelInfo  # noqa: F401  (defined with the engine interface; kept importable here)
from ..errors import ModelLoadError
from ..units import format_bytes, format_params  # noqa: F401  (moved to lmsext.units; kept importable here)
from .validate import GGUFSummary, validate_gguf

GGUF_MAGIC = b"GGUF"


def _quantization(summary: GGUFSummary) -> str:
    file_type = summary.metadata.get("general.file_type")
    if isinstance(file_type, int):
        try:
            name = gguf.LlamaFileType(file_type).name
            return name.removeprefix("MOSTLY_").removeprefix("ALL_")
        except ValueError:
            pass
    # No (or unknown) file type: the type holding most weight bytes among 2-D tensors.
    weight_bytes: collections.Counter[str] = collections.Counter()
    for tensor in summary.tensors:
        if len(tensor.shape) >= 2:
            weight_bytes[tensor.type_name] += tensor.nbytes
    return weight_bytes.most_common(1)[0][0] if weight_bytes else "unknown"


def check_magic(path: Path) -> None:
    """Raise :class:`ModelLoadError` unless ``path`` is a readable file starting with ``GGUF``."""
    if path.is_dir():
        raise ModelLoadError(f"{path} is a directory, not a GGUF model file")
    if path.exists() and not path.is_file():  # a FIFO would block open() forever, a device never ends
        raise ModelLoadError(f"{path} is not a regular file (a pipe, socket or device), not a GGUF model file")
    try:
        with open(path, "rb") as fh:
            magic = fh.read(4)
    except OSError as exc:
        raise ModelLoadError(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(magic) < 4:
        raise ModelLoadError(f"{path} is empty or truncated ({os.path.getsize(path)} bytes): not a GGUF file")
    if magic != GGUF_MAGIC:
        # the message quotes none of its bytes: the file may be a secret (a symlink to /etc/passwd)
        raise ModelLoadError(f"{path} is not a GGUF file (it does not start with b'GGUF')")


def _header_digest(path: Path, n: int) -> bytes | None:
    try:
        with open(path, "rb") as fh:
            return hashlib.blake2b(fh.read(n), digest_size=16).digest()
    except OSError:
        return None


def read_model_info(path: str | os.PathLike[str]) -> ModelInfo:
    """Parse ``path``'s GGUF header and metadata; raise :class:`ModelLoadError` on a bad file.

    Cached: the ``gguf`` package takes ~20 ms on stories260K (its vocabulary is parsed entry by entry;
    far longer on real vocabularies), so a file seen before — same path, size, mtime and inode, and
    the same bytes up to its tensor data (everything :class:`ModelInfo` is made of) — is not parsed
    again. A rewritten file is parsed anew, even one rewritten within the file system's clock tick.
    """
    path = Path(path)
    try:
        st = path.stat()
    except OSError:
        return _parse_model_info(path)[0]  # _parse_model_info names the problem
    key = (str(path), st.st_size, st.st_mtime_ns, st.st_ino)
    digest, header_bytes, info = _parsed(key)
    if digest is None or _header_digest(path, header_bytes) != digest:  # rewritten within the clock tick
        _parsed.cache_clear()
        digest, header_bytes, info = _parsed(key)
    return info


@functools.lru_cache(maxsize=32)
def _parsed(key: tuple) -> tuple[bytes | None, int, ModelInfo]:
    """(header digest, header bytes, info) of the file ``key`` = (path, size, mtime, inode) names."""
    path = Path(key[0])
    info, header_bytes = _parse_model_info(path)
    return _header_digest(path, header_bytes), header_bytes, info


def _parse_model_info(path: Path) -> tuple[ModelInfo, int]:
    """:func:`read_model_info` without the cache; also returns where the tensor data starts.

    The file is read once, by :func:`validate_gguf` (bounds-checked, ~1.5 ms on stories260K); the
    ``gguf`` package's reader would take another 20–40 ms for the same header.
    """
    check_magic(path)
    summary = validate_gguf(path)  # header, metadata and tensor bounds, before llama.cpp parses them
    meta = summary.metadata
    arch = meta.get("general.architecture")
    if not isinstance(arch, str) or not arch:
        raise ModelLoadError(f"{path.name} has no general.architecture in its GGUF metadata")

    def arch_int(key: str, default: int = 0) -> int:
        value = meta.get(f"{arch}.{key}", default)
        if isinstance(value, list):  # per-layer arrays (e.g. head_count_kv on some archs)
            value = max(value) if value else default
        try:
            return int(value)
        except (TypeError, ValueError):
            return default

    def text(key: str) -> str | None:
        value = meta.get(key)
        return value if isinstance(value, str) else None

    def token_id(key: str) -> int | None:
        value = meta.get(key)
        return int(value) if isinstance(value, int) and not isinstance(value, bool) else None

    n_head = arch_int("attention.head_count")
    n_vocab = arch_int("vocab_size") or summary.array_lengths.get("tokenizer.ggml.tokens", 0)
    template = text("tokenizer.chat_template")
    info = ModelInfo(
        path=str(path),
        file_size=summary.file_size,
        architecture=arch,
        name=text("general.name"),
        parameter_count=sum(math.prod(t.shape) for t in summary.tensors),
        quantization=_quantization(summary),
        n_layer=arch_int("block_count"),
        n_embd=arch_int("embedding_length"),
        n_head=n_head,
        n_head_kv=arch_int("attention.head_count_kv", n_head) or n_head,
        n_vocab=n_vocab,
        trained_context=arch_int("context_length"),
        expert_count=arch_int("expert_count"),
        expert_used_count=arch_int("expert_used_count"),
        chat_template=template if template and template.strip() else None,
        bos_token_id=token_id("tokenizer.ggml.bos_token_id"),
        eos_token_id=token_id("tokenizer.ggml.eos_token_id"),
    )
    return info, summary.data_offset or summary.file_size
