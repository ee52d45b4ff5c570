"""``previous_response_id`` chains: a turn re-reads only what can still reach the context, and the prompt is
exactly the one the whole chain gives."""

from __future__ import annotations

import pytest

from lmsext.server.chains import StoredChat, trim_chain

GREEDY = {"temperature": 0, "maxTokens": 6}


@pytest.fixture(scope="module")
def long_chain(module_model):
    story = module_model.complete("Once upon a time", config={"maxTokens": 300, "temperature": 0.8, "seed": 1}).content
    reply = (story + " ") * 6  # several contexts' worth of tokens
    messages = [{"role": "system", "content": "You tell stories."}]
    for turn in range(1, 12):
        messages += [{"role": "user", "content": f"Tell me more, part {turn}."}, {"role": "assistant", "content": reply}]
    messages.append({"role": "user", "content": "And then?"})
    return messages


@pytest.mark.parametrize("policy", ["truncateMiddle", "rollingWindow"])
def test_trimmed_chain_gives_the_same_prompt_and_reply(module_model, long_chain, policy):
    trimmed = trim_chain(module_model, StoredChat(long_chain), policy)
    assert len(trimmed.messages) < len(long_chain) // 2
    assert trimmed.messages[-1] == long_chain[-1] and trimmed.messages[0]["role"] in ("system", "user")
    if policy == "truncateMiddle":
        assert trimmed.messages[:2] == long_chain[:2]  # the head the policy keeps
    config = {**GREEDY, "contextOverflowPolicy": policy}
    whole = module_model.respond(long_chain, config=config)
    short = module_model.respond(trimmed.messages, config=config)
    assert short.prompt == whole.prompt and short.content == whole.content
    assert short.stats.prompt_tokens_count == whole.stats.prompt_tokens_count


def test_stop_at_limit_keeps_the_whole_chain(module_model, long_chain):
    chat = StoredChat(long_chain)
    assert trim_chain(module_model, chat, "stopAtLimit") is chat


def test_a_short_chain_is_kept_whole(module_model):
    messages = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"},
                {"role": "user", "content": "Tell me a story"}]
    trimmed = trim_chain(module_model, StoredChat(messages), "truncateMiddle")
    assert trimmed.messages == messages and all(isinstance(n, int) for n in trimmed.tokens[1:])  # [0]: the head


def test_rest_chain_stays_bounded(module_client, module_model):
    httpx = pytest.importorskip("httpx")
    from lmsext import server as rest
    with rest.serve(port=0, client=module_client) as handle:
        prev = None
        for turn in range(12):
            body = {"model": module_model.identifier, "input": f"Part {turn}: tell me more.", "temperature": 0.8,
                    "seed": turn, "max_output_tokens": 200, "context_overflow_policy": "rollingWindow"}
            if prev:
                body["previous_response_id"] = prev
            r = httpx.post(handle.url + "/api/v1/chat", json=body, timeout=60)
            assert r.status_code == 200, r.text
            prev = r.json()["response_id"]
        stored = handle._state.responses[prev]
        # the context holds 512 tokens: what is kept is about that much, not 12 turns of 200-token replies
        assert sum(n for n in stored.tokens if n is not None) < 2 * 512 + 400
        assert stored.messages[-1]["role"] == "assistant" and len(stored.messages) < 24
