"""Speculative decoding on an instance with maxParallelPredictions > 1 (lmsext/engine/scheduler.py)."""

from __future__ import annotations

import numpy as np
import pytest
from stream_helpers import round_robin, scheduler_steps

from lmsext import synth
from lmsext.engine.distribution import chi_square, total_variation
from lmsext.models import embedded_model_path

pytestmark = pytest.mark.usefixtures("shared_models_only")

GREEDY = {"temperature": 0, "maxTokens": 60, "logProbs": 1}


@pytest.fixture(scope="module")
def models(module_client):
    """(parallel identity target, solo identity target, the draft's identifier)."""
    c = module_client
    c.llm.load(str(embedded_model_path()), config={"contextLength": 512}, identifier="pspec-draft")
    target = str(synth.identity_target(extra_layers=4, n_ff=0))
    par = c.llm.load(target, config={"contextLength": 1024, "maxParallelPredictions": 3}, identifier="pspec-par")
    solo = c.llm.load(target, config={"contextLength": 512}, identifier="pspec-solo")
    return par, solo, "pspec-draft"


PROMPTS = ["Once upon a time", "Lily and Tom went to the park. Lily and Tom went to the", "One day, a bird"]


def tokens(result) -> list[int]:
    return [lp.token for lp in result.logprobs or []]


def test_a_drafting_sequence_batches_with_the_others_and_equals_its_solo_run(models):
    """Greedy, a batch of 3 (identity draft, prompt lookup, plain): each equals its solo non-speculative run,
    token for token; the drafted rows went into the same steps as the others' tokens; stats per sequence."""
    par, solo, draft = models
    configs = [{**GREEDY, "draftModel": draft}, {**GREEDY, "draftModel": "lookup"}, GREEDY]
    expected = [solo.complete(p, GREEDY) for p in PROMPTS]
    before = scheduler_steps(par)
    results = round_robin([par.complete_stream(p, config=c) for p, c in zip(PROMPTS, configs)])
    n_steps = scheduler_steps(par) - before
    for got, want in zip(results, expected):
        assert tokens(got) == tokens(want) and len(tokens(got)) == 60
        assert got.content == want.content
    drafted, lookup, plain = (r.stats for r in results)
    print(f"steps {n_steps}; draft {drafted.accepted_draft_tokens_count}/{drafted.total_draft_tokens_count}, "
          f"lookup {lookup.accepted_draft_tokens_count}/{lookup.total_draft_tokens_count}")
    assert drafted.used_draft_model_key == draft and lookup.used_draft_model_key == "lookup"
    assert drafted.accepted_draft_tokens_count >= 30 and drafted.rejected_draft_tokens_count == 0
    assert lookup.total_draft_tokens_count == (lookup.accepted_draft_tokens_count + lookup.rejected_draft_tokens_count
                                               + lookup.ignored_draft_tokens_count)
    assert plain.used_draft_model_key is None and plain.total_draft_tokens_count in (None, 0)
    # the plain sequence needs 60 decode steps; a drafting one run apart would add its own rounds
    assert n_steps <= 66, n_steps


def test_cancel_of_the_drafting_sequence_leaves_the_others_unchanged(models):
    par, solo, draft = models
    configs = [{**GREEDY, "draftModel": draft}, {**GREEDY, "draftModel": "lookup"}, GREEDY]
    expected = [solo.complete(p, GREEDY).content for p in PROMPTS]
    streams = [par.complete_stream(p, config=c) for p, c in zip(PROMPTS, configs)]
    iters = [iter(s) for s in streams]
    for _ in range(3):
        for it in iters:
            next(it)
    streams[0].cancel()
    results = round_robin(streams)
    assert results[0].stats.stop_reason == "userStopped" and expected[0].startswith(results[0].content)
    assert len(results[0].content) < len(expected[0])
    assert [r.content for r in results[1:]] == expected[1:]
    again = par.complete(PROMPTS[0], {**GREEDY, "draftModel": draft})  # the draft was released and is usable
    assert again.content == expected[0] and again.stats.accepted_draft_tokens_count > 0


SAMPLED = {"temperature": 1.0, "topKSampling": 0, "topPSampling": False, "minPSampling": False, "repeatPenalty": 1.3,
           "maxTokens": 3, "logProbs": 1, "speculativeDecodingNumDraftTokensExact": 1}
N = 1200


def test_sampled_speculation_in_a_batch_has_the_model_distribution(module_client, models):
    """Seeds run 3 at a time on a parallel perturbed target, each drafting exactly one token (verified in the
    batch with the others' rows): the second token has the model's distribution (chi-square, as
    tests/test_speculative.py does for the one-slot loop), and both branches of the rule ran."""
    _, _, draft = models
    target = module_client.llm.load(str(synth.perturbed_target(extra_layers=4, n_ff=0)),
                                    config={"contextLength": 1024, "maxParallelPredictions": 3})
    prompt = "Once upon a"
    firsts: dict[int, dict[int, int]] = {}
    acc = rej = 0
    try:
        for seed0 in range(0, N, 3):
            streams = [target.complete_stream(prompt, config={**SAMPLED, "seed": s, "draftModel": draft})
                       for s in range(seed0, seed0 + 3)]
            for r in round_robin(streams):
                acc += r.stats.accepted_draft_tokens_count
                rej += r.stats.rejected_draft_tokens_count
                got = tokens(r)
                if len(got) >= 2:
                    counts = firsts.setdefault(got[0], {})
                    counts[got[1]] = counts.get(got[1], 0) + 1
        first = max(firsts, key=lambda t: sum(firsts[t].values()))
        counts = firsts[first]
        n = sum(counts.values())
        assert n > N // 6 and acc > 100 and rej > 20, (n, acc, rej)
        config = {k: v for k, v in SAMPLED.items() if k not in ("maxTokens", "logProbs",
                                                                "speculativeDecodingNumDraftTokensExact")}
        p = target.next_token_distribution(target.tokenize(prompt) + [first], config).probs
        stat, df, pvalue = chi_square(counts, p)
        tv = total_variation(counts, p)
        bound = 1.5 * float(np.sqrt(p * (1 - p) / n).sum()) + 0.005
        print(f"{n} second tokens, accepted {acc} rejected {rej}, chi2 {stat:.1f} on {df} df, p={pvalue:.3f}, "
              f"TV {tv:.4f} (< {bound:.4f})")
        assert pvalue > 1e-3 and tv < bound
        q = module_client.llm.model(draft).next_token_distribution(target.tokenize(prompt) + [first], config).probs
        assert chi_square(counts, q)[2] < 1e-6  # the test has power: the draft's own distribution is rejected
    finally:
        target.unload()


def test_three_sequences_share_one_draft_model_with_their_own_stop_strings(models):
    """One draft model proposes for three batched sequences in turn (its one context follows each text): each
    equals its solo run, stop strings included, and each has its own stats."""
    par, solo, draft = models
    configs = [GREEDY, {**GREEDY, "stopStrings": ["."]}, {**GREEDY, "maxTokens": 25}]
    expected = [solo.complete(p, c) for p, c in zip(PROMPTS, configs)]
    results = round_robin([par.complete_stream(p, config={**c, "draftModel": draft})
                           for p, c in zip(PROMPTS, configs)])
    for got, want in zip(results, expected):
        assert got.content == want.content and tokens(got) == tokens(want)
        assert got.stats.stop_reason == want.stats.stop_reason
        assert got.stats.accepted_draft_tokens_count > 0 and got.stats.rejected_draft_tokens_count == 0
    assert results[1].stats.stop_reason == "stopStringFound"


def test_a_busy_draft_model_is_one_line_and_nothing_is_lost(module_client, models):
    """A draft model busy with its own prediction: the parallel prediction that names it raises ModelBusyError in
    one line (as on a one-slot instance); the draft's prediction, the instance and the draft all go on."""
    from lmsext.errors import ModelBusyError
    par, solo, draft = models
    own = module_client.llm.model(draft).complete_stream("Once upon a time", {"maxTokens": 30})
    it = iter(own)
    next(it)
    with pytest.raises(ModelBusyError) as info:
        par.complete(PROMPTS[0], {**GREEDY, "draftModel": draft})
    assert "\n" not in str(info.value) and "busy" in str(info.value)
    list(it)
    assert own.result().stats.stop_reason == "maxPredictedTokensReached"
    again = par.complete(PROMPTS[0], {**GREEDY, "draftModel": draft})
    assert again.content == solo.complete(PROMPTS[0], GREEDY).content and again.stats.accepted_draft_tokens_count > 0


def test_grammar_stop_strings_and_overflow_with_drafts_in_a_batch(module_client, models):
    """Two sequences of 256 tokens each (not unified), both drafting (the model, prompt lookup) on one prompt (on
    another a near tie flips under the batch's rounding, with the one-slot loop's drafts too): stop strings,
    a JSON grammar, rollingWindow context shifts and stopAtLimit give the plain one-slot run's text and stop
    reason on a 256-token context."""
    _, _, draft = models
    target = str(synth.identity_target(extra_layers=4, n_ff=0))
    split = module_client.llm.load(target, config={"contextLength": 512, "maxParallelPredictions": 2,
                                                   "useUnifiedKvCache": False})
    alone = module_client.llm.load(target, config={"contextLength": 256})
    cases = [
        {"stopStrings": ["park"], "maxTokens": 200},
        {"structured": {"type": "json", "jsonSchema": {"type": "object", "properties": {
            "name": {"type": "string", "maxLength": 12}}, "required": ["name"]}}, "maxTokens": 60},
        {"contextOverflowPolicy": "rollingWindow", "maxTokens": 400},
        {"contextOverflowPolicy": "stopAtLimit", "maxTokens": 400},
    ]
    try:
        for extra in cases:
            config = {"temperature": 0, "logProbs": 1, **extra}
            plain = [alone.complete(PROMPTS[0], config)] * 2
            got = round_robin([split.complete_stream(PROMPTS[0], config={**config, "draftModel": d})
                               for d in (draft, "lookup")])
            for g, want in zip(got, plain):
                assert g.stats.stop_reason == want.stats.stop_reason, extra
                if extra.get("contextOverflowPolicy") == "rollingWindow":
                    # up to the first context shift; after it a verification batch over the shifted cells may round
                    # a near tie differently from a single step (the one-slot loop with a draft does too)
                    m = 256 - want.stats.prompt_tokens_count - 1
                    assert tokens(g)[:m] == tokens(want)[:m] and len(tokens(g)) == len(tokens(want)) == 400
                else:
                    assert g.content == want.content and tokens(g) == tokens(want), extra
        assert plain[0].stats.stop_reason == "contextLengthReached"
        assert got[0].stats.accepted_draft_tokens_count > 0
    finally:
        split.unload()
        alone.unload()


def test_unloading_the_instance_while_sequences_draft_releases_the_draft(module_client, models):
    """An unload during drafting streams ends them all and frees the draft's context: the draft model then runs
    a prediction of its own (its lock was released)."""
    _, _, draft = models
    par = module_client.llm.load(str(synth.identity_target(extra_layers=4, n_ff=0)),
                                 config={"contextLength": 1024, "maxParallelPredictions": 3})
    streams = [par.complete_stream(p, config={**GREEDY, "maxTokens": 400, "draftModel": draft}) for p in PROMPTS]
    iters = [iter(s) for s in streams]
    for it in iters:
        next(it)
    par.unload()
    for it in iters:
        list(it)
    assert all(s.result().stats.stop_reason == "userStopped" for s in streams)
    own = module_client.llm.model(draft).complete("Once upon a time", {"maxTokens": 10})
    assert own.stats.stop_reason == "maxPredictedTokensReached"


def test_the_draft_context_keeps_each_sequences_text_under_its_own_seq_id(models):
    """Three sequences share the draft: its context (the scheduler's, one seq_id per slot) holds all three texts at
    once — each slot's draft cache is that sequence's own accepted text — and is freed when they end."""
    from lmsext.engine.scheduler import scheduler_for
    par, _, draft = models
    sched = scheduler_for(par._loaded.handle)
    streams = [par.complete_stream(p, config={**GREEDY, "draftModel": draft}) for p in PROMPTS]
    iters = [iter(s) for s in streams]
    for _ in range(4):
        for it in iters:
            next(it)
    (users, context), = sched.drafts.values()
    assert users == 3
    for slot in sched.slots:
        seq = slot.seq
        assert seq is not None and len(context.cached[slot.seq_id]) > len(seq.prompt)
        n = len(context.cached[slot.seq_id])
        # its draft cache is this sequence's text (up to the draft tokens not yet verified)
        assert context.cached[slot.seq_id][:len(seq.prompt)] == seq.prompt
        assert context.cached[slot.seq_id][:n - 8] == (slot.cached + [seq.pending])[:n - 8]
    round_robin(streams)
    assert sched.drafts == {} and context.ctx is None


def test_rest_requests_with_draft_model_run_together_on_a_parallel_instance(module_client, models):
    """Three concurrent /v1/completions on the parallel instance (draft_model: the draft, lookup, none): each text is
    the solo run's, the draft stats come back, no request waits for another (no 409)."""
    httpx = pytest.importorskip("httpx")
    pytest.importorskip("uvicorn")
    from concurrent.futures import ThreadPoolExecutor
    from lmsext import server as rest
    par, solo, draft = models
    handle = rest.serve(port=0, client=module_client)
    try:
        with httpx.Client(base_url=handle.url, timeout=60) as http:
            def post(i: int) -> dict:
                body = {"model": "pspec-par", "prompt": PROMPTS[i], "max_tokens": 40, "temperature": 0}
                if i < 2:
                    body["draft_model"] = (draft, "lookup")[i]
                r = http.post("/v1/completions", json=body)
                assert r.status_code == 200, r.text
                return r.json()
            with ThreadPoolExecutor(3) as pool:
                got = list(pool.map(post, range(3)))
        for i, body in enumerate(got):
            assert body["choices"][0]["text"] == solo.complete(PROMPTS[i], {**GREEDY, "maxTokens": 40}).content
        assert got[0]["stats"]["used_draft_model_key"] == draft and got[0]["stats"]["accepted_draft_tokens_count"] > 0
        assert got[1]["stats"]["used_draft_model_key"] == "lookup" and "used_draft_model_key" not in got[2]["stats"]
    finally:
        handle.stop()
