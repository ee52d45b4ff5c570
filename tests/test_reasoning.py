"""reasoningParsing: the stream post-processor above the engine (split tags included), reasoning on a model whose
output a grammar forces into ``<think>…</think>answer``, enableThinking, and the REST / OpenAI / magic surfaces."""

from __future__ import annotations

import itertools
import json

import httpx
import pytest
from magic_runner import run

import lmsext
from lmsext import server as rest
from lmsext import synth
from lmsext.reasoning import ReasoningParser, split_content

THINK = 'root ::= "<think>" [a-z ]{3,30} "</think>" [a-z ]{3,30}'
FORCED = {"structured": {"type": "gbnf", "gbnfGrammar": THINK}, "temperature": 0.7, "seed": 3, "maxTokens": 120}
OPENED = {"type": "manual", "stopStrings": [], "manualPromptTemplate": {  # the prompt opens the reasoning
    "beforeSystem": "", "afterSystem": "\n", "beforeUser": "User: ", "afterUser": "\n", "beforeAssistant": "Assistant: <think>",
    "afterAssistant": "\n"}}


def _typed(pieces) -> list[tuple[str, str]]:
    """Adjacent pieces of one type merged: what a split of the input must not change."""
    out: list[tuple[str, str]] = []
    for piece in pieces:
        if out and out[-1][1] == piece.reasoning_type and piece.reasoning_type in ("none", "reasoning"):
            out[-1] = (out[-1][0] + piece.text, piece.reasoning_type)
        elif piece.text:
            out.append((piece.text, piece.reasoning_type))
    return out


def _parse(chunks, **kw):
    parser = ReasoningParser(**kw)
    pieces = [p for chunk in chunks for p in parser.feed(chunk)] + parser.finish()
    return pieces


@pytest.mark.parametrize("text, start, end", [
    ("pre<think>a thought</think>the answer", "<think>", "</think>"),
    ("<think></think>x", "<think>", "</think>"),
    ("[[R]]r1[[/R]]mid[[R]]r2[[/R]]end", "[[R]]", "[[/R]]"),
    ("no tags <thin at all <", "<think>", "</think>"),
])
def test_parser_gives_the_same_pieces_however_the_text_is_split(text, start, end):
    whole = _typed(_parse([text], start=start, end=end))
    assert "".join(t for t, _ in whole) == text  # nothing lost, nothing added
    for cut in range(1, len(text)):
        assert _typed(_parse([text[:cut], text[cut:]], start=start, end=end)) == whole, cut
    for a, b in itertools.combinations(range(1, len(text)), 2):
        pieces = _parse([text[:a], text[a:b], text[b:]], start=start, end=end)
        assert _typed(pieces) == whole, (a, b)
        assert sum(p.tokens_count for p in pieces) == 3  # every token counted once


def test_parser_types_content_and_counts():
    pieces = _parse(["pre<th", "ink>a th", "ought</th", "ink>answer"])
    assert _typed(pieces) == [("pre", "none"), ("<think>", "reasoningStartTag"), ("a thought", "reasoning"),
                              ("</think>", "reasoningEndTag"), ("answer", "none")]
    reasoning, answer, tokens = split_content(pieces)
    assert (reasoning, answer) == ("a thought", "preanswer") and tokens == 2  # the two tokens that ended in tags
    inside = _parse(["still thinking</think>", "done"], inside=True)
    assert _typed(inside)[0] == ("still thinking", "reasoning")
    assert ReasoningParser.for_prediction(None, "Assistant: <think>\n").inside
    assert ReasoningParser.for_prediction(lmsext.PredictionConfig.parse(
        {"reasoningParsing": {"enabled": False}}).reasoning_parsing, "") is None


def test_grammar_forced_reasoning_on_a_model(module_model):
    frags = []
    result = module_model.respond("Think about a cat", FORCED, on_prediction_fragment=frags.append)
    kinds = [f.reasoning_type for f in frags]
    assert kinds[0] == "reasoningStartTag" and kinds.count("reasoningStartTag") == kinds.count("reasoningEndTag") == 1
    start, end = kinds.index("reasoningStartTag"), kinds.index("reasoningEndTag")
    assert set(kinds[start + 1:end]) == {"reasoning"} and set(kinds[end + 1:]) == {"none"}
    assert frags[start].tokens_count >= 2 and frags[end].tokens_count >= 2  # each tag spans several tokens
    assert result.content == "<think>" + result.reasoning_content + "</think>" + result.non_reasoning_content
    assert result.reasoning_content.strip() and result.non_reasoning_content.strip()
    assert result.stats.reasoning_output_tokens == sum(f.tokens_count for f in frags[:end + 1])
    assert sum(f.tokens_count for f in frags) <= result.stats.predicted_tokens_count
    off = module_model.respond("Think about a cat", {**FORCED, "reasoningParsing": {"enabled": False}})
    assert off.content == result.content and off.non_reasoning_content == off.content and not off.reasoning_content
    custom = module_model.respond("Think about a cat", {**FORCED, "reasoning_parsing": {
        "start_string": "<th", "end_string": "k>"}})
    assert custom.reasoning_content == "in" and custom.stats.reasoning_output_tokens > 0


def test_a_prompt_that_opens_the_reasoning_starts_inside_it(module_model):
    grammar = 'root ::= [a-z ]{3,20} "</think>" [a-z ]{3,20}'
    result = module_model.respond("A cat", {"promptTemplate": OPENED, "temperature": 0, "maxTokens": 80,
                                            "structured": {"type": "gbnf", "gbnfGrammar": grammar}})
    assert result.prompt.endswith("<think>") and result.reasoning_content
    assert result.content == result.reasoning_content + "</think>" + result.non_reasoning_content


THINKING_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n"
    "{% if enable_thinking is defined and enable_thinking is false %}<think>\n\n</think>\n\n{% endif %}{% endif %}")


def test_enable_thinking_reaches_a_template_that_takes_it(module_client, tmp_path):
    path = synth.write_model(tmp_path / "thinker.gguf", chat_template=THINKING_TEMPLATE)
    llm = module_client.llm.load(str(path), config={"contextLength": 256})
    chat = [{"role": "user", "content": "hi"}]
    off = llm.apply_prompt_template(chat, {"enableThinking": False})
    on = llm.apply_prompt_template(chat, {"enableThinking": True})
    assert off.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n") and on.endswith("<|im_start|>assistant\n")
    assert llm.apply_prompt_template(chat) == on  # unset: the template's default
    r_off = llm.respond(chat, {"enableThinking": False, "maxTokens": 3, "temperature": 0})
    r_on = llm.respond(chat, {"enableThinking": True, "maxTokens": 3, "temperature": 0})
    assert r_off.stats.prompt_tokens_count > r_on.stats.prompt_tokens_count  # the model saw the closed think block
    jinja = {"type": "jinja", "jinjaPromptTemplate": {"template": "{{ 'T' if enable_thinking else 'F' }}"}}
    assert llm.apply_prompt_template(chat, {"promptTemplate": jinja, "enableThinking": False}) == "F"
    llm.unload()


def test_rest_v1_chat_reasoning_items_and_sse_events(module_client, module_model):
    python = module_model.respond("Think about a cat", FORCED)
    body = {"model": module_model.identifier, "input": "Think about a cat", "temperature": 0.7, "seed": 3,
            "max_output_tokens": 120, "structured": {"type": "gbnf", "gbnfGrammar": THINK}}
    with rest.serve(port=0, client=module_client) as handle, httpx.Client(base_url=handle.url, timeout=60) as http:
        answer = http.post("/api/v1/chat", json=body).json()
        assert answer["output"] == [{"type": "reasoning", "content": python.reasoning_content},
                                    {"type": "message", "content": python.non_reasoning_content}], answer
        assert answer["stats"]["reasoning_output_tokens"] == python.stats.reasoning_output_tokens > 0
        text = http.post("/api/v1/chat", json={**body, "stream": True}).text
        events = [line[len("event: "):] for line in text.splitlines() if line.startswith("event: ")]
        names = [e for e in events if e.split(".")[0] in ("reasoning", "message")]
        collapsed = [k for k, _ in itertools.groupby(names)]
        assert collapsed == ["reasoning.start", "reasoning.delta", "reasoning.end", "message.start", "message.delta",
                             "message.end"], events
        deltas = [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: ")]
        assert "".join(d["content"] for d in deltas if d["type"] == "reasoning.delta") == python.reasoning_content
        assert "".join(d["content"] for d in deltas if d["type"] == "message.delta") == python.non_reasoning_content
        assert http.post("/api/v1/chat", json={**body, "reasoning": "off"}).status_code == 200
        assert http.post("/api/v1/chat", json={**body, "reasoning": "high"}).status_code == 400


def test_openai_reasoning_content_in_message_and_deltas(module_client, module_model):
    config = {"promptTemplate": OPENED, "temperature": 0, "maxTokens": 30}
    python = module_model.respond([{"role": "user", "content": "A cat"}], config)
    assert python.reasoning_content and not python.non_reasoning_content  # the end tag never comes
    body = {"model": module_model.identifier, "messages": [{"role": "user", "content": "A cat"}], "temperature": 0,
            "max_tokens": 30, "prompt_template": OPENED}
    with rest.serve(port=0, client=module_client) as handle, httpx.Client(base_url=handle.url, timeout=60) as http:
        message = http.post("/v1/chat/completions", json=body).json()["choices"][0]["message"]
        assert message == {"role": "assistant", "content": "", "reasoning_content": python.reasoning_content}
        text = http.post("/v1/chat/completions", json={**body, "stream": True}).text
        chunks = [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: {")]
        deltas = [c["choices"][0]["delta"] for c in chunks if c.get("choices")]
        assert "".join(d.get("reasoning_content", "") for d in deltas) == python.reasoning_content
        assert "".join(d.get("content", "") for d in deltas) == ""


def test_lm_respond_folds_the_reasoning_and_keeps_only_the_answer_in_history(ip, unload_all):
    from lmsext import magics
    lm = magics.get_magics(ip)
    mode, lm.display_mode = lm.display_mode, "rich"  # a notebook's displays (the test shell is a terminal)
    run(ip, "%lm_load stories260K --context-length 512")
    ip.user_ns["forced"] = FORCED["structured"]
    _, cap = run(ip, "%%lm_respond --structured forced --seed 3 --temperature 0.7 --max-tokens 120",
                 "Think about a cat")
    result = ip.user_ns["_lm"]
    assert result.reasoning_content
    html = "".join(o.data.get("text/html", "") for o in cap.outputs)
    assert '<details class="lmsext-reasoning"' in html and html.index("lmsext-reasoning") < html.index(
        "lmsext-prediction")
    chat = lmsext.session.get_session().chat("default")
    assert chat.messages[-1] == {"role": "assistant", "content": result.non_reasoning_content}
    run(ip, "%lm_chat reset")
    lm.display_mode = mode
