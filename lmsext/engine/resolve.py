"""Find the GGUF file a model key names: a path, a key in the model folders, or a Hugging Face id.

Search order for a bare name or key: ``$LMSEXT_MODELS_PATH`` (os.pathsep-separated folders), LM
Studio's model folders (``~/.lmstudio/models``, ``~/.cache/lm-studio/models``), the Hugging Face
cache, then the embedded default model (:data:`EMBEDDED_MODEL_KEY`, shipped inside the package;
a file of the same key in the model folders takes precedence). ``owner/repo`` or ``owner/repo/file.gguf`` not found locally is downloaded with
``huggingface_hub`` (a clear error when offline). Nothing outside those folders is ever returned
for a key (only an explicit path can point elsewhere).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..config.spelling import closest
from ..errors import ModelNotFoundError
from ..models import EMBEDDED_MODEL_KEY, embedded_model_path  # the embedded default model (package data)

LMSTUDIO_DIRS = ("~/.lmstudio/models", "~/.cache/lm-studio/models")
#: Preferred quantizations when a repository holds several GGUF files.
QUANT_PREFERENCE = ("Q4_K_M", "Q4_K_S", "Q5_K_M", "Q8_0", "Q6_K", "F16", "BF16", "F32")
@dataclass(frozen=True)
class ModelFile:
    """A GGUF file found in a model folder, with the key it is known by."""

    key: str
    path: Path
    folder: Path
    size: int


def model_folders() -> list[Path]:
    """The folders searched for model keys, in order (existing ones only)."""
    folders: list[Path] = []
    for entry in os.environ.get("LMSEXT_MODELS_PATH", "").split(os.pathsep):
        if entry.strip():
            folders.append(Path(entry).expanduser())
    folders += [Path(p).expanduser() for p in LMSTUDIO_DIRS]
    seen: list[Path] = []
    for folder in folders:
        if folder.is_dir() and folder.resolve() not in [s.resolve() for s in seen]:
            seen.append(folder)
    return seen


def _hf_cache_files() -> list[ModelFile]:
    try:
        from huggingface_hub import scan_cache_dir
        cache = scan_cache_dir()
    except Exception:
        return []
    files = []
    for repo in cache.repos:
        if repo.repo_type != "model":
            continue
        for revision in repo.revisions:
            for f in revision.files:
                if f.file_name.lower().endswith(".gguf"):
                    files.append(ModelFile(key=f"{repo.repo_id}/{f.file_name}", path=Path(f.file_path),
                                           folder=Path(repo.repo_path), size=f.size_on_disk))
    return files


#: The Hugging Face hub (``$HF_ENDPOINT`` overrides it: a mirror, or the tests' loopback hub).
DEFAULT_ENDPOINT = "https://huggingface.co"


def hf_endpoint() -> str:
    """The hub to download from: ``$HF_ENDPOINT`` read now (huggingface_hub reads it once, at import)."""
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def is_part_file(name: str) -> bool:
    """True for the second and later parts of a split model (llama.cpp loads them through the first)."""
    # split models: keep only the first part (llama.cpp loads the rest itself)
    m = re.search(r"-(\d{5})-of-(\d{5})\.gguf$", name, re.IGNORECASE)
    return bool(m and m.group(1) != "00001")


def _folder_files() -> list[ModelFile]:
    """Walk the model folders: every GGUF in them, keyed by its path relative to its folder (no ``.gguf``).
    Hidden folders are skipped (downloads in progress live in ``.lmsext-downloads``)."""
    found: list[ModelFile] = []
    for folder in model_folders():
        for path in sorted(folder.rglob("*.gguf")):
            rel_parts = path.relative_to(folder).parts
            if any(part.startswith(".") for part in rel_parts[:-1]):
                continue
            if path.is_file() and not is_part_file(path.name) and "mmproj" not in path.name.lower():
                rel = path.relative_to(folder).as_posix()
                found.append(ModelFile(key=rel.removesuffix(".gguf"), path=path, folder=folder,
                                       size=path.stat().st_size))
    return found


def _with_embedded(found: list[ModelFile]) -> list[ModelFile]:
    """``found`` plus the embedded default model, unless a file there already has its key."""
    if any(f.key.lower() == EMBEDDED_MODEL_KEY.lower() for f in found):
        return found
    path = embedded_model_path()
    if not path.is_file():  # pragma: no cover - a broken installation
        return found
    return found + [ModelFile(key=EMBEDDED_MODEL_KEY, path=path, folder=path.parent, size=path.stat().st_size)]


def is_embedded(path: str | os.PathLike) -> bool:
    """Whether ``path`` is the embedded default model's file."""
    try:
        return Path(path).resolve() == embedded_model_path().resolve()
    except OSError:
        return False


def list_model_files(include_hf_cache: bool = True) -> list[ModelFile]:
    """Every GGUF file in the model folders (and the Hugging Face cache), keyed as LM Studio does, and
    the embedded default model (always listed, under :data:`EMBEDDED_MODEL_KEY`)."""
    found = _folder_files()
    if include_hf_cache:
        found += _hf_cache_files()
    return _with_embedded(found)


def _key_for(path: Path, folder_files: list[ModelFile]) -> str:
    """The model key of ``path``: its key in the model folders if it is one of their files, else its stem."""
    target = path.resolve()
    for f in reversed(folder_files):  # the last listing of a file wins (a file linked into two folders)
        if f.path.resolve() == target:
            return f.key
    return path.stem


class ResolvedModel:
    """The GGUF file a model name resolved to, and the model key it is known by (:attr:`key`)."""

    def __init__(self, path: Path, folder_files: list[ModelFile] | None = None) -> None:
        self.path = path
        self._folder_files = folder_files
        self._key: str | None = None

    @property
    def key(self) -> str:
        """The file's key in the model folders (``publisher/repo/file`` without ``.gguf``), else the file's
        stem (a file elsewhere, the Hugging Face cache). Reuses the folder listing made while resolving; the
        folders are walked here only when resolving needed no listing (an explicit path)."""
        if self._key is None:
            if self._folder_files is None:
                self._folder_files = _folder_files()
            self._key = _key_for(self.path, self._folder_files)
        return self._key

    def __repr__(self) -> str:
        return f"ResolvedModel({str(self.path)!r})"


def _pick(candidates: list[ModelFile], name: str) -> ModelFile:
    if len(candidates) == 1:
        return candidates[0]
    for quant in QUANT_PREFERENCE:
        for c in candidates:
            if quant.lower() in c.path.name.lower():
                return c
    names = ", ".join(sorted(c.key for c in candidates)[:6])
    raise ModelNotFoundError(f"'{name}' matches several models ({names}); use the full key")


def resolve_model(name: str, *, allow_download: bool = True, allow_paths: bool = True) -> Path:
    """Return the GGUF file for ``name`` or raise :class:`ModelNotFoundError` saying where it looked.

    ``allow_paths=False`` (the REST server) accepts only keys, which resolve inside the model folders.
    """
    return resolve_model_and_key(name, allow_download=allow_download, allow_paths=allow_paths).path


def resolve_model_and_key(name: str, *, allow_download: bool = True, allow_paths: bool = True) -> ResolvedModel:
    """:func:`resolve_model`, with the model key of the file found (``.key``) from the same folder listing."""
    if not isinstance(name, (str, os.PathLike)) or not str(name).strip():
        raise ModelNotFoundError(f"model must be a non-empty name, key or path, not {name!r}")
    name = str(name).strip()
    as_path = Path(name).expanduser()
    if not allow_paths and (as_path.is_absolute() or name.startswith(("~", ".")) or ".." in Path(name).parts
                            or "\\" in name):
        raise ModelNotFoundError(f"model {name!r}: only model keys are accepted here, not file paths")
    looks_like_path = name.endswith(".gguf") or os.sep in name and as_path.is_absolute() or name.startswith((".", "~"))
    if allow_paths and as_path.exists() and (as_path.is_file() or looks_like_path):
        return ResolvedModel(as_path)
    if looks_like_path and as_path.is_absolute():
        raise ModelNotFoundError(f"no such file: {as_path}")
    if ".." in Path(name).parts:
        raise ModelNotFoundError(f"model key {name!r} may not contain '..'")
    wanted = name.removesuffix(".gguf").lower()
    in_folders = _folder_files()
    files = _with_embedded(in_folders + _hf_cache_files())
    exact = [f for f in files if f.key.lower() == wanted]
    if exact:
        return ResolvedModel(_pick(exact, name).path, in_folders)
    # a file-name match is for bare names; a key with '/' is a catalog key (never a URL or a path) without paths
    by_stem = [f for f in files if f.path.stem.lower() == Path(wanted).name] if allow_paths or "/" not in wanted \
        else []
    if by_stem:
        return ResolvedModel(_pick(by_stem, name).path, in_folders)
    by_dir = [f for f in files if f.key.lower().startswith(wanted + "/")]
    if by_dir:
        return ResolvedModel(_pick(by_dir, name).path, in_folders)
    if allow_download and re.fullmatch(r"[\w.-]+/[\w.-]+(/[\w./-]+\.gguf)?", name):
        return ResolvedModel(download(name), in_folders)
    where = [str(f) for f in model_folders()] or ["(no model folder exists)"]
    hint = "" if os.environ.get("LMSEXT_MODELS_PATH") else "; set LMSEXT_MODELS_PATH to your model folder"
    near = closest(name, [f.key for f in files] + [f.path.stem for f in files])  # a typo: the nearest key
    if near is not None:
        hint = f"; did you mean '{near}'?"
    raise ModelNotFoundError(f"model '{name}' not found in {', '.join(where)} or the Hugging Face cache{hint}")


def download(repo_and_file: str) -> Path:
    """Download ``owner/repo`` (best GGUF in it) or ``owner/repo/file.gguf`` from the Hugging Face hub."""
    try:
        from huggingface_hub import HfApi, hf_hub_download
        from huggingface_hub.utils import HfHubHTTPError
    except ImportError:  # pragma: no cover - a declared dependency
        raise ModelNotFoundError("huggingface_hub is not installed; cannot download models") from None
    parts = repo_and_file.split("/")
    repo_id, filename = "/".join(parts[:2]), "/".join(parts[2:]) or None
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
    try:
        if filename is None:
            if offline:
                raise ModelNotFoundError(
                    f"model '{repo_and_file}' is not downloaded and HF_HUB_OFFLINE is set; cannot list the repository")
            ggufs = [f for f in HfApi(endpoint=hf_endpoint()).list_repo_files(repo_id) if f.lower().endswith(".gguf")]
            if not ggufs:
                raise ModelNotFoundError(f"Hugging Face repository {repo_id} has no .gguf files")
            filename = _pick([ModelFile(key=f, path=Path(f), folder=Path("."), size=0) for f in ggufs
                              if not is_part_file(f)], repo_and_file).key
        if offline:
            try:
                return Path(hf_hub_download(repo_id, filename, local_files_only=True))
            except Exception:
                raise ModelNotFoundError(f"model '{repo_and_file}' is not in the Hugging Face cache and "
                                         "HF_HUB_OFFLINE is set") from None
        return Path(hf_hub_download(repo_id, filename, endpoint=hf_endpoint()))
    except ModelNotFoundError:
        raise
    except HfHubHTTPError as exc:
        raise ModelNotFoundError(f"could not download '{repo_and_file}' from the Hugging Face hub: "
                                 f"{str(exc).splitlines()[0]}") from None
    except Exception as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelNotFoundError(f"could not download '{repo_and_file}' from the Hugging Face hub "
                                 f"(offline?): {first}") from None
