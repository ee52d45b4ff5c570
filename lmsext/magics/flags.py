"""The magics' settings flags, and the one table each of flag → LM Studio config key, derived from them.

A flag whose argparse ``dest`` is a field of the settings model is that setting (``--context-length`` →
``context_length``); a flag named differently says ``dest="<setting>"`` (``--k-cache`` →
``llama_k_cache_quantization_type``). :data:`LOAD_FLAGS` and :data:`PREDICTION_FLAGS` are read from
these definitions, so a new flag needs one line.
"""

from __future__ import annotations

import argparse
from typing import Any, Mapping

from IPython.core.error import UsageError
from IPython.core.magic_arguments import argument

from ..config import LoadModelConfig, PredictionConfig
from ..errors import ConfigError


def gpu_value(text: str) -> str | float:
    """argparse type of ``--gpu``: ``off``, ``max`` or a number (the range is checked by the config)."""
    low = text.strip().lower()
    if low in ("off", "max"):
        return low
    try:
        return float(low)
    except ValueError:
        raise UsageError(f"--gpu {text!r}: must be off, max or a number from 0 to 1") from None


def flag_table(arguments: list[Any], settings: Any, *, skip: tuple[str, ...] = ()) -> dict[str, str]:
    """``{config key: "--flag"}`` for the ``arguments`` whose argparse ``dest`` is a field of ``settings``
    (a flag named differently from its setting says ``dest="<setting>"``); the first flag of a dest wins
    (``--mmap`` over ``--no-mmap``). ``skip``: settings whose flag value is not the setting's value."""
    parser = argparse.ArgumentParser(add_help=False)  # argparse itself says each flag's dest
    table: dict[str, str] = {}
    for decorator in arguments:
        action = parser.add_argument(*decorator.args, **decorator.kwds)
        if action.dest in settings.model_fields and action.dest not in skip:
            table.setdefault(action.dest, action.option_strings[0])
    return table


#: The flags of ``%lm_load`` that are load settings (in the order ``%lm_load?`` lists them).
LOAD_SETTING_ARGUMENTS = [
    argument("--context-length", type=int, metavar="N", help="context size in tokens (contextLength)"),
    argument("--gpu", type=gpu_value, metavar="off|max|0..1", help="share of layers offloaded to the GPU"),
    argument("--eval-batch-size", type=int, metavar="N", help="prompt tokens per batch (evalBatchSize)"),
    argument("--flash-attention", dest="flash_attention", action="store_const", const=True, default=None,
             help="use flash attention"),
    argument("--no-flash-attention", dest="flash_attention", action="store_const", const=False,
             help="do not use flash attention"),
    argument("--num-experts", type=int, metavar="N", help="experts used per token (MoE models)"),
    argument("--offload-kv-cache-to-gpu", dest="offload_kv_cache_to_gpu", action="store_const", const=True,
             default=None, help="keep the KV cache in GPU memory"),
    argument("--no-offload-kv-cache-to-gpu", dest="offload_kv_cache_to_gpu", action="store_const", const=False,
             help="keep the KV cache in RAM"),
    argument("--seed", type=int, metavar="N", help="default sampler seed of the instance"),
    argument("--k-cache", dest="llama_k_cache_quantization_type", metavar="TYPE",
             help="K cache type: f32, f16, q8_0, q4_0, q4_1, iq4_nl, q5_0, q5_1 (llamaKCacheQuantizationType)"),
    argument("--v-cache", dest="llama_v_cache_quantization_type", metavar="TYPE",
             help="V cache type, as --k-cache (quantized needs --flash-attention)"),
    argument("--mmap", dest="try_mmap", action="store_const", const=True, default=None,
             help="memory-map the model file (tryMmap)"),
    argument("--no-mmap", dest="try_mmap", action="store_const", const=False, help="read the file instead of mapping it"),
    argument("--parallel", dest="max_parallel_predictions", type=int, metavar="N",
             help="predictions decoded together, more wait in a queue (maxParallelPredictions, as lms load --parallel)"),
    argument("--unified-kv-cache", dest="use_unified_kv_cache", action="store_const", const=True, default=None,
             help="parallel predictions share one KV cache (useUnifiedKvCache, the default)"),
    argument("--no-unified-kv-cache", dest="use_unified_kv_cache", action="store_const", const=False,
             help="each of N parallel predictions gets contextLength / N tokens"),
]


def prediction_arguments(stop_help: str) -> list[Any]:
    """The flags of ``%%lm_respond`` / ``%%lm_complete`` (``stop_help``: how each magic explains ``--stop``)."""
    return [
        argument("--model", metavar="ID", help="loaded instance (or model key, loaded just in time) to use; "
                 "default: the last %%lm_load'ed model"),
        argument("--temperature", type=float, metavar="T", help="sampling temperature, 0..2"),
        argument("--max-tokens", type=int, metavar="N", help="most tokens to generate"),
        argument("--top-k", dest="top_k_sampling", type=int, metavar="K",
                 help="sample from the K most likely tokens (0 = off)"),
        argument("--top-p", dest="top_p_sampling", type=float, metavar="P",
                 help="nucleus sampling probability mass, 0<P<=1"),
        argument("--min-p", dest="min_p_sampling", type=float, metavar="P",
                 help="drop tokens less likely than P x the best"),
        argument("--repeat-penalty", type=float, metavar="R", help="penalty for repeated tokens (1 = none)"),
        argument("--seed", type=int, metavar="N", help="sampler seed (reproducible output)"),
        argument("--stop", dest="stop_strings", action="extend", nargs="+", metavar="S", help=stop_help),
        argument("--structured", metavar="VAR", help="constrain the output: a notebook variable holding a "
                 "pydantic class, a JSON schema dict or LM Studio's {'type': ...} form"),
        argument("--out", metavar="VAR", help="store the PredictionResult in this variable (it is always in _lm)"),
        argument("--probs", dest="log_probs", nargs="?", type=int, const=5, metavar="N",
                 help="show each token coloured by its probability, the top N alternatives on hover (default 5)"),
        argument("--draft", dest="draft_model", metavar="KEY",
                 help="speculative decoding: a draft model (loaded instance, key or path, loaded just in time) "
                      "or 'lookup' (prompt lookup, no second model); the stats line counts accepted draft tokens"),
        argument("--draft-tokens", dest="speculative_decoding_num_draft_tokens_exact", type=int, metavar="N",
                 help="draft exactly N tokens per step (speculativeDecodingNumDraftTokensExact; default adaptive, <= 8)"),
    ]


#: ``%lm_load`` flags → LoadModelConfig keys, ``{config key: "--flag"}`` (from the flags' own definitions).
LOAD_FLAGS = flag_table(LOAD_SETTING_ARGUMENTS, LoadModelConfig)

#: ``%%lm_respond`` / ``%%lm_complete`` flags → PredictionConfig keys (``--structured`` names a variable:
#: the magics look it up before it becomes the setting).
PREDICTION_FLAGS = flag_table(prediction_arguments(""), PredictionConfig, skip=("structured",))

def flag_values(args: Any, table: Mapping[str, str]) -> dict[str, Any]:
    """``{config_key: value}`` for every flag of ``table`` that was given (not None)."""
    return {key: getattr(args, key) for key in table if getattr(args, key, None) is not None}


def parse_flags(cls: Any, values: dict[str, Any], table: Mapping[str, str]) -> Any:
    """``cls.parse(values)``, with a ConfigError about a flag's key re-worded to name the flag."""
    try:
        return cls.parse(values)
    except ConfigError as exc:
        raise reword_flag_error(exc, table) from None


def reword_flag_error(exc: ConfigError, table: Mapping[str, str]) -> ConfigError:
    """``temperature=3.0: must be …`` → ``--temperature 3.0: must be …`` (same ConfigError fields)."""
    key = str(exc.key or "")
    base = key.split("[", 1)[0].split(".", 1)[0]
    flag = table.get(base)
    message = str(exc)
    if flag is None or not message.startswith(f"{key}="):
        return exc
    return ConfigError(f"{flag} {message[len(key) + 1:]}", key=exc.key, value=exc.value, allowed=exc.allowed)


__all__ = ["LOAD_FLAGS", "LOAD_SETTING_ARGUMENTS", "PREDICTION_FLAGS", "flag_table", "flag_values", "gpu_value",
           "parse_flags", "prediction_arguments", "reword_flag_error"]
