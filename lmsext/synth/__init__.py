"""Small, valid GGUF models generated at test/notebook/benchmark time (the project ships one model file:
the embedded default, ``lmsext/models/stories260K.gguf``; every other test model is generated here).

``write_model`` writes a llama-architecture GGUF (random weights, or weights and tokenizer derived
from a real tiny model such as stories260K); ``chatml_model``, ``moe_model`` and ``random_model``
are cached builders. CLI: ``python -m lmsext.synth {chatml,moe,random} OUT.gguf``.
This package never imports llama_cpp.
"""

from ._builders import (
    CHATML_TEMPLATE,
    FORMAT_VERSION,
    cache_dir,
    chatml_model,
    count_params,
    find_stories,
    moe_model,
    random_model,
    random_shape,
)
from ._model import default_n_ff, read_hparams, write_model
from ._vocab import IM_END, IM_START, builtin_vocab

__all__ = [
    "CHATML_TEMPLATE",
    "FORMAT_VERSION",
    "IM_END",
    "IM_START",
    "builtin_vocab",
    "cache_dir",
    "chatml_model",
    "count_params",
    "default_n_ff",
    "find_stories",
    "moe_model",
    "random_model",
    "random_shape",
    "read_hparams",
    "write_model",
]
