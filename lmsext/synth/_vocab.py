"""Tokenizer metadata for synthetic GGUF models: a built-in SentencePiece-style vocabulary,
copying ``tokenizer.*`` metadata from another GGUF, and adding ChatML special tokens."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from gguf import GGUFReader, GGUFValueType, Keys, TokenType

#: SentencePiece's space marker (U+2581).
SPACE = "\u2581"

IM_START = "<|im_start|>"
IM_END = "<|im_end|>"

# Common English words (story and chat vocabulary). Every ``▁``-prefix of each word becomes a token
# so llama.cpp's SPM bigram merger can build the whole word from single characters.
_WORDS = """
the a an and to of in is it was he she they we you I my your his her their our me him them us
that this there then than with for on at by from as be been are were will would can could should
do did does not no yes but or if so up down out into over after before about what who how why
when where which one two three some all any many much more very little big good bad new old
time day night home tree dog cat bird girl boy mom dad friend friends toy ball park sun sky water
Once upon time there lived named Lily Tom Ben Sue Max happy sad said says asked saw see look
looked like liked love loved play played want wanted went go going come came run ran help helped
Hello hello Hi hi Thank thanks please sorry okay OK The It He She They We You What How Why
user assistant system model answer question story tell write
""".split()


@dataclass
class Vocab:
    """A tokenizer as GGUF metadata: token list, scores, types, plus every other ``tokenizer.*``
    key-value (``extra``: key -> (value, value type, array sub type))."""

    tokens: list[str]
    scores: list[float]
    types: list[int]
    extra: dict[str, tuple[Any, GGUFValueType, GGUFValueType | None]] = field(default_factory=dict)

    def index(self, text: str) -> int | None:
        """Id of the token whose text is ``text``, or None."""
        try:
            return self.tokens.index(text)
        except ValueError:
            return None

    def set_u32(self, key: str, value: int) -> None:
        """Set a ``tokenizer.*`` uint32 key (a special token id)."""
        self.extra[key] = (int(value), GGUFValueType.UINT32, None)

    def set_bool(self, key: str, value: bool) -> None:
        """Set a ``tokenizer.*`` bool key."""
        self.extra[key] = (bool(value), GGUFValueType.BOOL, None)

    def set_str(self, key: str, value: str) -> None:
        """Set a ``tokenizer.*`` string key."""
        self.extra[key] = (str(value), GGUFValueType.STRING, None)

    def get(self, key: str, default: Any = None) -> Any:
        """Value of a ``tokenizer.*`` key other than tokens/scores/types."""
        item = self.extra.get(key)
        return default if item is None else item[0]

    def add_control(self, text: str) -> int:
        """Ensure ``text`` is a CONTROL token (append it if missing); return its id."""
        idx = self.index(text)
        if idx is None:
            self.tokens.append(text)
            self.scores.append(0.0)
            self.types.append(int(TokenType.CONTROL))
            return len(self.tokens) - 1
        self.types[idx] = int(TokenType.CONTROL)
        return idx


def builtin_vocab() -> Vocab:
    """The built-in SentencePiece-style ("llama") vocabulary: ``<unk>``, ``<s>``, ``</s>``, the 256
    byte-fallback tokens ``<0xNN>``, printable ASCII with and without the ``▁`` space marker, and
    every ``▁``-prefix of some common English words; ids 0/1/2 are unk/bos/eos."""
    tokens = ["<unk>", "<s>", "</s>"]
    types = [int(TokenType.UNKNOWN), int(TokenType.CONTROL), int(TokenType.CONTROL)]
    scores = [0.0, 0.0, 0.0]
    for b in range(256):
        tokens.append(f"<0x{b:02X}>")
        types.append(int(TokenType.BYTE))
        scores.append(0.0)

    pieces: list[str] = [SPACE]
    printable = [chr(c) for c in range(0x21, 0x7F)]
    pieces += printable
    pieces += [SPACE + ch for ch in printable]
    for word in _WORDS:
        w = SPACE + word
        pieces += [w[:k] for k in range(3, len(w) + 1)]  # "▁x" is already there
    seen: set[str] = set(tokens)
    for piece in pieces:
        if piece in seen:
            continue
        seen.add(piece)
        tokens.append(piece)
        types.append(int(TokenType.NORMAL))
        # SentencePiece scores are log-probabilities: earlier (more basic) pieces score higher.
        scores.append(-float(len(scores) - 259))

    vocab = Vocab(tokens, scores, types)
    vocab.set_str(Keys.Tokenizer.MODEL, "llama")
    vocab.set_u32(Keys.Tokenizer.UNK_ID, 0)
    vocab.set_u32(Keys.Tokenizer.BOS_ID, 1)
    vocab.set_u32(Keys.Tokenizer.EOS_ID, 2)
    vocab.set_bool(Keys.Tokenizer.ADD_BOS, True)
    vocab.set_bool(Keys.Tokenizer.ADD_EOS, False)
    return vocab


def pad_vocab(vocab: Vocab, n_vocab: int) -> Vocab:
    """Grow ``vocab`` to ``n_vocab`` tokens with filler NORMAL pieces (``▁w0``, ``▁w1``, …, scored
    below every real piece): the size of a real model's vocabulary (150 k+ tokens) for benchmarks,
    without changing how the built-in words tokenize."""
    seen = set(vocab.tokens)
    i = 0
    low = min(vocab.scores, default=0.0) - 1.0
    while len(vocab.tokens) < n_vocab:
        piece = f"{SPACE}w{i}"
        i += 1
        if piece in seen:
            continue
        vocab.tokens.append(piece)
        vocab.types.append(int(TokenType.NORMAL))
        vocab.scores.append(low - i)
    return vocab


def _field_value(f: Any) -> Any:
    return f.contents()


def vocab_from_gguf(path: str | os.PathLike[str]) -> Vocab:
    """Read every ``tokenizer.*`` key-value of the GGUF at ``path`` into a :class:`Vocab`."""
    reader = GGUFReader(os.fspath(path))
    fields = reader.fields
    if Keys.Tokenizer.LIST not in fields:
        raise ValueError(f"{path}: no {Keys.Tokenizer.LIST} in the GGUF metadata")
    tokens = [str(t) for t in fields[Keys.Tokenizer.LIST].contents()]
    n = len(tokens)
    scores = [float(s) for s in fields[Keys.Tokenizer.SCORES].contents()] if Keys.Tokenizer.SCORES in fields else [0.0] * n
    types = [int(t) for t in fields[Keys.Tokenizer.TOKEN_TYPE].contents()] if Keys.Tokenizer.TOKEN_TYPE in fields else [int(TokenType.NORMAL)] * n
    extra: dict[str, tuple[Any, GGUFValueType, GGUFValueType | None]] = {}
    for key, f in fields.items():
        if not key.startswith("tokenizer.") or key in (Keys.Tokenizer.LIST, Keys.Tokenizer.SCORES, Keys.Tokenizer.TOKEN_TYPE):
            continue
        vtype = f.types[0]
        sub = f.types[-1] if vtype == GGUFValueType.ARRAY and len(f.types) > 1 else None
        value = _field_value(f)
        if vtype == GGUFValueType.ARRAY and not value:
            continue
        extra[key] = (value, vtype, sub)
    return Vocab(tokens, scores, types, extra)


def add_chatml(vocab: Vocab) -> tuple[int, int]:
    """Make ``<|im_start|>`` and ``<|im_end|>`` CONTROL tokens and ``<|im_end|>`` the eos and eot
    token (llama.cpp then treats it as end-of-generation). Returns their ids."""
    start = vocab.add_control(IM_START)
    end = vocab.add_control(IM_END)
    vocab.set_u32(Keys.Tokenizer.EOS_ID, end)
    vocab.set_u32(Keys.Tokenizer.EOT_ID, end)
    return start, end
