"""``RemoteEngine``: a model server (LM Studio, lmsext's own, vLLM, llama.cpp's, Ollama …) behind
:class:`lmsext.backend.Engine`.

It asks the server once which API it speaks: ``GET /api/v1/models`` answers on LM Studio's REST v1 (and on
lmsext's server, told apart by its ``/openapi.json``), else ``GET /v1/models`` on an OpenAI-compatible one.
LM Studio v1 loads and unloads models with their settings; an OpenAI-only server serves the models it
loaded at start-up: those count as loaded (``.model()`` finds them) and a load setting is refused in one line.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..backend import DownloadedModel, LoadedModel, ModelInfo, ProgressCallback, ResolvedModelFile
from ..config import LoadModelConfig, PredictionConfig
from ..errors import LmsextError, ModelNotFoundError, ModelNotLoadedError, RemoteError
from .prediction import RemotePrediction
from .requests import (LMSTUDIO_V1, OPENAI, fits_api_chat, lmstudio_chat_body, load_body, openai_body,
                       openai_messages, refuse_load_settings, refuse_prediction_settings)
from .transport import READ_TIMEOUT, Transport

#: The environment variable naming the server ``lmsext.Client()`` connects to when set.
API_HOST_ENV = "LMSEXT_API_HOST"


@dataclass(frozen=True)
class RemoteModelFile:
    """A model a server lists: its ``key``, a ``path`` standing for it (``<server>/models/<key>``) and the entry."""

    key: str
    path: Path
    entry: dict[str, Any] = field(compare=False)


@dataclass
class RemoteInstance:
    """What ``LoadedModel.handle`` holds for a remote instance: the name the server knows it by."""

    key: str
    server_id: str  #: the instance id (LM Studio) or model id (OpenAI) sent as ``model``
    loaded: bool = True
    current: RemotePrediction | None = None


def server_url(address: str) -> str:
    """``http://host:port`` from ``host:port``, ``http(s)://host:port[/v1]`` (a trailing ``/v1`` or ``/api/v1`` dropped)."""
    url = address.strip().rstrip("/")
    if not url:
        raise RemoteError("a server address is empty; give http://host:port")
    if "://" not in url:
        url = "http://" + url
    for suffix in ("/api/v1", "/v1"):
        if url.endswith(suffix):
            url = url[: -len(suffix)]
    return url


class RemoteEngine:
    """A model server over HTTP (httpx): ``RemoteEngine("http://127.0.0.1:1234", api_key=...)``."""

    def __init__(self, address: str, api_key: str | None = None, *, timeout: float = READ_TIMEOUT) -> None:
        self.url = server_url(address)
        self.transport = Transport(self.url, api_key, timeout=timeout)
        self._api: str | None = None
        self._flavour = ""

    # -- which server ---------------------------------------------------------------------------------

    @property
    def api(self) -> str:
        """``"LM Studio REST v1"`` or ``"OpenAI-compatible"``: asked of the server on first use, then kept."""
        if self._api is None:
            listing = self.transport.try_get("/api/v1/models")
            if isinstance(listing, dict) and isinstance(listing.get("models"), list):
                spec = self.transport.try_get("/openapi.json")
                title = ((spec or {}).get("info") or {}).get("title", "") if isinstance(spec, dict) else ""
                self._flavour = "lmsext" if "lmsext" in str(title) else "lmstudio"
                self._api = LMSTUDIO_V1
            else:
                listing = self.transport.try_get("/v1/models")
                if not (isinstance(listing, dict) and isinstance(listing.get("data"), list)):
                    raise RemoteError(f"{self.url} answers neither GET /api/v1/models (LM Studio) nor "
                                      "GET /v1/models (OpenAI-compatible): is it a model server?")
                self._flavour, self._api = "openai", OPENAI
        return self._api

    def describe(self) -> str:
        """One line: the server and the API it speaks (``http://127.0.0.1:1234 (LM Studio REST v1, lmsext)``)."""
        api = self.api
        return f"{self.url} ({api}{', lmsext server' if self._flavour == 'lmsext' else ''})"

    def _entries(self) -> list[dict[str, Any]]:
        """The server's models as ``{key, size_bytes, architecture, quantization, max_context_length, loaded}``."""
        if self.api == LMSTUDIO_V1:
            out = []
            for e in self.transport.get("/api/v1/models").get("models", []):
                quant = e.get("quantization")
                out.append({"key": e.get("key", ""), "size_bytes": e.get("size_bytes") or 0,
                            "architecture": e.get("architecture") or "unknown",
                            "quantization": (quant.get("name") if isinstance(quant, dict) else quant) or "unknown",
                            "max_context_length": e.get("max_context_length") or 0,
                            "loaded": [i.get("id") for i in e.get("loaded_instances") or [] if isinstance(i, dict)],
                            "templates": {i.get("id"): i["lmsext_chat_template"] for i in e.get("loaded_instances") or []
                                          if isinstance(i, dict) and isinstance(i.get("lmsext_chat_template"), dict)}})
            return out
        return [{"key": e.get("id", ""), "size_bytes": 0, "architecture": "unknown", "quantization": "unknown",
                 "max_context_length": (e.get("meta") or {}).get("n_ctx_train") or e.get("max_model_len") or 0,
                 "loaded": [e.get("id", "")], "templates": {}} for e in self.transport.get("/v1/models").get("data", [])]

    # -- models ---------------------------------------------------------------------------------------

    def check_load_config(self, config: LoadModelConfig) -> None:
        """Refuse, in one line naming the setting and the server, a load setting the server cannot take."""
        refuse_load_settings(config, self.url, self.api, self._flavour)

    def check_prediction_config(self, config: PredictionConfig) -> None:
        """Refuse a prediction setting the server would drop."""
        refuse_prediction_settings(config, self.url, self.api, self._flavour)

    def resolve(self, model_key: str, *, allow_download: bool = True, allow_paths: bool = True) -> RemoteModelFile:
        """The model the server lists as ``model_key`` (its key, a loaded instance id, or the file name of a
        path-like id such as llama.cpp's); a path to a file here finds the served model of that file name."""
        entries = self._entries()
        name = str(model_key).lower()
        for match in (lambda e: e["key"] == model_key, lambda e: e["key"].lower() == name,
                      lambda e: name in (i.lower() for i in e["loaded"] if i),
                      lambda e: _stem(e["key"]) == name,
                      lambda e: Path(str(model_key)).is_file() and _stem(e["key"]) == _stem(str(model_key))):
            for e in entries:
                if match(e):
                    return RemoteModelFile(key=e["key"], path=self._path(e["key"]), entry=e)
        served = ", ".join(e["key"] for e in entries) or "none"
        raise ModelNotFoundError(f"no model {str(model_key)[:200]!r} on {self.url} (it serves: {served[:300]})")

    def _path(self, key: str) -> Path:
        return Path("/remote") / self.url.split("://", 1)[-1].replace("/", "_") / key.replace("/", "_")

    def model_info(self, path: str | Path) -> ModelInfo:
        """What the server says of the model at ``path`` (architecture, quantization, size, trained context)."""
        wanted = Path(path)
        for e in self._entries():
            if self._path(e["key"]) == wanted:
                return _info(e, str(path))
        raise ModelNotFoundError(f"{self.url} no longer lists {wanted.name}")

    def list_downloaded(self) -> list[DownloadedModel]:
        """Every model the server lists."""
        return [DownloadedModel(model_key=e["key"], path=str(self._path(e["key"])), size_bytes=e["size_bytes"],
                                info=_info(e, str(self._path(e["key"])))) for e in self._entries()]

    def load(self, model: ResolvedModelFile, config: LoadModelConfig, *, identifier: str,
             on_progress: ProgressCallback | None = None, force: bool = False) -> LoadedModel:
        """LM Studio v1: ``POST /api/v1/models/load`` with the settings (echoed back); an OpenAI-only server's
        model is served already and counts as loaded."""
        self.check_load_config(config)
        entry = model.entry if isinstance(model, RemoteModelFile) else self.resolve(model.key).entry
        t0 = time.perf_counter()
        if self.api == OPENAI:
            server_id, applied, load_time = entry["key"], {}, 0.0
            notes = [f"served by {self.describe()}: the server loaded this model at start-up; lmsext only connected"]
        else:
            answer = self.transport.post("/api/v1/models/load", load_body(entry["key"], config, self._flavour))
            server_id = answer.get("instance_id") or answer.get("model_instance_id") or entry["key"]
            applied = dict(answer.get("load_config") or answer.get("config") or {})
            load_time = float(answer.get("load_time_seconds", time.perf_counter() - t0))
            notes = [f"loaded by {self.describe()} as instance {server_id!r}"]
        if on_progress is not None:
            on_progress(1.0)
        context = applied.get("context_length") or entry["max_context_length"] or 0
        return LoadedModel(handle=RemoteInstance(key=entry["key"], server_id=server_id),
                           path=str(self._path(entry["key"])), info=_info(entry, str(self._path(entry["key"]))),
                           config=applied, notes=notes, load_time_seconds=load_time, memory={},
                           chat_template="the server's", context_length=int(context),
                           engine_params={"server": self.url, "api": self.api})

    def unload(self, model: LoadedModel) -> None:
        """LM Studio v1: ``POST /api/v1/models/unload``; an OpenAI-only server keeps serving (only forgotten here)."""
        handle: RemoteInstance = model.handle
        if handle.current is not None:
            handle.current.cancel()
        if handle.loaded and self.api == LMSTUDIO_V1:
            self.transport.post("/api/v1/models/unload", {"instance_id": handle.server_id})
        handle.loaded = False

    def is_loaded(self, model: LoadedModel) -> bool:
        """False once unloaded through this engine."""
        return bool(model.handle.loaded)

    def check_loaded(self, model: LoadedModel, identifier: str) -> None:
        """ModelNotLoadedError once unloaded."""
        if not model.handle.loaded:
            raise ModelNotLoadedError(f"model instance '{identifier}' is not loaded")

    def close(self) -> None:
        """Close the connection pool."""
        self.transport.close()

    # -- text -----------------------------------------------------------------------------------------

    def tokenize(self, model: LoadedModel, text: str) -> list[int]:
        """Not over HTTP: the APIs have no tokenizer endpoint in common (one line)."""
        raise LmsextError(f"tokenize needs an in-kernel engine; {self.url} ({self.api}) has no tokenizer endpoint")

    def apply_prompt_template(self, model: LoadedModel, messages: list[dict[str, str]]) -> str:
        """The server's own chat template rendered here, where the server lists it (lmsext's server does);
        otherwise a one-line refusal (the server applies a template it does not show)."""
        from ..chat_templates import ChatTemplate
        server_id = model.handle.server_id
        for e in self._entries():
            template = e["templates"].get(server_id)
            if template is not None:
                return ChatTemplate(template.get("source"), bos_token=template.get("bos_token") or "",
                                    eos_token=template.get("eos_token") or "").render(messages)
        raise LmsextError(f"the chat template is applied by the server {self.url}, which does not show it; "
                          "an in-kernel engine shows it")

    # -- prediction -------------------------------------------------------------------------------------

    def predict(self, model: LoadedModel, prompt: str | list[dict[str, str]],
                config: PredictionConfig) -> RemotePrediction:
        """Stream a completion (raw text → ``/v1/completions``) or a chat (``/api/v1/chat`` for one user turn on
        LM Studio v1, else ``/v1/chat/completions``)."""
        handle: RemoteInstance = model.handle
        if not handle.loaded:
            raise ModelNotLoadedError(f"model instance '{handle.server_id}' is not loaded")
        self.check_prediction_config(config)
        if isinstance(prompt, str):
            path, kind = "/v1/completions", "openai_completion"
            body = {**openai_body(handle.server_id, config, chat=False), "prompt": prompt}
            prompt_text = prompt
        else:
            prompt_text = "\n".join(f"{m['role']}: {m['content']}" for m in prompt)
            if self.api == LMSTUDIO_V1 and fits_api_chat(prompt, config):
                path, kind = "/api/v1/chat", "lmstudio_chat"
                body = lmstudio_chat_body(handle.server_id, prompt, config)
            else:
                path, kind = "/v1/chat/completions", "openai_chat"
                body = {**openai_body(handle.server_id, config, chat=True), "messages": openai_messages(prompt)}
        prediction = RemotePrediction(self.transport, path, body, kind, prompt_text=prompt_text,
                                      log_probs=config.log_probs or 0)
        handle.current = prediction
        return prediction

    def stop(self, model: LoadedModel) -> None:
        """Cancel the running prediction on ``model`` (it ends as ``userStopped``)."""
        current = model.handle.current
        if current is not None:
            current.cancel()

    def __repr__(self) -> str:
        return f"<RemoteEngine {self.url}>"


def _stem(key: str) -> str:
    name = key.replace("\\", "/").rsplit("/", 1)[-1].lower()
    return name[:-5] if name.endswith(".gguf") else name


def _info(entry: dict[str, Any], path: str) -> ModelInfo:
    """A ModelInfo of what a server lists (unknown numbers are 0)."""
    return ModelInfo(path=path, file_size=int(entry["size_bytes"] or 0), architecture=entry["architecture"],
                     name=entry["key"], parameter_count=0, quantization=entry["quantization"], n_layer=0, n_embd=0,
                     n_head=0, n_head_kv=0, n_vocab=0, trained_context=int(entry["max_context_length"] or 0),
                     expert_count=0, expert_used_count=0, chat_template=None, bos_token_id=None, eos_token_id=None)


def default_address() -> str | None:
    """``$LMSEXT_API_HOST`` when set (the server ``lmsext.Client()`` connects to), else None."""
    return os.environ.get(API_HOST_ENV) or None


__all__ = ["API_HOST_ENV", "RemoteEngine", "RemoteInstance", "RemoteModelFile", "default_address", "server_url"]
