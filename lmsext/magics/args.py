"""Argument handling of the magics: splitting a magic's line, ``{var}`` interpolation, ``key=value``
parsing, ``--config`` values, the names ``--out`` may store into (the settings flags: :mod:`.flags`).
Pure functions; errors are IPython ``UsageError``s (shown by the magics as one red line).
"""

from __future__ import annotations

import ast
import json
import re
import string
import sys
from typing import Any, Mapping

from IPython.core.error import UsageError
from IPython.utils.process import arg_split

from ..config.nesting import MAX_NESTING
from ..config import unescape  # noqa: F401  (re-exported: the one definition is lmsext.config.unescape)
from .suggestions import flag_hint

_VAR_REF = re.compile(r"^\{\s*([A-Za-z_][\w]*(?:\.[A-Za-z_]\w*)*)\s*\}$")
_KEY = re.compile(r"\s*([A-Za-z_][\w.]*)\s*=")
#: Longest magic line parse_args splits (IPython's arg_split, like shlex, is quadratic in the line's length).
MAX_LINE_CHARS = 100_000
_OPENERS = "[{("


def parse_args(magic: Any, line: str):
    """Parse a magic's line with its ``magic_arguments`` parser, splitting like a POSIX shell (quotes
    group and are removed: ``--system "Be terse"``); every problem becomes a UsageError. Lines longer
    than :data:`MAX_LINE_CHARS` are refused (splitting costs quadratic time: 2 MB took a minute)."""
    if len(line) > MAX_LINE_CHARS:
        raise UsageError(f"the magic's line is {len(line):,} characters; at most {MAX_LINE_CHARS:,} (keep long "
                         "values in a notebook variable)")
    try:
        argv = arg_split(line, posix=True, strict=True)
    except ValueError as exc:  # unbalanced quotes
        raise UsageError(f"cannot split the arguments: {exc}") from None
    try:
        return magic.parser.parse_args(argv)
    except UsageError as exc:  # a mistyped flag: the nearest one, on the same line
        hint = flag_hint(str(exc), magic.parser)
        if hint is None:
            raise
        raise UsageError(f"{exc}; {hint}") from None


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
        except Exception as exc:  # a property or __getattr__ of the user's object that raises
            raise UsageError(f"{what} {name!r}: reading .{attr} failed: {_exception_line(exc)}") from None
    return value


def config_value(text: str, namespace: Mapping[str, Any]) -> Any:
    """``--config``: a JSON object, or ``{var}`` naming a dict (or config object) in the notebook."""
    if _VAR_REF.match(text.strip()):
        return lookup(text, namespace, "--config")
    value = parse_json(text, "--config")
    if not isinstance(value, dict):
        raise UsageError(f"--config: must be a JSON object, got {type(value).__name__}")
    return value


def parse_json(text: str, what: str) -> Any:
    """``json.loads(text)``; every failure (syntax, nesting too deep, a number too long) is one UsageError."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{what}: not a JSON object ({exc.msg} at column {exc.colno}) and not a "
                         "{variable} reference") from None
    except RecursionError:
        raise UsageError(f"{what}: nested too deeply (at most {MAX_NESTING} levels)") from None
    except ValueError as exc:  # an integer beyond Python's digit limit for str -> int
        raise UsageError(f"{what}: {_number_problem(exc)}") from None


def _number_problem(exc: ValueError) -> str:
    """``Exceeds the limit (4300 digits) … use sys.set_int_max_str_digits()`` → a line without the advice."""
    digits = re.search(r"limit \((\d+) digits\)", str(exc))
    if digits:
        return f"a number has more than {int(digits.group(1)):,} digits"
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


class _NamespaceFormatter(string.Formatter):
    """``str.format`` over the user namespace that says which name is missing (``field``: the one in hand)."""

    field = ""

    def get_field(self, field_name: str, args: Any, kwargs: Any) -> Any:
        self.field = field_name
        return super().get_field(field_name, args, kwargs)

    def get_value(self, key: Any, args: Any, kwargs: Any) -> Any:
        if isinstance(key, int):
            raise UsageError("'{}' in the text: name a variable inside the braces, or write {{ }} for literal braces")
        if key not in kwargs:
            raise UsageError(f"{{{key}}} in the text: no variable {key!r} in the notebook "
                             "(write {{ and }} for literal braces)")
        return kwargs[key]


def interpolate(text: str, namespace: Mapping[str, Any]) -> str:
    """Replace ``{var}`` (also ``{obj.attr}``, ``{d[k]}``, ``{x:.2f}``) from ``namespace``; ``{{`` → ``{``."""
    # Python's own string.Formatter, not IPython's shell.var_expand: measured on IPython 8, var_expand
    # ("{nope} and {name}") returns the text untouched (a typo'd name silently reaches the model, and the
    # good {name} is not filled either), it also expands $price (a prompt's "$word"), and its
    # FullEvalFormatter reads {d[k]} as Python (NameError: k) where str.format means d["k"].
    formatter = _NamespaceFormatter()
    try:
        return formatter.vformat(text, (), namespace)
    except UsageError:
        raise
    except RecursionError:
        raise UsageError("cannot fill in {variables} in the text: nested too deeply") from None
    except Exception as exc:  # the variable's own __format__/__str__/__getattr__ may raise anything
        where = f"{{{formatter.field}}}: " if formatter.field else ""
        raise UsageError(f"cannot fill in {{variables}} in the text: {where}{_exception_line(exc)} "
                         "(write {{ and }} for literal braces)") from None


def _exception_line(exc: BaseException) -> str:
    """``Type: first line of the message``, whatever the exception's ``__str__`` does."""
    try:
        text = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
    except Exception:
        text = ""
    if isinstance(exc, ValueError) and "sys.set_int_max_str_digits" in text:
        return _number_problem(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def literal(text: str) -> Any:
    """A ``key=value`` value: a Python literal, else JSON (true/false/null), else the text itself."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        pass
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        pass
    if re.fullmatch(r"[+-]?\d+", text):  # only a number beyond Python's digit limit gets here
        raise UsageError(f"a number of {len(text.lstrip('+-')):,} digits (at most {sys.get_int_max_str_digits():,})")
    if text[:1] in _OPENERS or text[:1] in "'\"":
        raise UsageError(f"{text[:40]!r}: not a valid value (an unclosed bracket or quote?); "
                         "quote text that starts with one")
    return text


def key_values(text: str) -> dict[str, Any]:
    """Parse ``temperature=0.3 maxTokens=40 stop=["a b", "c"]`` into a dict.

    Each value runs to the first whitespace outside quotes and brackets (so lists and quoted strings may
    contain spaces) and is a Python literal, else JSON (true/false/null), else the word as a string.
    One pass over the line: a 40 KB line of ``a=1 a=1 …`` used to try every longer stretch for every key.
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
            raise UsageError(f"expected key=value, got {word[:40]!r}")
        key, start = m.group(1), m.end()
        while start < n and text[start].isspace():
            start += 1
        end = _value_end(text, start)
        chunk = text[start:end]
        if not chunk:
            raise UsageError(f"{key}= needs a value (write {key}=None to unset it)")
        try:
            value = ast.literal_eval(chunk)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            try:
                value = literal(chunk)
            except UsageError as exc:
                raise UsageError(f"{key}={exc}") from None
        if key in out:
            raise UsageError(f"{key} is given twice")
        out[key] = value
        pos = end


def _value_end(text: str, start: int) -> int:
    """Where a ``key=value`` value that starts at ``start`` ends: the first whitespace outside quotes and
    brackets (an unclosed bracket or quote runs to the end of the line)."""
    depth, quote, i, n = 0, "", start, len(text)
    while i < n:
        ch = text[i]
        if quote:
            if ch == "\\":
                i += 1
            elif ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch.isspace() and depth <= 0:
            break
        i += 1
    return i


#: Names IPython itself keeps in the user namespace (input/output history, the shell).
IPYTHON_NAMES = frozenset({"In", "Out", "get_ipython", "exit", "quit", "_", "__", "___", "_i", "_ii", "_iii",
                           "_ih", "_oh", "_dh", "_sh", "_exit_code"})
_HISTORY_NAME = re.compile(r"^_(i|ii|iii)?\d+$")


def check_variable_name(name: Any, what: str) -> str:
    """``name`` if a magic may store a value under it in the user namespace; else one UsageError.

    Refused: what is not an identifier, Python keywords, dunder names (``__builtins__``, ``__name__``),
    the names of Python's builtins (``print``, ``list``) and the names IPython keeps there (``In``,
    ``Out``, ``_``, ``_i3``, ``get_ipython``, ``exit``): overwriting them breaks every later cell.
    """
    import builtins
    import keyword
    text = name if isinstance(name, str) else repr(name)
    shown = repr(text[:40] + ("…" if len(text) > 40 else ""))
    if not isinstance(name, str) or not name.isidentifier():
        raise UsageError(f"{what} {shown}: must be a variable name")
    if name in IPYTHON_NAMES or _HISTORY_NAME.match(name):
        raise UsageError(f"{what} {shown}: IPython keeps its history or the shell under that name; "
                         "choose another variable name")
    if keyword.iskeyword(name):
        raise UsageError(f"{what} {shown}: is a Python keyword; choose another variable name")
    if name.startswith("__") and name.endswith("__"):
        raise UsageError(f"{what} {shown}: dunder names are Python's own; choose another variable name")
    if hasattr(builtins, name):
        raise UsageError(f"{what} {shown}: would hide Python's builtin {name}; choose another variable name")
    return name


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


__all__ = ["IPYTHON_NAMES", "check_variable_name", "config_value", "interpolate",
           "key_values", "literal", "lookup", "parse_args", "unescape",
           "value_goes_to_displayhook"]
