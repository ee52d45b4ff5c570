"""The model lists of ``GET /api/v1/models`` and ``/v1/models``, and finding (JIT-loading) a model by name."""

from __future__ import annotations

import re
from typing import Any, Iterable

# ------------------------------------------------------------------------------------------ models


def _bits(quant: str | None) -> float | None:
    if not quant:
        return None
    q = quant.upper()
    for prefix, bits in (("F32", 32), ("BF16", 16), ("F16", 16)):
        if q.startswith(prefix):
            return bits
    m = re.search(r"(\d+)", q)
    return int(m.group(1)) if m else None


def _params_string(n: int | None) -> str | None:
    if not n:
        return None
    for div, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if n >= div:
            value = n / div
            text = f"{value:.1f}".rstrip("0").rstrip(".") if value < 10 else f"{value:.0f}"
            return text + suffix
    return str(n)


def _model_entry(key: str, info: Any, size: int, instances: Iterable[Any]) -> dict[str, Any]:
    return {
        "type": "llm",
        "publisher": key.split("/")[0] if "/" in key else None,
        "key": key,
        "display_name": (info.name if info and info.name and info.name != info.architecture else None)
        or key.split("/")[-1],
        "architecture": info.architecture if info else None,
        "quantization": {"name": info.quantization if info else None,
                         "bits_per_weight": _bits(info.quantization if info else None)},
        "size_bytes": size,
        "params_string": _params_string(info.parameter_count if info else None),
        "loaded_instances": [{"id": llm.identifier, "config": _instance_config(llm),
                              **_template_field(llm)} for llm in instances],
        "max_context_length": info.trained_context if info else None,
        "format": "gguf",
        "capabilities": {"vision": False, "trained_for_tool_use": False},
        "description": None,
    }


def _instance_config(llm: Any) -> dict[str, Any]:
    """A loaded instance's effective config with LM Studio 0.4's ``parallel`` (after ``eval_batch_size``): the
    predictions the instance runs at once (``max_parallel_predictions`` when the engine reports it, else 1)."""
    config = llm.load_result.to_rest()["config"]
    parallel = config.get("max_parallel_predictions") or 1
    out: dict[str, Any] = {}
    for key, value in config.items():
        out[key] = value
        if key == "eval_batch_size":
            out["parallel"] = parallel
    out.setdefault("parallel", parallel)
    return out


def _template_field(llm: Any) -> dict[str, Any]:
    """lmsext's extension of an instance entry: its chat template (Jinja source or None for the plain fallback,
    BOS and EOS text), so a remote client's ``apply_prompt_template`` renders exactly what this server would."""
    template = getattr(llm.engine, "chat_template", None)
    if template is None:
        return {}
    return {"lmsext_chat_template": {"source": template.source, "bos_token": template.bos_token,
                                     "eos_token": template.eos_token}}


def list_models(client: Any) -> list[dict[str, Any]]:
    """Downloaded models (with their loaded instances), then instances loaded from elsewhere."""
    loaded = list(client.llm.list_loaded())
    entries, claimed = [], set()
    for model in client.list_downloaded_models():
        mine = [llm for llm in loaded if id(llm) not in claimed and (
            llm.load_result.path == model.path or llm.model_key.lower() == model.model_key.lower())]
        claimed.update(id(llm) for llm in mine)
        entries.append(_model_entry(model.model_key, model.info, model.size_bytes, mine))
    rest: dict[str, list[Any]] = {}
    for llm in loaded:
        if id(llm) not in claimed:
            rest.setdefault(llm.model_key, []).append(llm)
    for key, instances in rest.items():
        info = instances[0].get_info()
        entries.append(_model_entry(key, info, info.file_size, instances))
    return entries


def find_loaded(client: Any, name: str) -> Any:
    """The loaded instance called ``name`` (instance id, then model key), or None."""
    loaded = client.llm.list_loaded()
    for llm in loaded:
        if llm.identifier == name:
            return llm
    for llm in loaded:
        if llm.model_key.lower() == name.lower():
            return llm
    return None


def get_model(client: Any, name: str, jit_config: dict[str, Any] | None) -> tuple[Any, bool]:
    """The instance for ``name``, JIT-loading it from the model folders if needed: (llm, loaded_now)."""
    llm = find_loaded(client, name)
    if llm is not None:
        return llm, False
    before = {id(m) for m in client.llm.list_loaded()}
    llm = client.llm.model(name, config=jit_config, allow_download=False, allow_paths=False)
    return llm, id(llm) not in before and not llm.load_result.reused

