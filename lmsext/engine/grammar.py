"""Structured output: JSON schema or GBNF → a grammar string llama.cpp can sample with, checked safely.

llama.cpp's grammar parser can take the whole process down on some inputs (``root ::= "a"{2,1}``
makes it allocate until the OS kills it), so every grammar is first parsed in a short-lived child
process with a memory cap; only grammars that parse there reach the kernel's llama.cpp. Results are
cached by grammar text, so the check costs once per distinct grammar.

JSON schemas become grammars through llama-cpp-python's port of llama.cpp's converter, extended
here: integer bounds (``minimum``/``maximum``/``exclusiveMinimum``/``exclusiveMaximum``, pydantic's
``ge``/``le``/``gt``/``lt``) are enforced digit by digit in the grammar (:func:`integer_range_gbnf`).
Bounds on non-integer numbers are not expressible that way: :func:`~lmsext.config.output.schema_violation` checks them on
the parsed output after generation, and a violation becomes the result's ``parse_error``.
"""

from __future__ import annotations

import functools
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
from collections.abc import Mapping
from typing import Any

from llama_cpp.llama_grammar import JSON_GBNF, RESERVED_NAMES, SchemaConverter

from ..config import StructuredSpec
from ..config.output import parse_output, schema_violation  # noqa: F401  (moved to lmsext.config.output)
from ..config.structured import BOUND_WORDS, INTEGER_DIGITS, MAX_BOUND_DIGITS, integer_bounds
from ..errors import ConfigError

CHECK_TIMEOUT_S = 20
CHECK_MEMORY_BYTES = 2 * 1024**3
"""Address-space cap of the grammar-check child (RLIMIT_AS)."""

_PARSING = "PARSING"  # the child prints this once the vocabulary is loaded, right before llama.cpp parses
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
    if not model:
        print("NOVOCAB", flush=True)
        sys.exit(0)
    vocab = llama_cpp.llama_model_get_vocab(model)
    grammar = sys.stdin.buffer.read()
    print("{parsing}", flush=True)
    smpl = llama_cpp.llama_sampler_init_grammar(vocab, grammar, b"root")
    if smpl:
        print("OK")
    else:
        errs = [l.strip() for l in "".join(lines).splitlines() if "error" in l or "parse" in l or "grammar" in l]
        print("ERR " + (errs[0] if errs else "the grammar does not parse"))
""")
# What a process that hit its address-space cap leaves on stderr (glibc, libstdc++, CPython).
_OUT_OF_MEMORY_SIGNS = ("cannot allocate memory", "std::bad_alloc", "memoryerror", "out of memory")


# ------------------------------------------------------------------------------ JSON schema -> GBNF


def _digits(low: int, high: int | None = None) -> str:
    """``low`` to ``high`` (default: exactly ``low``) decimal digits; "" for none."""
    high = low if high is None else high
    if high == 0:
        return ""
    if low == high:
        return "[0-9]" if low == 1 else f"[0-9]{{{low}}}"
    return f"[0-9]{{{low},{high}}}"


def _digit_class(low: str, high: str) -> str:
    return f'"{low}"' if low == high else f"[{low}-{high}]"


def _group(alternation: str) -> str:
    return f"({alternation})" if "|" in alternation else alternation


def _same_length_range(low: str, high: str) -> str:
    """GBNF for every digit string of ``len(low)`` characters from ``low`` to ``high`` (equal length, low <= high).

    Walks the common prefix, then splits on the first differing digit: that digit of ``low`` followed
    by anything from the rest of ``low`` up to 9…9, the digits strictly between followed by any
    digits, and that digit of ``high`` followed by 0…0 up to the rest of ``high``.
    """
    i = 0
    while i < len(low) and low[i] == high[i]:
        i += 1
    prefix = f'"{low[:i]}"' if i else ""
    if i == len(low):
        return prefix
    a, b, rest_low, rest_high = low[i], high[i], low[i + 1:], high[i + 1:]
    n = len(rest_low)
    low_is_floor, high_is_ceiling = rest_low == "0" * n, rest_high == "9" * n
    first = a if low_is_floor else chr(ord(a) + 1)
    last = b if high_is_ceiling else chr(ord(b) - 1)
    alternatives = []
    if not low_is_floor:
        alternatives.append(f'"{a}" {_group(_same_length_range(rest_low, "9" * n))}')
    if first <= last:
        alternatives.append(f"{_digit_class(first, last)} {_digits(n)}".rstrip())
    if not high_is_ceiling:
        alternatives.append(f'"{b}" {_group(_same_length_range("0" * n, rest_high))}')
    body = " | ".join(alternatives)
    return f"{prefix} {_group(body)}" if prefix else body


def _natural_range(low: int, high: int) -> str:
    """GBNF for the decimal numerals (no leading zeros) of ``low`` … ``high`` (0 <= low <= high)."""
    lo, hi = str(low), str(high)
    if len(lo) == len(hi):
        return _same_length_range(lo, hi)
    parts = []
    shortest, longest = len(lo), len(hi)  # lengths whose numerals are all in range
    if lo != "1" + "0" * (len(lo) - 1):
        parts.append(_same_length_range(lo, "9" * len(lo)))
        shortest += 1
    if hi != "9" * len(hi):
        longest -= 1
    if shortest <= longest:
        parts.append(f"[1-9] {_digits(shortest - 1, longest - 1)}".rstrip())
    if hi != "9" * len(hi):
        parts.append(_same_length_range("1" + "0" * (len(hi) - 1), hi))
    return " | ".join(parts)


def integer_range_gbnf(low: int | None, high: int | None) -> str:
    """A GBNF alternation matching exactly the JSON integers from ``low`` to ``high`` (None = open).

    Canonical numerals only (no leading zeros, no ``-0``). An open side stops at
    ``max(16, digits of the bounds)`` digits, like llama.cpp's plain integer rule stops at 16; an
    upper bound of more than 100 digits counts as open (a lower one is refused by the config check).
    """
    limit = 10**MAX_BOUND_DIGITS
    if high is not None and high >= limit:
        high = None
    if low is not None and low <= -limit:
        low = None
    digits = max([INTEGER_DIGITS] + [len(str(abs(b))) for b in (low, high) if b is not None])
    widest = 10**digits - 1
    low = -widest if low is None else low
    high = widest if high is None else high
    if low > high:
        raise ValueError(f"empty integer range {low}..{high}")
    parts = []
    if low < 0:
        parts.append(f'"-" {_group(_natural_range(max(1, -high), -low))}')
    if high >= 0:
        parts.append(_natural_range(max(0, low), high))
    return " | ".join(parts)


_BEFORE_TYPE = ("$ref", "oneOf", "anyOf", "const", "enum")  # keywords the converter looks at before the type


class _BoundedConverter(SchemaConverter):
    """llama-cpp-python's converter, plus integer ranges for ``"type": "integer"`` with bounds and local
    ``$ref`` resolution that works for recursive schemas."""

    def resolve_refs(self, schema: Any, url: str) -> Any:
        """Register every local ``$ref`` (``#/$defs/Node``) under its own spelling, wherever it is.

        The base class renames refs to ``<url>#/…`` and does not look inside a node that has a ``$ref``
        nor inside the targets, so a recursive schema (a pydantic model with a ``list[Node]`` field)
        failed with ``KeyError: '#/$defs/Node'``. Remote refs are never fetched. The schema's nesting is
        bounded before it gets here (config.nesting), so the walk is too.
        """
        stack = [schema]
        while stack:
            node = stack.pop()
            if isinstance(node, list):
                stack.extend(node)
                continue
            if not isinstance(node, dict):
                continue
            ref = node.get("$ref")
            if ref is not None and ref not in self._refs:
                if not isinstance(ref, str) or not ref.startswith("#/"):
                    raise ValueError(f"Unsupported ref {ref}")
                target: Any = schema
                for sel in ref[2:].split("/"):
                    sel = sel.replace("~1", "/").replace("~0", "~")  # JSON pointer escapes
                    if isinstance(target, dict) and sel in target:
                        target = target[sel]
                    elif isinstance(target, list) and sel.isdigit() and int(sel) < len(target):
                        target = target[int(sel)]
                    else:
                        raise ValueError(f"Error resolving ref {ref}: {sel} not in the schema")
                self._refs[ref] = target
            stack.extend(node.values())
        return schema

    def visit(self, schema: Any, name: str) -> str:
        if isinstance(schema, Mapping) and any(k in schema for k in BOUND_WORDS) and not any(
                k in schema for k in _BEFORE_TYPE):
            kind = schema.get("type")
            rule = name + "-" if name in RESERVED_NAMES else name or "root"
            if kind == "integer":
                low, high = integer_bounds(schema)
                if low is not None or high is not None:
                    return self._add_rule(rule, f"({integer_range_gbnf(low, high)}) space")
            elif isinstance(kind, list) and "integer" in kind:  # keep the bounds on the integer branch
                return self._add_rule(rule, self._generate_union_rule(name, [{**schema, "type": t} for t in kind]))
        return super().visit(schema, name)


def json_schema_to_gbnf(schema: Mapping[str, Any]) -> str:
    """The GBNF grammar for a JSON schema (integer bounds enforced)."""
    converter = _BoundedConverter(prop_order={}, allow_fetch=False, dotall=False, raw_pattern=False)
    resolved = converter.resolve_refs(json.loads(json.dumps(schema)), "")
    converter.visit(resolved, "")
    return converter.format_grammar()


def to_gbnf(spec: StructuredSpec) -> str | None:
    """The GBNF grammar for a structured-output request, or ``None`` when there is none."""
    if spec is None or spec.type == "none":
        return None
    if spec.type == "gbnf":
        return spec.gbnf_grammar
    if not spec.json_schema:
        return JSON_GBNF
    try:
        return json_schema_to_gbnf(spec.json_schema)
    except Exception as exc:  # the converter raises ValueError/KeyError/… on schemas it can't express
        detail = _converter_detail(exc)
        raise ConfigError(f"structured: the JSON schema cannot be turned into a grammar: {detail}",
                          key="structured", value=spec.json_schema) from None


@functools.lru_cache(maxsize=256)
def _converter_detail(exc: BaseException) -> str:
    """The converter's reason in the schema's own terms: its internal document name (``stdin#/$defs/x``:
    the schema is ``#``) and the schema dump it appends to a failed ``$ref`` are left out."""
    if isinstance(exc, RecursionError):
        return "the schema nests or refers to itself too deeply"
    detail = " ".join(str(exc).split()) or type(exc).__name__
    detail = detail.replace("stdin#", "#")
    ref = re.match(r"Error resolving ref (\S+): (\S+) not in ", detail)
    if ref:
        return f"$ref {ref.group(1)!r} points to nothing: the schema has no {ref.group(2)!r}"
    ref = re.match(r"Unsupported ref (\S+)", detail)
    if ref:
        return (f"$ref {ref.group(1)!r} is not supported: use a local reference such as '#/$defs/NAME' "
                "(no self-reference to the root, no URLs)")
    return detail if len(detail) <= 200 else detail[:197] + "..."


def check_grammar(grammar: str, vocab_model_path: str) -> None:
    """Parse ``grammar`` in a child process; raise :class:`ConfigError` if llama.cpp rejects or dies on it.

    The child's address space is capped at :data:`CHECK_MEMORY_BYTES`. How it ended decides the
    message: a parse error, the cap (its peak memory reached half the cap, or it left an
    out-of-memory message), a timeout, or a crash named by its signal or exit code.
    """
    code = _CHILD.format(mem=CHECK_MEMORY_BYTES, parsing=_PARSING)
    status, peak, out, err = _run_child([sys.executable, "-c", code, vocab_model_path], grammar.encode("utf-8"))
    if status is None:
        raise ConfigError(f"structured: llama.cpp did not finish parsing the grammar in {CHECK_TIMEOUT_S} s; "
                          "it was not used", key="structured")
    lines = out.splitlines()
    if status == 0 and lines[-1:] == ["OK"]:
        return
    if status == 0 and lines and lines[-1].startswith("ERR "):
        raise ConfigError(f"structured: invalid grammar: {lines[-1][4:]}", key="structured")
    if status == 0 and lines == ["NOVOCAB"]:
        raise ConfigError(f"structured: cannot check the grammar: llama.cpp could not read the vocabulary of "
                          f"{vocab_model_path}", key="structured")
    raise ConfigError(_death_message(status, peak, err, parsing=_PARSING in lines), key="structured")


def _death_message(status: int, peak: int, stderr: str, *, parsing: bool) -> str:
    """Why the check child died, in one line: the memory cap, or the signal / exit code."""
    cap_mib = CHECK_MEMORY_BYTES // 2**20
    text = stderr.lower()
    if peak >= CHECK_MEMORY_BYTES // 2 or any(sign in text for sign in _OUT_OF_MEMORY_SIGNS):
        if not parsing:
            return f"structured: cannot check the grammar: loading the vocabulary needs more than {cap_mib} MiB"
        return (f"structured: the grammar needs more than {cap_mib} MiB to parse — probably a repetition like "
                f'"a"{{2,1}} (max below min) or a huge bound; it was not used')
    if status == -signal.SIGKILL:
        how = "SIGKILL: killed from outside, perhaps by the system's out-of-memory killer"
    elif status < 0:
        try:
            how = f"{signal.Signals(-status).name}, {(signal.strsignal(-status) or '').lower()}".rstrip(", ")
        except ValueError:
            how = f"signal {-status}"
    else:
        how = f"exit code {status}"
    where = "parsing this grammar" if parsing else "loading the vocabulary to check the grammar"
    last = next((line.strip() for line in reversed(stderr.splitlines()) if line.strip()), "")
    detail = f": {last[:120]}" if last else ""
    return f"structured: llama.cpp crashed {where} ({how}{detail}); it was not used"


def _run_child(argv: list[str], stdin: bytes) -> tuple[int | None, int, str, str]:
    """Run ``argv`` with ``stdin``; ``(exit status or -signal or None on timeout, peak RSS bytes, stdout, stderr)``.

    Waits with ``os.wait4`` to learn the child's own peak memory (files, not pipes, carry its
    input and output, so nothing can block). On timeout or an interrupt the child is killed.
    """
    with tempfile.TemporaryFile() as fin, tempfile.TemporaryFile() as fout, tempfile.TemporaryFile() as ferr:
        fin.write(stdin)
        fin.seek(0)
        proc = subprocess.Popen(argv, stdin=fin, stdout=fout, stderr=ferr)
        timed_out = threading.Event()

        def kill() -> None:
            timed_out.set()
            try:
                os.kill(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

        timer = threading.Timer(CHECK_TIMEOUT_S, kill)
        timer.daemon = True
        timer.start()
        try:
            _, raw_status, usage = os.wait4(proc.pid, 0)
        except BaseException:  # KeyboardInterrupt in the kernel: do not leave the child running
            timer.cancel()
            proc.kill()
            proc.wait()
            raise
        finally:
            timer.cancel()
        proc.returncode = os.waitstatus_to_exitcode(raw_status)  # reaped here: keep Popen from waiting again
        fout.seek(0)
        ferr.seek(0)
        out = fout.read().decode("utf-8", "replace")
        err = ferr.read().decode("utf-8", "replace")
    peak = usage.ru_maxrss * (1 if sys.platform == "darwin" else 1024)
    return (None if timed_out.is_set() else proc.returncode), peak, out, err
