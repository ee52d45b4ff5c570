"""Structured output: JSON schema or GBNF → a grammar string llama.cpp can sample with, checked safely.

llama.cpp's grammar parser can take the whole process down on some inputs (``root ::= "a"{2,1}``
makes it allocate until the OS kills it), so every grammar is first parsed in a short-lived child
process with a memory cap; only grammars that parse there reach the kernel's llama.cpp. Results are
cached by grammar text, so the check costs once per distinct grammar.
"""

from __future__ import annotations

import functools
import json
import subprocess
import sys
import textwrap

from llama_cpp.llama_grammar import JSON_GBNF, json_schema_to_gbnf

from ..config import StructuredSpec
from ..errors import ConfigError

CHECK_TIMEOUT_S = 20
CHECK_MEMORY_BYTES = 2 * 1024**3

_CHILD = textwrap.dedent("""
    import ctypes, resource, sys
    resource.setrlimit(resource.RLIMIT_AS, ({mem}, {mem}))
    import llama_cpp
    lines = []
    @llama_cpp.llama_log_callback
    def cb(level, text, ud):
        lines.append(text.decode("utf-8", "replace"))
    llama_cpp.llama_log_set(cb, ctypes.c_void_p(0))
    llama_cpp.llama_backend_init()
    params = llama_cpp.llama_model_default_params()
    params.vocab_only = True
    model = llama_cpp.llama_model_load_from_file(sys.argv[1].encode(), params)
    vocab = llama_cpp.llama_model_get_vocab(model)
    grammar = sys.stdin.buffer.read()
    smpl = llama_cpp.llama_sampler_init_grammar(vocab, grammar, b"root")
    if smpl:
        print("OK")
    else:
        errs = [l.strip() for l in "".join(lines).splitlines() if "error" in l or "parse" in l or "grammar" in l]
        print("ERR " + (errs[0] if errs else "the grammar does not parse"))
""")


def to_gbnf(spec: StructuredSpec) -> str | None:
    """The GBNF grammar for a structured-output request, or ``None`` when there is none."""
    if spec is None or spec.type == "none":
        return None
    if spec.type == "gbnf":
        return spec.gbnf_grammar
    if not spec.json_schema:
        return JSON_GBNF
    try:
        return json_schema_to_gbnf(json.dumps(spec.json_schema))
    except Exception as exc:  # the converter raises ValueError/KeyError/… on schemas it can't express
        raise ConfigError(f"structured: the JSON schema cannot be turned into a grammar: {exc}",
                          key="structured", value=spec.json_schema) from None


@functools.lru_cache(maxsize=256)
def check_grammar(grammar: str, vocab_model_path: str) -> None:
    """Parse ``grammar`` in a child process; raise :class:`ConfigError` if llama.cpp rejects or dies on it."""
    code = _CHILD.format(mem=CHECK_MEMORY_BYTES)
    try:
        proc = subprocess.run([sys.executable, "-c", code, vocab_model_path], input=grammar.encode("utf-8"),
                              capture_output=True, timeout=CHECK_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise ConfigError(f"structured: llama.cpp did not finish parsing the grammar in {CHECK_TIMEOUT_S} s",
                          key="structured") from None
    out = proc.stdout.decode("utf-8", "replace").strip()
    if proc.returncode == 0 and out == "OK":
        return
    if out.startswith("ERR "):
        raise ConfigError(f"structured: invalid grammar: {out[4:]}", key="structured")
    raise ConfigError(
        f"structured: llama.cpp crashed parsing this grammar (exit {proc.returncode}); it was not used",
        key="structured")
