"""%lm_ps as compact cards: one line per instance that fits a notebook (identifier, model, context, size,
threads, GPU, status), every other setting in a <details> that opens on a click; each fact said once."""

from __future__ import annotations

import re

from lmsext.render import loaded_models_bundle


def test_a_card_per_instance_with_details_on_expand(client):
    first = client.llm.load("stories260K", config={"contextLength": 512})
    other = client.llm.load("stories260K", config={"contextLength": 256, "seed": 4}, identifier="storyteller")
    shown = loaded_models_bundle([first, other], current="storyteller")
    text, html = shown["text/plain"], shown["text/html"]
    lines = text.splitlines()
    assert lines[0] == "Loaded models (2)"
    cards = [line for line in lines if line.startswith("● ")]
    assert cards[0].startswith("● stories260K — context 512 · ") and cards[0].endswith(" · ready")
    assert " · GPU " in cards[0] or " · CPU · " in cards[0]  # as llama.cpp placed the layers
    assert cards[1].startswith("● storyteller (default) — stories260K · context 256 · ")
    assert max(len(line) for line in lines if not line.startswith("● ")) <= 100  # the details wrap at 100
    assert max(len(card) for card in cards) <= 105  # one line per instance: no table columns to cut off
    assert "seed=4" in text and text.count("context_length") == 0  # the context is said once, on the line
    assert html.count('<details class="lmsext-instance"') == 2 and html.count("<summary") == 2
    summary = re.search(r"<summary.*?</summary>", html).group(0)
    assert "seed" not in summary and "context 512" in summary  # the settings are in the details, not the line


def test_the_status_says_generating_during_a_prediction(client):
    llm = client.llm.load("stories260K", config={"contextLength": 256})
    stream = llm.complete_stream("Once upon a time", {"maxTokens": 50})
    next(iter(stream))
    try:
        assert loaded_models_bundle([llm])["text/plain"].splitlines()[1].endswith(" · generating")
    finally:
        stream.close()
    assert loaded_models_bundle([llm])["text/plain"].splitlines()[1].endswith(" · ready")


def test_no_instance():
    assert loaded_models_bundle([])["text/plain"] == "Loaded models\nno model is loaded (%lm_load MODEL)"
