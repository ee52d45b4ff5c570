"""``Client`` and ``client.llm``: LM Studio's model-management API over the in-kernel engine."""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path
from typing import Any, Callable

from .backend import (DownloadedModel, Engine, LoadPreview, MemoryEstimate, ModelInfo, ResolvedModelFile,
                      SupportsDownload, SupportsEstimate, missing_capability)
from .config import LoadModelConfig
from .config.constants import IDENTIFIER_PATTERN, MAX_IDENTIFIER_LENGTH
from .config.error_messages import short_repr
from .config.spelling import closest
from .errors import ConfigError, LmsextError, ModelNotFoundError, ModelNotLoadedError
from .llm import LLM
from .models import EMBEDDED_MODEL_KEY
from .registry import LOCAL, Registry, engine_registry, registry
from .results import LoadResult

#: The one line a load of the embedded default model for want of a model key carries.
DEFAULT_MODEL_NOTE = (f"no model given: loaded the embedded default model {EMBEDDED_MODEL_KEY} "
                      "(shipped with lmsext; add your own with LMSEXT_MODELS_PATH or client.llm.download)")
JIT_NOTE = ("already loaded: the config passed to .model() was ignored (LM Studio's JIT semantics); "
            "use .load() for a new instance with that config")


def check_identifier(identifier: Any) -> str:
    """``identifier`` if it is a valid instance identifier (:data:`~lmsext.config.constants.IDENTIFIER_PATTERN`),
    else one ConfigError."""
    if not isinstance(identifier, str) or not identifier.strip():
        raise ConfigError(f"identifier={short_repr(identifier)}: must be a non-empty string", key="identifier")
    if len(identifier) > MAX_IDENTIFIER_LENGTH:
        raise ConfigError(f"identifier: {len(identifier):,} characters; at most {MAX_IDENTIFIER_LENGTH}",
                          key="identifier", allowed=f"at most {MAX_IDENTIFIER_LENGTH} characters")
    if not re.fullmatch(IDENTIFIER_PATTERN, identifier):
        raise ConfigError(f"identifier={short_repr(identifier)}: no spaces or control characters allowed",
                          key="identifier", allowed="1 to 256 characters, no whitespace or control characters")
    return identifier


#: Longest model key, path or identifier looked up (Linux's PATH_MAX): longer names are no file, and the OS
#: answers ``OSError: File name too long`` instead of "not found".
MAX_NAME_LENGTH = 4096


def _check_name(name: Any) -> None:
    """A model key, path or identifier must be text (a list would fail deep inside as 'unhashable') of at
    most :data:`MAX_NAME_LENGTH` characters."""
    if not isinstance(name, (str, os.PathLike)) or not str(name).strip():
        raise ModelNotFoundError(f"model must be a non-empty name, key or path, not {short_repr(name)}")
    if len(str(name)) > MAX_NAME_LENGTH:
        raise ModelNotFoundError(f"model {short_repr(str(name), 40)}: {len(str(name)):,} characters; a model key, "
                                 f"path or identifier has at most {MAX_NAME_LENGTH:,}")


class LLMNamespace:
    """``client.llm``: load, find and unload LLM instances — those of every client on the same engine
    (:mod:`lmsext.registry`: one registry per kernel, as LM Studio's clients share one server)."""

    def __init__(self, client: "Client") -> None:
        self._client = client
        self._registry: Registry = client._registry

    @property
    def _instances(self) -> dict[str, LLM]:
        return self._registry.instances

    @property
    def _lock(self) -> threading.RLock:
        return self._registry.lock

    def model(self, model_key: str | None = None, *, config: Any = None,
              on_load_progress: Callable[[float], Any] | None = None,
              allow_download: bool = True, allow_paths: bool = True, force: bool = False) -> LLM:
        """JIT: the loaded instance for ``model_key`` if there is one (``config`` then ignored), else load it.

        With no key, the first loaded instance, or when none is loaded the embedded default model
        (``stories260K``, its load result saying so in one note).
        ``allow_download``/``allow_paths``/``force`` as in :meth:`load`.
        """
        with self._lock:
            if model_key is None:
                if self._instances:
                    return next(iter(self._instances.values()))
                return self._load(EMBEDDED_MODEL_KEY, None, config=config, identifier=None,
                                  on_load_progress=on_load_progress, allow_download=False, allow_paths=False,
                                  force=force, note=DEFAULT_MODEL_NOTE)
            _check_name(model_key)
            existing, resolved = self._lookup(model_key, allow_paths=allow_paths)
            if existing is not None:
                if config is not None:
                    LoadModelConfig.parse(config)  # still validate: a typo is an error either way
                    return LLM(self, existing.identifier, existing._backend, existing._loaded,
                               existing.load_result.with_note(JIT_NOTE))
                return existing
            return self._load(model_key, resolved, config=config, identifier=None,
                              on_load_progress=on_load_progress, allow_download=allow_download,
                              allow_paths=allow_paths, force=force)

    def estimate(self, model_key: str, config: Any = None, *, allow_download: bool = False,
                 allow_paths: bool = True) -> MemoryEstimate:
        """Predict the memory loading ``model_key`` with ``config`` would take — weights, KV cache,
        compute buffers — and what is available, without loading anything."""
        _check_name(model_key)
        cfg = LoadModelConfig.parse(config)
        engine = self._estimating_engine("a memory estimate")
        engine.check_load_config(cfg)
        resolved = engine.resolve(model_key, allow_download=allow_download, allow_paths=allow_paths)
        return engine.estimate(resolved, cfg)

    def plan(self, model: str | ModelInfo, config: Any = None, *, allow_download: bool = False,
             allow_paths: bool = True) -> LoadPreview:
        """What loading ``model`` (a model key, a path or its :meth:`model_info`) with ``config`` would apply —
        every effective setting, the notes on what is applied differently, the GPU layers — without
        loading (ConfigError if it cannot load). The load panel shows it on every slider move."""
        cfg = LoadModelConfig.parse(config)
        engine = self._estimating_engine("a load preview")
        engine.check_load_config(cfg)
        info = model if isinstance(model, ModelInfo) else self.model_info(
            model, allow_download=allow_download, allow_paths=allow_paths)
        return engine.preview_load(info, cfg)

    def model_info(self, model_key: str, *, allow_download: bool = False, allow_paths: bool = True) -> ModelInfo:
        """The metadata of the model file ``model_key`` names (architecture, layers, trained context, …)."""
        engine = self._client.engine
        return engine.model_info(engine.resolve(model_key, allow_download=allow_download, allow_paths=allow_paths).path)

    def _estimating_engine(self, what: str) -> Any:
        engine = self._client.engine
        if not isinstance(engine, SupportsEstimate):
            raise LmsextError(missing_capability(engine, what))
        return engine

    def load(self, model_key: str, *, config: Any = None, identifier: str | None = None,
             on_load_progress: Callable[[float], Any] | None = None,
             allow_download: bool = True, allow_paths: bool = True, force: bool = False) -> LLM:
        """Always load a new instance. ``identifier`` must be free; by default ``key``, ``key:2``, …

        ``allow_download=False`` never fetches from the Hugging Face hub; ``allow_paths=False`` accepts
        only model keys (the REST server passes both, so a key can never name a file outside the model folders).
        A load whose memory estimate (:meth:`estimate`) exceeds the available memory is refused with
        :class:`~lmsext.InsufficientMemoryError` (it would get the kernel killed) unless ``force=True``.
        """
        return self._load(model_key, None, config=config, identifier=identifier, on_load_progress=on_load_progress,
                          allow_download=allow_download, allow_paths=allow_paths, force=force)

    def _load(self, model_key: str, resolved: ResolvedModelFile | None, *, config: Any, identifier: str | None,
              on_load_progress: Callable[[float], Any] | None, allow_download: bool, allow_paths: bool,
              force: bool, note: str | None = None) -> LLM:
        """:meth:`load`, reusing ``resolved`` (the resolution of ``model_key`` :meth:`model` already made) if given:
        one load lists the model folders once, for the file and its key alike."""
        engine = self._client.engine
        cfg = LoadModelConfig.parse(config)
        engine.check_load_config(cfg)
        if identifier is not None:
            check_identifier(identifier)
        if resolved is None:
            _check_name(model_key)
            resolved = engine.resolve(model_key, allow_download=allow_download, allow_paths=allow_paths)
        engine.model_info(resolved.path)  # a file that is not a model fails before any instance bookkeeping
        with self._lock:
            if identifier is not None and identifier in self._instances:
                raise ConfigError(f"identifier '{identifier}' is already taken by a loaded instance; "
                                  "choose another or unload it first", key="identifier", value=identifier)
            ident = identifier or self._free_identifier(resolved.key)
            loaded = engine.load(resolved, cfg, identifier=ident, on_progress=on_load_progress, force=force)
            result = LoadResult(
                model_instance_id=ident, model_key=resolved.key, path=loaded.path, config=dict(loaded.config),
                load_time_seconds=loaded.load_time_seconds, requested=cfg.to_dict("snake"), notes=([note] if note else []) + list(loaded.notes),
                model_info=loaded.info, memory=dict(loaded.memory), chat_template=loaded.chat_template,
                llama_params=dict(loaded.engine_params), setting_params=dict(loaded.setting_params))
            llm = LLM(self, ident, engine, loaded, result)
            self._instances[ident] = llm
            return llm

    def _free_identifier(self, key: str) -> str:
        if key not in self._instances:
            return key
        n = 2
        while f"{key}:{n}" in self._instances:
            n += 1
        return f"{key}:{n}"

    def _find(self, name: str, *, allow_paths: bool = True) -> LLM | None:
        return self._lookup(name, allow_paths=allow_paths)[0]

    def _lookup(self, name: str, *, allow_paths: bool = True) -> tuple[LLM | None, ResolvedModelFile | None]:
        """The loaded instance ``name`` names (identifier, model key, then the file it resolves to without
        downloading), and the resolution of ``name`` when one was made and succeeded (a load can reuse it)."""
        if name in self._instances:
            return self._instances[name], None
        for llm in self._instances.values():
            if llm.model_key == name or llm.model_key.lower() == str(name).lower():
                return llm, None
        try:
            resolved = self._client.engine.resolve(name, allow_download=False, allow_paths=allow_paths)
            path = resolved.path.resolve()
        except Exception:
            return None, None
        for llm in self._instances.values():
            if Path(llm.load_result.path).resolve() == path:
                return llm, resolved
        return None, resolved

    def get(self, identifier: str) -> LLM:
        """The loaded instance called ``identifier`` (or with that model key)."""
        _check_name(identifier)
        with self._lock:
            found = self._find(identifier) if identifier not in self._instances else self._instances[identifier]
            if found is None:
                loaded = ", ".join(self._instances) or "none"
                near = closest(str(identifier), [*self._instances, *(m.model_key for m in self._instances.values())])
                hint = f"; did you mean '{near}'?" if near else ""
                raise ModelNotLoadedError(f"no loaded model {short_repr(str(identifier))} (loaded: {loaded}){hint}")
            return found

    def unload(self, identifier: "str | LLM") -> None:
        """Unload one instance by identifier (or handle)."""
        if isinstance(identifier, LLM):
            identifier = identifier.identifier
        with self._lock:
            llm = self.get(identifier)
            self._instances.pop(llm.identifier, None)
        llm._backend.unload(llm._loaded)  # the engine it was loaded on (a server's: the client that loaded it)

    def unload_all(self) -> None:
        """Unload every instance (every client on this engine sees them go, as ``lms unload --all``)."""
        for ident in list(self._instances):
            self.unload(ident)

    def list_loaded(self) -> list[LLM]:
        """The loaded instances, oldest first."""
        with self._lock:
            return list(self._instances.values())

    def download(self, model: str, quantization: str | None = None, *, progress_bar: bool = True,
                 on_job: Callable[[Any], Any] | None = None, say: Callable[[str], Any] = print) -> DownloadedModel:
        """Download a GGUF model from the Hugging Face hub into the model folders (as ``lms get`` does) and
        return it as listed in the catalog.

        ``model``: ``owner/repo``, ``owner/repo/file.gguf``, ``owner/repo@Q4_K_M`` or a huggingface.co URL;
        ``quantization`` picks the file whose name matches (``Q4_K_M``), else the smallest of at least
        4 bits; one line says which file and why. A tqdm progress bar (a widget in a notebook) unless
        ``progress_bar=False``; ``on_job(job)`` gets the :class:`~lmsext.engine.downloads.DownloadJob` before it
        runs (its ``cancel()`` stops it). Files go to LM Studio's layout ``publisher/repo/file.gguf``
        under the first ``LMSEXT_MODELS_PATH`` folder (else ``~/.lmstudio/models``); see
        :mod:`lmsext.engine.downloads`. Errors (offline, unknown repository, not a GGUF file) are one line:
        :class:`~lmsext.DownloadError` or :class:`~lmsext.ModelNotFoundError`. ``say`` prints the lines.
        """
        job = self.download_job(model, quantization, progress_bar=progress_bar)
        plan = job.plan
        if job.status != "already_downloaded":
            say(f"downloading {plan.repo_id}/{plan.filename} ({plan.reason}) to {plan.destination}")
        if on_job is not None:
            on_job(job)
        job.run()
        say(job.describe())
        path = job.path or plan.destination
        return DownloadedModel(model_key=plan.model_key, path=str(path), size_bytes=path.stat().st_size,
                               info=self._client.engine.model_info(path))

    def download_job(self, model: str, quantization: str | None = None, *, progress_bar: bool = True) -> Any:
        """The planned, not yet run, download :meth:`download` runs (the REST server runs it on a thread and
        reports its progress): ``run()``, ``cancel()``, ``status``, ``to_rest()``. Planning asks the hub which
        files the repository has: errors (offline, unknown repository) are one line."""
        engine = self._client.engine
        if not isinstance(engine, SupportsDownload):
            raise LmsextError(missing_capability(engine, "downloading models"))
        return engine.download_job(model, quantization, progress_bar=progress_bar)

    def list_downloaded(self) -> list[DownloadedModel]:
        """GGUF files in the model folders and the embedded default model (see :meth:`Client.list_downloaded_models`)."""
        return self._client.list_downloaded_models()


class Client:
    """The entry point, as in LM Studio's SDK: ``client.llm.model("stories260K").respond("Hi")``.

    ``engine`` is what runs the models (see :class:`lmsext.backend.Engine`): by default the in-kernel
    llama.cpp engine, :class:`lmsext.engine.local.LocalEngine`; a server address (``"http://host:port"``,
    ``"host:port"``) connects to a model server (:class:`lmsext.remote.RemoteEngine`, LM Studio REST v1 or
    OpenAI-compatible) with ``api_key``. With no engine, ``$LMSEXT_API_HOST`` names the server when set.

    Clients share the loaded instances as LM Studio's share one server (:mod:`lmsext.registry`): every
    ``Client()`` on the in-kernel engine sees what any other (``%lm_load``, the panels, the REST server)
    loaded, and clients on one server address share its instances. :meth:`close` only detaches.
    """

    def __init__(self, engine: Engine | str | None = None, api_key: str | None = None) -> None:
        if engine is None:
            from .remote import default_address
            engine = default_address()
        self._credential: Any = None
        if isinstance(engine, str):
            from .remote import RemoteEngine, server_url
            url, key = server_url(engine), api_key
            self._registry = registry(url)
            self._credential = key
            engine = self._registry.attach(key, lambda: RemoteEngine(url, api_key=key))
        elif api_key is not None:
            raise ConfigError("api_key: only for a server address (Client('http://host:port', api_key=...))",
                              key="api_key")
        elif engine is None:
            self._registry = registry(LOCAL)
            engine = self._registry.attach(None, _local_engine)
        else:
            given = engine
            self._registry = engine_registry(given)
            self._registry.attach(None, lambda: given)  # held by its registry: its key stays its own
        self.engine: Engine = engine
        self.llm = LLMNamespace(self)
        self._closed = False

    def close(self) -> None:
        """Detach this client. The loaded instances stay loaded (other clients, the magics, the panels see
        them: unload them with ``client.llm.unload_all()``); a server connection no client and no instance
        uses any more is closed. The in-kernel engine lives as long as the process."""
        if not self._closed:
            self._closed = True
            self._registry.detach(self._credential)

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def list_downloaded_models(self) -> list[DownloadedModel]:
        """Every GGUF in ``$LMSEXT_MODELS_PATH``, LM Studio's folders and the Hugging Face cache, and the
        embedded default model ``stories260K`` (unless a model folder has a file of that key)."""
        return self.engine.list_downloaded()

    def list_loaded_models(self) -> list[LLM]:
        """Same as ``client.llm.list_loaded()``."""
        return self.llm.list_loaded()

    def describe_engine(self) -> str:
        """One line: which engine runs the models (``in-kernel llama.cpp`` or the server and its API)."""
        describe = getattr(self.engine, "describe", None)
        return describe() if callable(describe) else f"in-kernel {type(self.engine).__name__}"

    def __repr__(self) -> str:
        return f"<lmsext.Client: {len(self.llm.list_loaded())} loaded>"


def _local_engine() -> Engine:
    """The default engine: llama.cpp in this kernel (imported on first use: ``import lmsext`` stays light)."""
    from .engine.local import LocalEngine
    return LocalEngine()


_default: Client | None = None
_default_lock = threading.Lock()


def default_client() -> Client:
    """The kernel-wide client shared by the magics, widgets and REST server (on the in-kernel engine it sees
    the same instances as any ``Client()``; after ``%lm_connect`` it is the connected server's client)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Client()
        return _default


def set_default_client(client: Client | None) -> Client | None:
    """Make ``client`` the kernel-wide client the magics and panels use (None: a fresh in-kernel one on next
    use); returns the previous one, whose loaded models stay loaded."""
    global _default
    with _default_lock:
        previous, _default = _default, client
        return previous


__all__ = ["Client", "DownloadedModel", "LLMNamespace", "default_client", "set_default_client"]
