"""Special tokens the model generates are not printed as text unless asked (lmsext.engine.special_tokens): a
generated ChatML model whose vocabulary also has a USER_DEFINED marker ``<start_of_image>`` (as Gemma 3's) and a
CONTROL token ``<|im_start|>``, both forced into the reply by a GBNF grammar."""

from __future__ import annotations

import gguf
import pytest
from gguf_mutations import rewrite
from IPython.utils.capture import capture_output

import lmsext
from lmsext import session as session_module
from lmsext import synth

MARKER = "<start_of_image>"


@pytest.fixture(scope="module")
def marker_model(tmp_path_factory):
    """The ChatML synth model with its last filler token renamed ``<start_of_image>``, typed USER_DEFINED, and a
    plain user-defined word ``<b>`` beside it (which still prints)."""
    folder = tmp_path_factory.mktemp("special")
    source = synth.chatml_model(folder)
    reader = gguf.GGUFReader(source)
    tokens = list(reader.fields["tokenizer.ggml.tokens"].contents())
    types = [int(t) for t in reader.fields["tokenizer.ggml.token_type"].contents()]
    normal = [i for i, t in enumerate(types) if t == gguf.TokenType.NORMAL and tokens[i].isalpha()]
    marker, word = normal[-1], normal[-2]
    tokens[marker], tokens[word] = MARKER, "<b>"
    types[marker] = types[word] = int(gguf.TokenType.USER_DEFINED)
    path = rewrite(source, folder / "marker.gguf", kv={
        "tokenizer.ggml.tokens": (tokens, gguf.GGUFValueType.ARRAY, gguf.GGUFValueType.STRING),
        "tokenizer.ggml.token_type": (types, gguf.GGUFValueType.ARRAY, gguf.GGUFValueType.INT32)})
    return path, marker, word, tokens.index("<|im_start|>")


@pytest.fixture
def llm(marker_model, unload_all):
    return lmsext.Client().llm.load(str(marker_model[0]), config={"contextLength": 256})


def forced(marker_model) -> dict:
    """A grammar forcing: Hi <start_of_image> <|im_start|> <b> there."""
    _, marker, word, im_start = marker_model
    grammar = f'root ::= "Hi" <[{marker}]> <[{im_start}]> <[{word}]> " there"'
    return {"structured": {"type": "gbnf", "gbnfGrammar": grammar}, "temperature": 0, "maxTokens": 12, "logProbs": 1}


def test_markers_and_control_tokens_are_not_printed(llm, marker_model):
    result = llm.complete("Once", forced(marker_model))
    _, marker, word, im_start = marker_model
    generated = [lp.token for lp in result.logprobs]
    start = generated.index(marker)
    assert generated[start:start + 3] == [marker, im_start, word]  # the three tokens were generated
    assert result.content == "Hi<b> there"  # the markers are not text; a user-defined word still is


def test_show_special_prints_them(llm, marker_model):
    result = llm.complete("Once", forced(marker_model), show_special=True)
    assert result.content == f"Hi{MARKER}<|im_start|><b> there"
    streamed = "".join(f.content for f in llm.complete_stream("Once", forced(marker_model), show_special=True))
    assert streamed == result.content


def test_show_special_flag_of_the_magics(ip, llm, marker_model, monkeypatch):
    monkeypatch.setattr(session_module, "_session", None)
    ip.user_ns["forced_grammar"] = forced(marker_model)["structured"]
    line = "--temperature 0 --max-tokens 12 --structured forced_grammar"
    for flags, expected in (("", "Hi<b> there"), (" --show-special", f"Hi{MARKER}<|im_start|><b> there")):
        with capture_output():
            ip.run_cell_magic("lm_complete", line + flags, "Once")
        assert ip.user_ns["_lm"].content == expected
    with capture_output():
        ip.run_cell_magic("lm_respond", line + " --show-special --no-history", "Hi")
    assert ip.user_ns["_lm"].content == f"Hi{MARKER}<|im_start|><b> there"
