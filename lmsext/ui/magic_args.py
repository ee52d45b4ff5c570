"""Argument handling of the magics: flag → LM Studio config key tables, ``{var}`` interpolation,
``key=value`` parsing, ``--config`` values. Pure functions; errors are IPython ``UsageError``s or the
config package's ``ConfigError``s (both shown by the magics as one red line).
"""

from __future__ import annotations

import ast
import json
import re
import string
from typing import Any, Mapping

from IPython.core.error import UsageError
from IPython.utils.process import arg_split

from ..config import unescape  # noqa: F401  (re-exported: the one definition is lmsext.config.unescape)
from ..errors import ConfigError

#: ``%lm_load`` flag (argparse dest) → LoadModelConfig key.
LOAD_FLAGS = {
    "context_length": "context_length",
    "gpu": "gpu",
    "eval_batch_size": "eval_batch_size",
    "flash_attention": "flash_attention",
    "num_experts": "num_experts",
    "offload_kv_cache_to_gpu": "offload_kv_cache_to_gpu",
    "seed": "seed",
    "k_cache": "llama_k_cache_quantization_type",
    "v_cache": "llama_v_cache_quantization_type",
    "mmap": "try_mmap",
}

#: ``%%lm_respond`` / ``%%lm_complete`` flag (argparse dest) → PredictionConfig key.
PREDICTION_FLAGS = {
    "temperature": "temperature",
    "max_tokens": "max_tokens",
    "top_k": "top_k_sampling",
    "top_p": "top_p_sampling",
    "min_p": "min_p_sampling",
    "repeat_penalty": "repeat_penalty",
    "seed": "seed",
    "stop": "stop_strings",
    "probs": "log_probs",
}

_VAR_REF = re.compile(r"^\{\s*([A-Za-z_][\w]*(?:\.[A-Za-z_]\w*)*)\s*\}$")
_KEY = re.compile(r"\s*([A-Za-z_][\w.]*)\s*=")
def parse_args(magic: Any, line: str):
    """Parse a magic's line with its ``magic_arguments`` parser, splitting like a POSIX shell (quotes
    group and are removed: ``--system "Be terse"``); every problem becomes a UsageError."""
    try:
        argv = arg_split(line, posix=True, strict=True)
    except ValueError as exc:  # unbalanced quotes
        raise UsageError(f"cannot split the arguments: {exc}") from None
    return magic.parser.parse_args(argv)


def gpu_value(text: str) -> str | float:
    """argparse type of ``--gpu``: ``off``, ``max`` or a number (the range is checked by the config)."""
    low = text.strip().lower()
    if low in ("off", "max"):
        return low
    try:
        return float(low)
    except ValueError:
        raise UsageError(f"--gpu {text!r}: must be off, max or a number from 0 to 1") from None


def flag_values(args: Any, table: Mapping[str, str]) -> dict[str, Any]:
    """``{config_key: value}`` for every flag of ``table`` that was given (not None)."""
    return {key: getattr(args, dest) for dest, key in table.items() if getattr(args, dest, None) is not None}


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
    flag = next((dest for dest, k in table.items() if k == base), None)
    message = str(exc)
    if flag is None or not message.startswith(f"{key}="):
        return exc
    new = ConfigError(f"--{flag.replace('_', '-')} {message[len(key) + 1:]}", key=exc.key, value=exc.value,
                      allowed=exc.allowed)
    return new


def lookup(name: str, namespace: Mapping[str, Any], what: str) -> Any:
    """The value of ``name`` (``x`` or ``x.attr``, braces optional) in the user namespace."""
    m = _VAR_REF.match(name.strip()) or re.match(r"^\s*([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)\s*$", name)
    if not m:
        raise UsageError(f"{what} {name!r}: must name a variable of the notebook")
    first, *rest = m.group(1).split(".")
    if first not in namespace:
        raise UsageError(f"{what} {name!r}: no variable {first!r} in the notebook")
    value = namespace[first]
    for attr in rest:
        try:
            value = getattr(value, attr)
        except AttributeError:
            raise UsageError(f"{what} {name!r}: {type(value).__name__} has no attribute {attr!r}") from None
    return value


def config_value(text: str, namespace: Mapping[str, Any]) -> Any:
    """``--config``: a JSON object, or ``{var}`` naming a dict (or config object) in the notebook."""
    if _VAR_REF.match(text.strip()):
        return lookup(text, namespace, "--config")
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"--config: not a JSON object ({exc.msg} at column {exc.colno}) and not a "
                         "{variable} reference") from None
    if not isinstance(value, dict):
        raise UsageError(f"--config: must be a JSON object, got {type(value).__name__}")
    return value


class _NamespaceFormatter(string.Formatter):
    """``str.format`` over the user namespace that says which name is missing."""

    def get_value(self, key: Any, args: Any, kwargs: Any) -> Any:
        if isinstance(key, int):
            raise UsageError("'{}' in the text: name a variable inside the braces, or write {{ }} for literal braces")
        if key not in kwargs:
            raise UsageError(f"{{{key}}} in the text: no variable {key!r} in the notebook "
                             "(write {{ and }} for literal braces)")
        return kwargs[key]


def interpolate(text: str, namespace: Mapping[str, Any]) -> str:
    """Replace ``{var}`` (also ``{obj.attr}``, ``{d[k]}``, ``{x:.2f}``) from ``namespace``; ``{{`` → ``{``."""
    try:
        return _NamespaceFormatter().vformat(text, (), namespace)
    except UsageError:
        raise
    except (ValueError, IndexError, KeyError, AttributeError, TypeError) as exc:
        raise UsageError(f"cannot fill in {{variables}} in the text: {exc} (write {{{{ and }}}} for literal braces)") from None


def literal(text: str) -> Any:
    """A ``key=value`` value: a Python literal, else JSON (true/false/null), else the text itself."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        pass
    try:
        return json.loads(text)
    except ValueError:
        return text


def key_values(text: str) -> dict[str, Any]:
    """Parse ``temperature=0.3 maxTokens=40 stop=["a b", "c"]`` into a dict.

    Each value is the longest stretch up to a whitespace boundary that is a Python literal (so lists
    and quoted strings may contain spaces), else the next word as a string.
    """
    out: dict[str, Any] = {}
    pos, n = 0, len(text)
    while True:
        while pos < n and text[pos].isspace():
            pos += 1
        if pos >= n:
            return out
        m = _KEY.match(text, pos)
        if not m:
            word = text[pos:].split(None, 1)[0]
            raise UsageError(f"expected key=value, got {word!r}")
        key, start = m.group(1), m.end()
        ends = [i for i in range(start + 1, n) if text[i].isspace() and not text[i - 1].isspace()] + [n]
        value: Any = None
        end = None
        for candidate in reversed(ends):
            chunk = text[start:candidate].strip()
            if not chunk:
                continue
            try:
                value = ast.literal_eval(chunk)
                end = candidate
                break
            except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
                continue
        if end is None:
            rest = text[start:].lstrip()
            word = rest.split(None, 1)[0] if rest.strip() else ""
            end = start + (len(text[start:]) - len(rest)) + len(word)
            value = literal(word) if word else None
            if not word:
                raise UsageError(f"{key}= needs a value (write {key}=None to unset it)")
        if key in out:
            raise UsageError(f"{key} is given twice")
        out[key] = value
        pos = end


def value_goes_to_displayhook(code: str | None, mode: str, magic_name: str, line: str) -> bool:
    """True when the line magic call ``%magic_name line`` is what the displayhook will show for the cell
    ``code`` (IPython-transformed source) under ``ast_node_interactivity`` ``mode``: then the magic
    returns None instead of its value, so nothing is shown twice. Any doubt means False.
    """
    try:
        body = ast.parse(code).body if code else []
    except SyntaxError:
        return False
    if not body or mode == "none":
        return False
    nodes = body if mode == "all" else body[-1:]

    def is_call(node: Any) -> bool:
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr == "run_line_magic" and len(node.args) >= 2):
            return False
        name, arg = node.args[0], node.args[1]
        return (isinstance(name, ast.Constant) and name.value == magic_name
                and isinstance(arg, ast.Constant) and isinstance(arg.value, str) and arg.value.strip() == line.strip())

    for node in nodes:
        if isinstance(node, ast.Expr) and is_call(node.value):
            return True
        if mode == "last_expr_or_assign" and isinstance(node, ast.Assign) and is_call(node.value):
            return True
    return False


__all__ = ["LOAD_FLAGS", "PREDICTION_FLAGS", "config_value", "flag_values", "gpu_value", "interpolate",
           "key_values", "literal", "lookup", "parse_args", "parse_flags", "reword_flag_error", "unescape",
           "value_goes_to_displayhook"]
