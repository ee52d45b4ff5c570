"""Speculative decoding (lmsext/engine/speculative.py, lookup.py) and the pairs it is tested on (lmsext/synth/_pairs.py).

The pairs: a target built from stories260K's weights plus identity blocks (stories260K is then a perfect
draft) and one whose extra blocks are perturbed (a measured 60-80 % agreement). Greedy speculation must give
the plain output token for token; sampled speculation the model's own distribution (chi-square against
the next-token distribution, as tests/test_distribution.py does for the sampler chain).
"""

from __future__ import annotations

import numpy as np
import pytest

import lmsext
from lmsext import synth
from lmsext.engine.distribution import chi_square, total_variation
from lmsext.errors import ConfigError, ModelNotFoundError
from lmsext.models import embedded_model_path

pytestmark = pytest.mark.usefixtures("shared_models_only")

PROMPTS = ["Once upon a time", "Lily and Tom went to the park", "One day, a bird"]
GREEDY = {"temperature": 0, "maxTokens": 120, "logProbs": 1}


@pytest.fixture(scope="module")
def pair(module_client):
    """(small identity target, small perturbed target, the draft) loaded in one client."""
    c = module_client
    draft = c.llm.load(str(embedded_model_path()), config={"contextLength": 512}, identifier="draft")
    identity = c.llm.load(str(synth.identity_target(extra_layers=4, n_ff=0)), config={"contextLength": 512},
                          identifier="identity")
    perturbed = c.llm.load(str(synth.perturbed_target(extra_layers=4, n_ff=0)), config={"contextLength": 512},
                           identifier="perturbed")
    return identity, perturbed, draft


def tokens(result) -> list[int]:
    return [lp.token for lp in result.logprobs or []]


# -- the pairs -----------------------------------------------------------------------------------------


def test_identity_target_predicts_what_the_embedded_model_does(module_client):
    """The default (wide, 12 identity blocks) target: greedy text and tokens equal stories260K's."""
    target = module_client.llm.load(str(synth.identity_target()), config={"contextLength": 512})
    stories = module_client.llm.load(str(embedded_model_path()), config={"contextLength": 512})
    try:
        for prompt in PROMPTS:
            a, b = target.complete(prompt, GREEDY), stories.complete(prompt, GREEDY)
            assert tokens(a) == tokens(b) and len(tokens(a)) == 120, prompt
            assert a.content == b.content
    finally:
        target.unload()
        stories.unload()


def agreement(target, draft_key: str) -> float:
    """Greedy agreement: the share of one-token drafts the target accepts on its own text."""
    acc = rej = 0
    for prompt in PROMPTS:
        r = target.complete(prompt, {"temperature": 0, "maxTokens": 150, "draftModel": draft_key,
                                     "speculativeDecodingNumDraftTokensExact": 1})
        acc += r.stats.accepted_draft_tokens_count
        rej += r.stats.rejected_draft_tokens_count
    return acc / (acc + rej)


def test_perturbed_pair_agreement(module_client):
    """The default perturbed target agrees with stories260K on 60-80 % of tokens; the identity one on all."""
    draft = module_client.llm.load(str(embedded_model_path()), config={"contextLength": 512}, identifier="pdraft")
    perturbed = module_client.llm.load(str(synth.perturbed_target()), config={"contextLength": 512})
    try:
        rate = agreement(perturbed, "pdraft")
        print(f"perturbed pair agreement {rate:.3f}")
        assert 0.6 <= rate <= 0.8
    finally:
        perturbed.unload()
        draft.unload()


# -- greedy: token for token ----------------------------------------------------------------------------


@pytest.mark.parametrize("which,draft", [("identity", "draft"), ("perturbed", "draft"), ("perturbed", "lookup")])
def test_greedy_speculation_is_the_plain_output_token_for_token(pair, which, draft):
    target = pair[0] if which == "identity" else pair[1]
    for prompt in PROMPTS + ["The dog ran. The dog ran. The dog ran. The dog"]:
        plain = target.complete(prompt, GREEDY)
        spec = target.complete(prompt, {**GREEDY, "draftModel": draft})
        assert tokens(spec) == tokens(plain), prompt
        assert spec.content == plain.content
        assert [lp.logprob for lp in spec.logprobs] == pytest.approx([lp.logprob for lp in plain.logprobs], abs=0.01)  # batch vs single rounding
        s = spec.stats
        assert s.used_draft_model_key == draft
        assert s.total_draft_tokens_count == (s.accepted_draft_tokens_count + s.rejected_draft_tokens_count
                                              + s.ignored_draft_tokens_count)
        assert plain.stats.used_draft_model_key is None and "used_draft_model_key" not in plain.stats.to_dict()
    if which == "identity":
        assert spec.stats.accepted_draft_tokens_count > 0 and spec.stats.rejected_draft_tokens_count == 0


def test_identity_pair_accepts_every_draft(pair):
    identity, _, _ = pair
    r = identity.complete("Once upon a time", {"temperature": 0, "maxTokens": 100, "draftModel": "draft",
                                               "speculativeDecodingNumDraftTokensExact": 8})
    s = r.stats
    assert s.rejected_draft_tokens_count == 0
    assert s.accepted_draft_tokens_count >= 80  # every round drafts 8 (exact: no adapting) and all are kept
    assert sum(f.contains_drafted for f in identity.complete_stream(
        "Once upon a time", {"temperature": 0, "maxTokens": 30, "draftModel": "draft"})) > 0


def test_min_continue_probability_cuts_drafts_short(pair):
    """speculativeDecodingMinContinueDraftingProbability 1.0: the draft stops after one token each round (its
    confidence is never 1.0), so fewer draft tokens are accepted than with 0.0, where a perfect draft drafts on."""
    identity, _, _ = pair
    config = {"temperature": 0, "maxTokens": 60, "draftModel": "draft"}
    cautious = identity.complete("Once upon a time", {**config, "speculativeDecodingMinContinueDraftingProbability": 1.0})
    eager = identity.complete("Once upon a time", {**config, "speculativeDecodingMinContinueDraftingProbability": 0.0})
    assert cautious.content == eager.content
    assert cautious.stats.accepted_draft_tokens_count <= 31  # one drafted + one sampled token per round at most
    assert eager.stats.accepted_draft_tokens_count > cautious.stats.accepted_draft_tokens_count


def test_min_draft_length_ignores_shorter_drafts(pair):
    """speculativeDecodingMinDraftLengthToConsider above the drafts' length: every draft is ignored, not verified."""
    identity, _, _ = pair
    r = identity.complete("Once upon a time", {"temperature": 0, "maxTokens": 40, "draftModel": "draft",
                                               "speculativeDecodingNumDraftTokensExact": 2,
                                               "speculativeDecodingMinDraftLengthToConsider": 3})
    s = r.stats
    assert s.accepted_draft_tokens_count == 0 and s.rejected_draft_tokens_count == 0
    assert s.ignored_draft_tokens_count > 0


def test_stop_strings_grammar_and_overflow_with_a_draft(pair):
    _, target, _ = pair
    cases = [
        ("Once upon a time", {"stopStrings": ["park"], "maxTokens": 200}),
        ("Once upon a time", {"structured": {"type": "json", "jsonSchema": {
            "type": "object", "properties": {"name": {"type": "string", "maxLength": 12}}, "required": ["name"]}},
            "maxTokens": 60}),
        ("Once upon a time", {"contextOverflowPolicy": "rollingWindow", "maxTokens": 700}),
        ("Once upon a time", {"contextOverflowPolicy": "stopAtLimit", "maxTokens": 700}),
    ]
    for prompt, extra in cases:
        config = {"temperature": 0, "logProbs": 1, **extra}
        plain = target.complete(prompt, config)
        for draft in ("draft", "lookup"):
            spec = target.complete(prompt, {**config, "draftModel": draft})
            assert (spec.content, spec.stats.stop_reason) == (plain.content, plain.stats.stop_reason), (extra, draft)
            assert tokens(spec) == tokens(plain)
    assert plain.stats.stop_reason == "contextLengthReached"


def test_stop_ends_a_speculative_stream(pair):
    identity, _, _ = pair
    stream = identity.complete_stream("Once upon a time", {"temperature": 0, "maxTokens": 400, "draftModel": "draft"})
    for i, _ in enumerate(stream):
        if i == 5:
            stream.cancel()
    result = stream.result()
    assert result.stats.stop_reason == "userStopped"
    assert result.stats.predicted_tokens_count < 400
    again = identity.complete("Once upon a time", {"temperature": 0, "maxTokens": 20, "draftModel": "draft"})
    assert again.stats.stop_reason == "maxPredictedTokensReached"


# -- sampling: the model's distribution --------------------------------------------------------------

SAMPLED = {"temperature": 1.0, "topKSampling": 0, "topPSampling": False, "minPSampling": False, "repeatPenalty": 1.3}
N = 1200


def second_tokens(model, prompt: str, config: dict) -> tuple[int, dict[int, int], dict[str, int]]:
    """The most common first token, the counts of the second token after it over N seeds, and the draft counts.
    Three tokens per run: the first is sampled plainly, the second is the verified draft (or its replacement)."""
    firsts: dict[int, dict[int, int]] = {}
    drafts = {"accepted": 0, "rejected": 0}
    for seed in range(N):
        r = model.complete(prompt, {**config, "seed": seed, "maxTokens": 3, "logProbs": 1})
        drafts["accepted"] += r.stats.accepted_draft_tokens_count
        drafts["rejected"] += r.stats.rejected_draft_tokens_count
        got = tokens(r)
        if len(got) >= 2:
            counts = firsts.setdefault(got[0], {})
            counts[got[1]] = counts.get(got[1], 0) + 1
    first = max(firsts, key=lambda t: sum(firsts[t].values()))
    return first, firsts[first], drafts


@pytest.mark.parametrize("draft,prompt,extra", [
    ("draft", "Once upon a", {}),
    # the prompt's n-grams repeat (no penalty to break them); hot, so that the lookup's guess is often wrong
    ("lookup", "The big dog saw a cat. The big dog saw a cat. The big", {"repeatPenalty": False, "temperature": 2.0}),
])
def test_sampled_speculation_has_the_model_distribution(pair, draft, prompt, extra):
    _, target, stories = pair
    config = {**SAMPLED, **extra}
    # exact: every run drafts (no adapting, no back-off), so the rule decides every second token
    first, counts, drafts = second_tokens(target, prompt, {**config, "draftModel": draft,
                                                           "speculativeDecodingNumDraftTokensExact": 1})
    n = sum(counts.values())
    assert n > N // 6
    assert drafts["accepted"] > 100 and drafts["rejected"] > 20, drafts  # both branches of the rule ran
    history = target.tokenize(prompt) + [first]
    p = target.next_token_distribution(history, config).probs
    stat, df, pvalue = chi_square(counts, p)
    tv = total_variation(counts, p)
    bound = 1.5 * float(np.sqrt(p * (1 - p) / n).sum()) + 0.005
    print(f"{draft}: {n} second tokens, {drafts}, chi2 {stat:.1f} on {df} df, p={pvalue:.3f}, TV {tv:.4f} (< {bound:.4f})")
    assert pvalue > 1e-3 and tv < bound
    if draft == "draft":  # the test has power: the draft's own distribution is rejected
        q = stories.next_token_distribution(history, config).probs
        assert chi_square(counts, q)[2] < 1e-6


# -- bad input --------------------------------------------------------------------------------------


def test_bad_drafts_are_one_line(pair, module_client, tmp_path):
    _, target, _ = pair
    other = module_client.llm.load(str(synth.random_model()), config={"contextLength": 256}, identifier="othervocab")
    try:
        with pytest.raises(ConfigError, match=r"draftModel 'othervocab': its vocabulary has \d+ tokens") as e:
            target.complete("Once", {"draftModel": "othervocab", "maxTokens": 5})
        assert "\n" not in str(e.value)
    finally:
        other.unload()
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).parent))
    from gguf_mutations import rewrite
    from lmsext.synth._vocab import vocab_from_gguf
    pieces = vocab_from_gguf(embedded_model_path()).tokens
    pieces[300], pieces[301] = pieces[301], pieces[300]  # as many tokens as stories260K, two pieces swapped
    same_size = str(rewrite(embedded_model_path(), tmp_path / "swapped.gguf", {"tokenizer.ggml.tokens": pieces}))
    with pytest.raises(ConfigError, match=r"draftModel '.*': token \d+ is .* in the draft but .* in the model; a draft "
                                          r"must share the model's tokenizer") as e:
        target.complete("Once", {"draftModel": same_size, "maxTokens": 5})
    assert "\n" not in str(e.value)
    with pytest.raises(ModelNotFoundError, match="draftModel 'no-such-draft'"):
        target.complete("Once", {"draftModel": "no-such-draft", "maxTokens": 5})
    with pytest.raises(ConfigError, match="draft must be another model"):
        target.complete("Once", {"draftModel": "perturbed", "maxTokens": 5})
    with pytest.raises(ConfigError, match="speculative_decoding_num_draft_tokens_exact|NumDraftTokensExact"):
        target.complete("Once", {"draftModel": "lookup", "speculativeDecodingNumDraftTokensExact": 0})
    assert target.complete("Once", {"maxTokens": 3}).stats.predicted_tokens_count == 3  # the model survives


def test_a_draft_loaded_just_in_time(pair, tmp_path, module_client):
    """A draft file no instance holds is loaded by the engine on first use, kept for the next prediction, and
    freed with the engine."""
    import shutil
    _, target, _ = pair
    path = tmp_path / "jit-draft.gguf"
    shutil.copy(embedded_model_path(), path)
    drafts = module_client.engine._drafts
    config = {"temperature": 0, "maxTokens": 30, "draftModel": str(path)}
    r = target.complete("Once upon a time", config)
    assert r.stats.used_draft_model_key == str(path) and r.stats.accepted_draft_tokens_count > 0
    (jit,) = [d for p, d in drafts._jit.items() if p.name == "jit-draft.gguf"]
    target.complete("Once upon a time", config)
    assert [d for p, d in drafts._jit.items() if p.name == "jit-draft.gguf"] == [jit]
    assert all(m.identifier != "jit-draft" for m in module_client.llm.list_loaded())  # not a user instance
    drafts.close()
    assert jit.closed


def test_lookup_proposals():
    from lmsext.engine.lookup import lookup_proposal
    assert lookup_proposal([1, 2, 3, 4, 5, 1, 2, 3], 3) == [4, 5, 1]  # the longest n-gram (3) first
    assert lookup_proposal([1, 2, 3, 9, 2, 3], 2) == [9, 2]  # then shorter ones
    assert lookup_proposal([1, 2, 3, 1, 5, 6, 2, 3], 2) == [1, 5]  # the most recent occurrence
    assert lookup_proposal([1, 2, 3], 4) == []
    assert lookup_proposal([7, 8, 9, 7], 4) == []  # a single repeated token is not enough
    assert lookup_proposal([7, 7, 7], 4) == [7]


# -- front ends ---------------------------------------------------------------------------------------


def test_lm_respond_draft_flag_stats_line_and_coloured_view(ip, unload_all, monkeypatch):
    """``%%lm_complete --draft lookup``: the stats line counts the draft tokens and the final view colours
    the accepted ones (rich mode); ``--draft`` with an unknown model is one red line."""
    from magic_runner import run
    from lmsext import magics as magics_module
    from lmsext import session as session_module
    monkeypatch.setattr(session_module, "_session", None)
    lm = magics_module.get_magics(ip)
    lm.display_mode = "rich"
    lm.stream_update_interval = 0.0
    try:
        run(ip, "%lm_load stories260K --context-length 512")
        _, cap = run(ip, "%%lm_complete --max-tokens 60 --temperature 0 --draft lookup",
                     "The dog ran. The dog ran. The dog ran. The dog ran. The dog")
        result = ip.user_ns["_lm"]
        s = result.stats
        assert s.used_draft_model_key == "lookup" and s.accepted_draft_tokens_count > 0
        html = [o.data["text/html"] for o in cap.outputs if "text/html" in o.data][-1]
        assert "lmsext-drafted" in html and "background:#c8f0c8" in html
        assert f"accepted {s.accepted_draft_tokens_count}/{s.total_draft_tokens_count} draft tokens (lookup)" in html
        _, cap = run(ip, "%%lm_complete --max-tokens 5 --draft no-such-draft", "Hi")
        reds = [o.data["text/html"] for o in cap.outputs if "text/html" in o.data]
        assert any("draftModel &#x27;no-such-draft&#x27;" in h for h in reds), (cap.stdout, cap.stderr, reds)
    finally:
        lm.display_mode = lm.traits()["display_mode"].default()
        lm.stream_update_interval = lm.traits()["stream_update_interval"].default()


def test_rest_and_openai_endpoints_take_draft_model(pair, module_client):
    """``draft_model`` on /v1/completions, /v1/chat/completions and /api/v1/chat; the draft stats come back."""
    httpx = pytest.importorskip("httpx")
    pytest.importorskip("uvicorn")
    from lmsext import server as rest
    handle = rest.serve(port=0, client=module_client)
    try:
        with httpx.Client(base_url=handle.url, timeout=60) as http:
            prompt = "The dog ran. The dog ran. The dog ran. The dog"
            body = {"model": "perturbed", "prompt": prompt, "max_tokens": 30, "temperature": 0}
            plain = http.post("/v1/completions", json=body).json()
            spec = http.post("/v1/completions", json={**body, "draft_model": "lookup"}).json()
            assert spec["choices"][0]["text"] == plain["choices"][0]["text"]
            stats = spec["stats"]
            assert stats["used_draft_model_key"] == "lookup" and stats["accepted_draft_tokens_count"] > 0
            assert stats["total_draft_tokens_count"] == sum(stats[f"{k}_draft_tokens_count"]
                                                            for k in ("accepted", "rejected", "ignored"))
            assert "used_draft_model_key" not in plain["stats"]
            chat = http.post("/v1/chat/completions", json={
                "model": "perturbed", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 10,
                "temperature": 0, "draft_model": "draft"}).json()
            assert chat["stats"]["used_draft_model_key"] == "draft"
            native = http.post("/api/v1/chat", json={"model": "perturbed", "input": "Hi", "max_output_tokens": 10,
                                                     "temperature": 0, "draft_model": "draft"}).json()
            assert native["stats"]["used_draft_model_key"] == "draft"
            bad = http.post("/v1/completions", json={**body, "draft_model": "no-such-draft"})
            assert bad.status_code in (400, 404) and "draftModel 'no-such-draft'" in bad.json()["error"]["message"]
    finally:
        handle.stop()


def test_prediction_panel_has_a_draft_model_field(ip, monkeypatch):
    """The prediction panel's draft-model box is the session's ``draftModel`` (both ways)."""
    from magic_runner import run
    from lmsext import session as session_module
    from lmsext.widgets import PredictionPanel
    monkeypatch.setattr(session_module, "_session", None)
    panel = PredictionPanel()
    try:
        assert panel.draft_model.value == ""
        panel.draft_model.value = "lookup"
        assert session_module.get_session().prediction_config.draft_model == "lookup"
        run(ip, "%lm_config predict draftModel='draft'")
        assert panel.draft_model.value == "draft"
        panel.draft_model.value = " "
        assert session_module.get_session().prediction_config.draft_model is None
    finally:
        panel.close()


def test_stream_widget_marks_the_accepted_draft_text(pair):
    """The widget's final ``drafted`` ranges cover exactly the fragments that came from a draft."""
    from lmsext.widgets import StreamWidget
    identity, _, _ = pair
    widget = StreamWidget(interval=0.0)
    widget.begin()
    stream = identity.complete_stream("Once upon a time 😀", {"temperature": 0, "maxTokens": 40, "draftModel": "draft"})
    pieces = []
    for fragment in stream:
        widget.feed(fragment.content, drafted=fragment.contains_drafted)
        pieces.append((fragment.content, fragment.contains_drafted))
    result = stream.result()
    widget.finish(result)
    assert result.stats.accepted_draft_tokens_count > 0 and widget.drafted
    text16 = result.content.encode("utf-16-le")
    marked = "".join(text16[2 * a:2 * b].decode("utf-16-le") for a, b in widget.drafted)
    assert marked == "".join(t for t, d in pieces if d)
    widget.begin()
    assert widget.drafted == []
