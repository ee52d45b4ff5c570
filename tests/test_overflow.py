"""Context overflow policies (LM Studio's ``contextOverflowPolicy``) on the real engine.

``stopAtLimit``: stop when the context is full (``contextLengthReached``); a prompt that cannot fit
is a clear error. ``truncateMiddle``: keep the system prompt and the first user message, drop the
middle. ``rollingWindow``: keep the most recent part, drop the past. Checked for raw prompts and
chats up to 10× the context length and for generations that run into the limit; afterwards the
model is consistent (the next prediction equals a fresh one at temperature 0).
"""

from __future__ import annotations

import pytest

from lmsext import synth
from lmsext.chat import Chat
from lmsext.errors import PredictionError

N_CTX = 256
GREEDY = {"temperature": 0}
WORDS = "the dog and the cat went to the park and played with a ball".split()


@pytest.fixture(scope="module")
def client(module_client):
    return module_client


@pytest.fixture(scope="module")
def model(client, stories_path):
    return client.llm.load(str(stories_path), config={"contextLength": N_CTX}, identifier="overflow-stories")


@pytest.fixture(scope="module")
def chat_model(client, tmp_path_factory):
    path = synth.chatml_model(tmp_path_factory.mktemp("chatml"))
    return client.llm.load(str(path), config={"contextLength": N_CTX}, identifier="overflow-chatml")


@pytest.fixture(scope="module")
def random_chat_model(client, tmp_path_factory):
    """ChatML with random weights: it never ends a reply by itself (no end-of-turn habit to learn)."""
    path = synth.chatml_model(tmp_path_factory.mktemp("chatml-random"), stories=False)
    return client.llm.load(str(path), config={"contextLength": N_CTX}, identifier="overflow-chatml-random")


def _text(n_words: int, offset: int = 0) -> str:
    return " ".join(WORDS[(offset + i) % len(WORDS)] for i in range(n_words))


def _cached(llm) -> list[int]:
    return list(llm._loaded.handle.cached_tokens)


def _norm(prompt: str) -> str:
    """Detokenized ChatML without BOS and the space SentencePiece puts after a special token."""
    return prompt.removeprefix("<s>").replace("<|im_start|> ", "<|im_start|>").replace("<|im_end|> ", "<|im_end|>")


# ------------------------------------------------------------------------------ raw prompts


def test_prompt_of_ten_contexts_under_each_policy(model):
    prompt = "Once upon a time " + _text(2200)
    full = model.tokenize(prompt)
    assert len(full) >= 10 * N_CTX
    with pytest.raises(PredictionError, match=rf"the prompt is {len(full)} tokens but the context holds {N_CTX}"):
        model.complete(prompt, config={**GREEDY, "maxTokens": 8, "contextOverflowPolicy": "stopAtLimit"})

    r = model.complete(prompt, config={**GREEDY, "maxTokens": 8, "contextOverflowPolicy": "truncateMiddle"})
    limit = N_CTX - 8
    assert r.stats.prompt_tokens_count == limit and r.stats.truncated_prompt_tokens_count == len(full) - limit
    kept = _cached(model)[:limit]
    head = limit // 2  # a raw prompt's head is its start, at most half of the room
    assert kept[:head] == full[:head] and kept[head:] == full[len(full) - (limit - head):]
    assert r.stats.stop_reason == "maxPredictedTokensReached"

    r = model.complete(prompt, config={**GREEDY, "maxTokens": 8, "contextOverflowPolicy": "rollingWindow"})
    kept = _cached(model)[:limit]
    assert r.stats.prompt_tokens_count == limit
    assert kept[0] == full[0] and kept[1:] == full[len(full) - (limit - 1):]  # BOS + the most recent tokens


def test_stop_at_limit_accepts_a_prompt_that_fits_and_stops_when_the_context_is_full(model):
    prompt_tokens = model.tokenize("Once upon a time " + _text(400))[: N_CTX - 5]
    prompt = model._loaded.handle.detokenize(prompt_tokens[1:])  # without BOS: complete() adds it again
    n = len(model.tokenize(prompt))
    assert N_CTX - 8 <= n <= N_CTX
    r = model.complete(prompt, config={**GREEDY, "maxTokens": False, "contextOverflowPolicy": "stopAtLimit"})
    assert r.stats.stop_reason == "contextLengthReached"
    assert r.stats.predicted_tokens_count == N_CTX - n + 1 and r.stats.truncated_prompt_tokens_count == 0


def test_generation_into_the_limit(random_chat_model):
    model = random_chat_model
    reference = model.complete("Once upon a time", config={**GREEDY, "maxTokens": 20}).content
    r = model.complete("Once upon a time", config={**GREEDY, "maxTokens": False, "contextOverflowPolicy": "stopAtLimit"})
    assert r.stats.stop_reason == "contextLengthReached"
    assert r.stats.prompt_tokens_count + r.stats.predicted_tokens_count == N_CTX + 1
    for policy in ("rollingWindow", "truncateMiddle"):
        r = model.complete("Once upon a time", config={"temperature": 0.7, "seed": 3, "maxTokens": 10 * N_CTX,
                                                       "contextOverflowPolicy": policy})
        assert r.stats.stop_reason == "maxPredictedTokensReached" and r.stats.predicted_tokens_count == 10 * N_CTX
        assert len(_cached(model)) <= N_CTX
        # what the shifts left in the cache is never reused past the kept head: the next prediction
        # is the one a fresh model makes
        assert model.complete("Once upon a time", config={**GREEDY, "maxTokens": 20}).content == reference


def test_generation_shift_keeps_the_head_under_truncate_middle(random_chat_model):
    chat_model = random_chat_model
    chat = Chat("You are a storyteller.")
    chat.add_user_message("Tell me a very long story about a dog.")
    r = chat_model.respond(chat, config={"temperature": 0.8, "seed": 1, "maxTokens": 4 * N_CTX,
                                         "contextOverflowPolicy": "truncateMiddle"})
    assert r.stats.stop_reason == "maxPredictedTokensReached" and r.stats.predicted_tokens_count == 4 * N_CTX
    engine = chat_model._loaded.handle
    n_head = len(engine.tokenize(engine.chat_template.render(chat.messages, add_generation_prompt=False),
                                 parse_special=True))
    prompt = engine.render_prompt(chat.messages)[0]
    assert 0 < n_head < len(prompt)
    assert _cached(chat_model)[:n_head] == prompt[:n_head]  # the system prompt and first message survived


# ------------------------------------------------------------------------------ chats


def _long_chat(n_turns: int) -> Chat:
    chat = Chat("SYSTEMPROMPT you are kind")
    chat.add_user_message("FIRSTUSER " + _text(10))
    for i in range(n_turns):
        chat.add_assistant_response(f"reply{i} " + _text(25, i))
        chat.add_user_message(f"turn{i} " + _text(25, i + 3))
    return chat


def test_chat_of_ten_contexts_under_each_policy(chat_model):
    chat = _long_chat(45)
    engine = chat_model._loaded.handle
    full = engine.render_prompt(chat.messages)[0]
    assert len(full) >= 10 * N_CTX
    last = chat.messages[-1]["content"].split()[0]

    with pytest.raises(PredictionError, match="the prompt is .* tokens but the context holds 256"):
        chat_model.respond(chat, config={**GREEDY, "maxTokens": 8, "contextOverflowPolicy": "stopAtLimit"})

    r = chat_model.respond(chat, config={**GREEDY, "maxTokens": 8, "contextOverflowPolicy": "truncateMiddle"})
    p = _norm(r.prompt)
    assert p.startswith("<|im_start|>system\nSYSTEMPROMPT") and "FIRSTUSER" in p and last in p
    assert "reply0 " not in p and "turn0 " not in p  # the oldest messages after the head are gone
    assert p.endswith("<|im_start|>assistant\n")  # whole messages: the template's shape is intact
    assert p.count("<|im_start|>") == p.count("<|im_end|>") + 1
    assert r.stats.prompt_tokens_count <= N_CTX - 8
    assert r.stats.truncated_prompt_tokens_count == len(full) - r.stats.prompt_tokens_count
    assert r.stats.stop_reason in ("maxPredictedTokensReached", "eosFound")

    r = chat_model.respond(chat, config={**GREEDY, "maxTokens": 8, "contextOverflowPolicy": "rollingWindow"})
    p = _norm(r.prompt)
    assert "SYSTEMPROMPT" not in p and "FIRSTUSER" not in p and last in p
    assert p.startswith("<|im_start|>user\n") and p.endswith("<|im_start|>assistant\n")
    assert r.stats.prompt_tokens_count <= N_CTX - 8
    # the window holds as much recent history as fits: one more message would not have
    assert r.stats.truncated_prompt_tokens_count == len(full) - r.stats.prompt_tokens_count


def test_one_message_of_ten_contexts(chat_model):
    chat = Chat("SYSTEMPROMPT")
    chat.add_user_message("BEGINNING " + _text(2600) + " ENDING")
    engine = chat_model._loaded.handle
    assert len(engine.render_prompt(chat.messages)[0]) >= 10 * N_CTX
    r = chat_model.respond(chat, config={**GREEDY, "maxTokens": 8, "contextOverflowPolicy": "truncateMiddle"})
    kept = _cached(chat_model)[: r.stats.prompt_tokens_count]
    text = _norm(engine.detokenize(kept, True))
    assert text.startswith("<|im_start|>system\nSYSTEMPROMPT") and "BEGINNING" in text and "ENDING" in text and text.endswith("<|im_start|>assistant\n")
    r = chat_model.respond(chat, config={**GREEDY, "maxTokens": 8, "contextOverflowPolicy": "rollingWindow"})
    text = _norm(engine.detokenize(_cached(chat_model)[: r.stats.prompt_tokens_count], True))
    assert "BEGINNING" not in text and "ENDING" in text and text.endswith("<|im_start|>assistant\n")


def test_chat_that_fits_is_untouched(chat_model):
    chat = _long_chat(1)
    r = chat_model.respond(chat, config={**GREEDY, "maxTokens": 5})
    assert r.stats.truncated_prompt_tokens_count == 0 and "SYSTEMPROMPT" in r.prompt and "reply0" in r.prompt
