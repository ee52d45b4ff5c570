"""The in-kernel llama.cpp engine: the only package of lmsext that imports ``llama_cpp``.

- :mod:`.params` — THE table mapping LM Studio load settings to llama.cpp parameters.
- :mod:`.model` — loading with guards (:class:`EngineModel`).
- :mod:`.generate` — the lean token loop with stop reasons, KV prefix reuse, interrupts.
- :mod:`.sampling`, :mod:`.grammar` — the native sampler chain and structured output.
- chat templates: :mod:`lmsext.chat_templates` (shared with the remote engine); :mod:`.gguf_info` — GGUF metadata; :mod:`.resolve` — model files.
"""

from .gguf_info import ModelInfo, read_model_info
from .generate import GenerationRequest, GenerationStats, TokenEvent, TokenLogProb, generate
from .grammar import check_grammar, to_gbnf
from .model import EngineModel, LoadReport
from .params import LOAD_SETTINGS, LoadPlan, plan_load
from .resolve import ModelFile, list_model_files, model_folders, resolve_model
from .sampling import SamplingSettings

__all__ = [
    "EngineModel", "GenerationRequest", "GenerationStats", "LOAD_SETTINGS", "LoadPlan", "LoadReport",
    "ModelFile", "ModelInfo", "SamplingSettings", "TokenEvent", "TokenLogProb", "check_grammar",
    "generate", "list_model_files", "model_folders", "plan_load", "read_model_info", "resolve_model",
    "to_gbnf",
]
