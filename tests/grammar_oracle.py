"""Which strings a GBNF grammar accepts, decided by llama.cpp's own grammar sampler in a child process.

``GrammarOracle(vocab_model_path).accepts(grammar, ["12", "-3", ...])`` → one bool per string. The
child (``python grammar_oracle.py MODEL``) loads the model's vocabulary only and answers JSON-line
requests: for each string it resets a ``llama_sampler_init_grammar`` sampler, feeds the string one
character at a time as single-character tokens — asking the sampler (``llama_sampler_apply``) whether
each token is allowed before accepting it — and finally asks whether end-of-generation is allowed,
which llama.cpp permits only once the grammar is complete. A string is accepted iff every character
and the end are allowed: exactly what sampling with that grammar could produce. A grammar llama.cpp
does not parse is an error; the child runs apart so a crash in llama.cpp fails the test, not pytest.
"""

from __future__ import annotations

import json
import subprocess
import sys

_CHILD = r'''
import ctypes, json, sys
import llama_cpp as L

logs = []
@L.llama_log_callback
def _log(level, text, ud):
    logs.append(text.decode("utf-8", "replace"))
L.llama_log_set(_log, ctypes.c_void_p(0))
L.llama_backend_init()
params = L.llama_model_default_params()
params.vocab_only = True
model = L.llama_model_load_from_file(sys.argv[1].encode(), params)
vocab = L.llama_model_get_vocab(model)
eos = L.llama_vocab_eos(vocab)

# one token whose text is exactly each single character (stories260K has a byte token for every byte)
char_token = {}
buf = ctypes.create_string_buffer(64)
for tok in range(L.llama_vocab_n_tokens(vocab)):
    n = L.llama_token_to_piece(vocab, tok, buf, len(buf), 0, False)
    if n == 1:
        char_token.setdefault(buf.raw[:1].decode("latin-1"), tok)

def allowed(smpl, tok):
    data = (L.llama_token_data * 1)(L.llama_token_data(tok, 0.0, 0.0))
    arr = L.llama_token_data_array(data, 1, -1, False)
    L.llama_sampler_apply(smpl, ctypes.byref(arr))
    return data[0].logit != float("-inf")

def accepts(smpl, text):
    L.llama_sampler_reset(smpl)
    for ch in text:
        tok = char_token.get(ch)
        if tok is None:
            raise ValueError(f"no single-character token for {ch!r}")
        if not allowed(smpl, tok):
            return False
        L.llama_sampler_accept(smpl, tok)
    return allowed(smpl, eos)

print("READY", flush=True)
for line in sys.stdin:
    req = json.loads(line)
    logs.clear()
    smpl = L.llama_sampler_init_grammar(vocab, req["grammar"].encode(), b"root")
    if not smpl:
        print(json.dumps({"error": "".join(logs)[-500:] or "grammar does not parse"}), flush=True)
        continue
    try:
        print(json.dumps({"accepted": [accepts(smpl, s) for s in req["inputs"]]}), flush=True)
    except Exception as exc:
        print(json.dumps({"error": repr(exc)}), flush=True)
    finally:
        L.llama_sampler_free(smpl)
'''


class GrammarOracle:
    """A child process answering "does llama.cpp's grammar engine accept this string?"."""

    def __init__(self, vocab_model_path: str) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", _CHILD, str(vocab_model_path)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, bufsize=1)
        ready = self.proc.stdout.readline().strip()
        if ready != "READY":
            raise RuntimeError(f"grammar oracle did not start (exit {self.proc.poll()}): {ready!r}")

    def accepts(self, grammar: str, inputs: list[str]) -> list[bool]:
        """For each input, whether the grammar accepts it whole (raises if llama.cpp rejects the grammar)."""
        self.proc.stdin.write(json.dumps({"grammar": grammar, "inputs": list(inputs)}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"grammar oracle died (exit {self.proc.wait()}) on grammar:\n{grammar}")
        answer = json.loads(line)
        if "error" in answer:
            raise AssertionError(f"llama.cpp rejected the grammar: {answer['error']}\n{grammar}")
        return answer["accepted"]

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=30)
