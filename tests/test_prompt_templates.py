"""promptTemplate (LM Studio's LLMPromptTemplate): manual and Jinja chat formats chosen per prediction, on the
embedded base model and a generated ChatML model — rendering, tokens, stop strings, KV reuse, errors, REST."""

from __future__ import annotations

import json

import httpx
import pytest
from magic_runner import run

import lmsext

from lmsext import server as rest
from lmsext import synth
from lmsext.config import PredictionConfig
from lmsext.config.prompt_template import BUILTIN_TEMPLATES
from lmsext.errors import ConfigError

CHAT = [{"role": "system", "content": "A story."}, {"role": "user", "content": "Tell me about a cat"}]
GREEDY = {"temperature": 0, "maxTokens": 24}
HASH_TEMPLATE = {"type": "manual", "stopStrings": ["#"], "manualPromptTemplate": {
    "beforeSystem": "", "afterSystem": "\n", "beforeUser": "# Q: ", "afterUser": "\n",
    "beforeAssistant": "# A:", "afterAssistant": "\n"}}
JINJA = {"type": "jinja", "jinjaPromptTemplate": {
    "template": "{{ bos_token }}{% for m in messages %}[{{ m.role }}] {{ m.content }}\n{% endfor %}"
                "{% if add_generation_prompt %}[assistant]{% endif %}", "bosToken": "", "eosToken": ""},
    "stopStrings": ["[user]"]}


@pytest.fixture(scope="module")
def chatml(module_client, tmp_path_factory):
    return module_client.llm.load(str(synth.chatml_model(tmp_path_factory.mktemp("chatml"))),
                                  config={"contextLength": 512})


def test_manual_templates_render_each_role_and_the_generation_prompt(module_model):
    chat = [*CHAT, {"role": "assistant", "content": " It sat."}, {"role": "user", "content": "More"}]
    text = module_model.apply_prompt_template(chat, {"promptTemplate": HASH_TEMPLATE})
    assert text == "A story.\n# Q: Tell me about a cat\n# A: It sat.\n# Q: More\n# A:"
    alpaca = module_model.apply_prompt_template(CHAT, {"promptTemplate": "alpaca"})
    assert alpaca == "A story.\n\n### Instruction:\nTell me about a cat\n\n### Response:\n"
    assert set(BUILTIN_TEMPLATES) == {"chatml", "llama3", "alpaca", "plain"}
    # the camelCase and snake_case spellings are the same setting
    snake = PredictionConfig.parse({"prompt_template": {"type": "manual", "stop_strings": ["#"], "manual_prompt_template": {
        "before_user": "# Q: ", "after_user": "\n", "before_assistant": "# A:", "after_assistant": "\n",
        "before_system": "", "after_system": "\n"}}})
    assert snake == PredictionConfig.parse({"promptTemplate": HASH_TEMPLATE})


def test_plain_template_is_what_the_fallback_gives_a_base_model(module_model):
    ours = module_model.respond(CHAT, {**GREEDY, "promptTemplate": "plain"})
    fallback = module_model.respond(CHAT, GREEDY)
    assert ours.prompt == "A story.\n\nUser: Tell me about a cat\nAssistant:"
    assert fallback.prompt.endswith(ours.prompt)  # the fallback's text shows the BOS it tokenized
    assert ours.stats.prompt_tokens_count == fallback.stats.prompt_tokens_count
    assert ours.content == fallback.content and ours.content


def test_the_template_is_what_the_model_sees_and_its_stop_strings_apply(module_model):
    hashed = module_model.respond(CHAT, {**GREEDY, "promptTemplate": HASH_TEMPLATE})
    expected = module_model.apply_prompt_template(CHAT, {"promptTemplate": HASH_TEMPLATE})
    assert hashed.prompt == expected
    assert hashed.stats.prompt_tokens_count == module_model.count_tokens(expected)
    raw = module_model.complete(expected, {"temperature": 0, "maxTokens": 24, "stopStrings": ["#"]})
    assert hashed.content == raw.content  # the same tokens as the raw text continued (BOS once)
    stop = module_model.respond(CHAT, {**GREEDY, "promptTemplate": {**HASH_TEMPLATE, "stopStrings": ["."]}})
    assert stop.stats.stop_reason == "stopStringFound" and stop.stats.stop_string == "."
    assert "." not in stop.content
    assert hashed.prediction_config["promptTemplate"]["type"] == "manual"  # reported as asked


def test_a_chat_in_a_template_reuses_its_earlier_turns_from_the_kv_cache(module_model):
    config = {**GREEDY, "promptTemplate": "alpaca"}
    first = module_model.respond(CHAT, config)
    second = module_model.respond([*CHAT, {"role": "assistant", "content": first.content},
                                   {"role": "user", "content": "And then?"}], config)
    assert second.stats.cached_prompt_tokens_count >= first.stats.prompt_tokens_count - 1


def test_jinja_template_with_its_own_bos_and_special_tokens(chatml):
    jinja = module_text = chatml.apply_prompt_template(CHAT, {"promptTemplate": JINJA})
    assert module_text == "[system] A story.\n[user] Tell me about a cat\n[assistant]"
    # the built-in chatml template makes exactly the model's own ChatML prompt, special tokens parsed
    ours = chatml.respond(CHAT, {**GREEDY, "promptTemplate": "chatml"})
    own = chatml.respond(CHAT, GREEDY)
    assert ours.prompt == chatml.apply_prompt_template(CHAT)  # the model's own template's text
    assert ours.stats.prompt_tokens_count == own.stats.prompt_tokens_count
    assert ours.stats.prompt_tokens_count == len(chatml.tokenize_chat(CHAT))
    assert ours.content == own.content
    model_bos = chatml.token_text(chatml.get_info().bos_token_id)
    with_model_bos = chatml.apply_prompt_template(CHAT, {"promptTemplate": {**JINJA, "jinjaPromptTemplate": {
        "template": JINJA["jinjaPromptTemplate"]["template"]}}})
    assert with_model_bos == model_bos + jinja  # bosToken unset: the model's


@pytest.mark.parametrize("template, message", [
    ("{{ x | nofilter }}", "promptTemplate's Jinja template does not compile: No filter named 'nofilter'"),
    ("{{ raise_exception('no system role') }}", "promptTemplate's Jinja template failed: no system role"),
    ("{% for i in range(10**9) %}{% endfor %}", "promptTemplate's Jinja template failed: OverflowError"),
    ("{% set s = namespace(t='x') %}{% for i in range(40) %}{% set s.t = s.t ~ s.t %}{% endfor %}",
     "promptTemplate's Jinja template failed"),
])
def test_a_template_that_fails_is_one_line_and_the_model_survives(module_model, template, message):
    config = {**GREEDY, "promptTemplate": {"type": "jinja", "jinjaPromptTemplate": {"template": template}}}
    with pytest.raises(ConfigError) as err:
        module_model.respond(CHAT, config)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)
    assert module_model.respond(CHAT, GREEDY).content  # loaded and working


def test_rest_and_openai_endpoints_take_prompt_template(module_client, module_model):
    python = module_model.respond([CHAT[1]], {**GREEDY, "promptTemplate": HASH_TEMPLATE})
    with rest.serve(port=0, client=module_client) as handle, httpx.Client(base_url=handle.url, timeout=60) as http:
        body = http.post("/api/v1/chat", json={"model": module_model.identifier, "input": CHAT[1]["content"],
                                               "temperature": 0, "max_output_tokens": 24,
                                               "prompt_template": HASH_TEMPLATE}).json()
        assert body["output"][0]["content"] == python.content, body
        oa = http.post("/v1/chat/completions", json={"model": module_model.identifier, "messages": [CHAT[1]],
                                                     "temperature": 0, "max_tokens": 24,
                                                     "prompt_template": HASH_TEMPLATE}).json()
        assert oa["choices"][0]["message"]["content"] == python.content, oa
        bad = http.post("/api/v1/chat", json={"model": module_model.identifier, "input": "hi",
                                              "prompt_template": {"type": "manual"}})
        assert bad.status_code == 400 and bad.json()["error"]["param"].startswith("prompt_template"), bad.text
        broken = {"type": "jinja", "jinjaPromptTemplate": {"template": "{{ raise_exception('nope') }}"}}
        bad = http.post("/v1/chat/completions", json={"model": module_model.identifier, "messages": [CHAT[1]],
                                                      "prompt_template": broken})
        assert bad.status_code == 400 and "nope" in bad.json()["error"]["message"], bad.text
        assert http.post("/api/v1/chat", json={"model": module_model.identifier, "input": "hi",
                                               "max_output_tokens": 2}).status_code == 200  # still serving


def _red_line(cap) -> str:
    reds = [o.data["text/plain"] for o in cap.outputs if o.data.get("text/html", "").startswith('<span style="color:red">')]
    assert len(reds) == 1 and "\n" not in reds[0].strip(), cap.outputs
    return reds[0]


def test_lm_respond_template_by_name_json_file_and_jinja_file(ip, tmp_path, unload_all):
    run(ip, "%lm_load stories260K --context-length 512")
    llm = lmsext.default_client().llm.get("stories260K")
    flags = "--no-history --temperature 0 --max-tokens 24"
    run(ip, f"%%lm_respond --template alpaca {flags}", "Tell me about a cat")
    result = ip.user_ns["_lm"]
    assert result.prompt == "### Instruction:\nTell me about a cat\n\n### Response:\n"
    assert result.content == llm.respond([CHAT[1]], {**GREEDY, "promptTemplate": "alpaca"}).content
    (tmp_path / "hash.json").write_text(json.dumps(HASH_TEMPLATE))
    run(ip, f"%%lm_respond --template {tmp_path / 'hash.json'} {flags}", "Tell me about a cat")
    assert ip.user_ns["_lm"].prompt == "# Q: Tell me about a cat\n# A:"
    (tmp_path / "t.jinja").write_text(JINJA["jinjaPromptTemplate"]["template"])
    run(ip, f"%%lm_respond --template {tmp_path / 't.jinja'} {flags}", "Tell me about a cat")
    assert ip.user_ns["_lm"].prompt.endswith("[user] Tell me about a cat\n[assistant]")
    _, cap = run(ip, f"%%lm_respond --template chatm {flags}", "hi")
    assert "--template 'chatm': neither a built-in template (chatml, llama3, alpaca, plain) nor a file" in _red_line(cap)
    (tmp_path / "bad.jinja").write_text("{% for %}")
    _, cap = run(ip, f"%%lm_respond --template {tmp_path / 'bad.jinja'} {flags}", "hi")
    assert "promptTemplate's Jinja template does not compile" in _red_line(cap)


def test_prediction_panel_template_field(ip, unload_all):
    from lmsext.session import get_session
    from lmsext.widgets import PredictionPanel
    lmsext.default_client().llm.load("stories260K", config={"contextLength": 512})
    session = get_session()
    session.update("predict", GREEDY)
    panel = PredictionPanel()
    try:
        assert panel.prompt_template.value == ""
        panel.prompt_template.value = "alpaca"
        assert session.prediction_config.prompt_template == PredictionConfig.parse({"promptTemplate": "alpaca"}).prompt_template
        panel.prompt.value = "Tell me about a cat"
        panel.send_button.click()
        panel.join(30)
        assert panel.result.prompt.endswith("Tell me about a cat\n\n### Response:\n")
        panel.prompt_template.value = "nope"  # one line in the status; the session keeps alpaca
        assert "no built-in template of that name" in panel.status.value
        assert panel.prompt_template.value == "alpaca"
        session.update("predict", {"promptTemplate": HASH_TEMPLATE})  # from elsewhere: shown as JSON
        assert json.loads(panel.prompt_template.value)["manualPromptTemplate"]["beforeUser"] == "# Q: "
        panel.prompt_template.value = ""
        assert session.prediction_config.prompt_template is None
    finally:
        panel.close()
        session.reset("predict")
