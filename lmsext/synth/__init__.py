"""Small, valid GGUF models generated at test/notebook/benchmark time (the project ships one model file:
the embedded default, ``lmsext/models/stories260K.gguf``; every other test model is generated here).

``write_model`` writes a llama-architecture GGUF (random weights, or weights and tokenizer derived
from a real tiny model such as stories260K); ``chatml_model``, ``moe_model`` and ``random_model``
are cached builders; ``identity_target`` and ``perturbed_target`` are speculative-decoding targets for
which stories260K is a perfect or a 60-80 % draft (``_pairs.py``). CLI: ``python -m lmsext.synth {chatml,moe,random} OUT.gguf``.
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
from ._pairs import identity_target, perturbed_target, write_layered_target
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
    "identity_target",
    "moe_model",
    "random_model",
    "perturbed_target",
    "random_shape",
    "read_hparams",
    "write_layered_target",
    "write_model",
]
