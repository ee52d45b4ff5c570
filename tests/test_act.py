"""Tools on the real engine: definitions rendered through the chat template, calls parsed from what the model
really wrote (a grammar forces the text, so every run is the same), and ``act()``'s multi-round loop —
errors of a tool or of its arguments go back to the model, never into the kernel."""

from __future__ import annotations

import json

import pytest

from lmsext import synth
from lmsext.engine.resolve import embedded_model_path
from lmsext.tools import ActView, Tool, ToolDefinition

FORCE = {"rawTools": {"type": "toolArray", "force": True}, "temperature": 0, "maxTokens": 100}
ADD = {"type": "function", "function": {
    "name": "add", "description": "Add two integers",
    "parameters": {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
                   "required": ["a", "b"]}}}
# Qwen 2.5's tool template, shortened: tools in the system turn, calls as <tool_call> JSON, results as <tool_response>
HERMES_TEMPLATE = """{%- if tools %}<|im_start|>system
# Tools

<tools>
{% for tool in tools %}{{ tool | tojson }}
{% endfor %}</tools>
Return each call as a JSON object within <tool_call></tool_call> tags.<|im_end|>
{% endif %}
{%- for message in messages %}
{%- if message.role == 'user' or (message.role == 'assistant' and not message.tool_calls) %}<|im_start|>{{ message.role }}
{{ message.content }}<|im_end|>
{% elif message.role == 'assistant' %}<|im_start|>assistant
{% for tc in message.tool_calls %}<tool_call>
{"name": "{{ tc.function.name }}", "arguments": {{ tc.function.arguments | tojson }}}
</tool_call>{% endfor %}<|im_end|>
{% elif message.role == 'tool' %}<|im_start|>user
<tool_response>
{{ message.content }}
</tool_response><|im_end|>
{% endif %}
{%- endfor %}
{%- if add_generation_prompt %}<|im_start|>assistant
{% endif %}"""


def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def literal(text: str) -> dict:
    """A structured setting whose grammar allows exactly ``text``: the model writes it, token by token."""
    return {"type": "gbnf", "gbnfGrammar": f"root ::= {json.dumps(text)}"}


@pytest.fixture(scope="module")
def stories(module_client):
    return module_client.llm.load(str(embedded_model_path()), config={"contextLength": 1024})


@pytest.fixture(scope="module")
def hermes(module_client, tmp_path_factory):
    path = synth.write_model(tmp_path_factory.mktemp("tools") / "hermes.gguf", chat_template=HERMES_TEMPLATE,
                             name="lmsext-synth-hermes-tools")
    return module_client.llm.load(str(path), config={"contextLength": 1024})


# -- the prompt and the parsed calls of one prediction ----------------------------------------------------


def test_tool_definitions_reach_the_models_template_and_history_renders_calls_and_results(hermes):
    seen = []
    result = hermes.act("What is 2 + 3?", [add], max_prediction_rounds=2, config=FORCE,
                        on_prediction_completed=seen.append)
    first, second = seen[0].prompt, seen[1].prompt
    listed = first.split("<tools>\n")[1].split("\n</tools>")[0]
    assert json.loads(listed) == ToolDefinition.model_validate(
        {"type": "function", "function": {"name": "add", "description": "Add two integers.",
                                          "parameters": seen[0].prediction_config["rawTools"]["tools"][0]["function"]
                                          ["parameters"]}}).to_dict()
    call = result.tool_calls[0].request
    # round 2: the last round offers no tools; the history carries the call and its result as Qwen writes them
    assert "<tools>" not in second and "<tool_response>" in second
    rendered = hermes.apply_prompt_template(result.chat.messages[:3])  # what round 2 rendered (as text)
    assert (f'<tool_call>\n{{"name": "add", "arguments": {json.dumps(call.arguments)}}}\n</tool_call><|im_end|>\n'
            f'<|im_start|>user\n<tool_response>\n{call.arguments["a"] + call.arguments["b"]}\n</tool_response>') in rendered


def test_the_fallback_template_lists_tools_for_a_base_model(stories):
    result = stories.respond("Hi", {"rawTools": {"type": "toolArray", "tools": [ADD]}, "maxTokens": 1})
    assert result.prompt.startswith('<s> Tools (call one as {"name": ..., "arguments": {...}}):\n'
                                    '{"name": "add", "description": "Add two integers", "parameters": ')
    assert result.prompt.endswith("\n\nUser: Hi\nAssistant:")
    assert "Tools" not in stories.respond("Hi", {"maxTokens": 1}).prompt


@pytest.mark.parametrize("text", [
    '<tool_call>\n{"name": "add", "arguments": {"a": 1, "b": 2}}\n</tool_call>',
    '{"name": "add", "parameters": {"a": 1, "b": 2}}',
    '[TOOL_CALLS][{"name": "add", "arguments": {"a": 1, "b": 2}}]',
])
def test_calls_the_model_writes_in_each_family_format_are_parsed(stories, text):
    result = stories.respond("Hi", {"structured": literal(text), "rawTools": {"type": "toolArray", "tools": [ADD]},
                                    "maxTokens": 200})
    assert result.content == text
    assert [(c.name, c.arguments) for c in result.tool_calls] == [("add", {"a": 1, "b": 2})]


def test_a_tool_call_stop_string_ends_the_prediction_with_the_call(stories):
    text = '<tool_call>{"name": "add", "arguments": {"a": 1, "b": 2}}</tool_call> and then a story'
    result = stories.respond("Hi", {"structured": literal(text), "toolCallStopStrings": ["</tool_call>"],
                                    "rawTools": {"type": "toolArray", "tools": [ADD]}, "maxTokens": 200})
    assert result.stats.stop_reason == "toolCalls"
    assert [(c.name, c.arguments) for c in result.tool_calls] == [("add", {"a": 1, "b": 2})]


def test_a_malformed_call_is_text_with_a_note(stories):
    text = '<tool_call>{"name": "add", "arguments": {"a": 1,</tool_call>'
    result = stories.respond("Hi", {"structured": literal(text), "rawTools": {"type": "toolArray", "tools": [ADD]},
                                    "maxTokens": 200})
    assert result.content == text and result.tool_calls == []
    assert result.stats.notes == ["hermes tool call ignored: not JSON (Expecting property name enclosed in double "
                                  "quotes at character 37)"]


def test_forcing_makes_even_the_embedded_model_write_a_valid_call(stories):
    result = stories.respond("What is 2 + 3?", {**FORCE, "rawTools": {"type": "toolArray", "tools": [ADD],
                                                                      "force": True}})
    (call,) = result.tool_calls
    assert call.name == "add" and set(call.arguments) == {"a", "b"}
    assert all(isinstance(v, int) for v in call.arguments.values())
    assert result.stats.notes == []


# -- act() ------------------------------------------------------------------------------------------------


def test_two_round_loop_runs_the_tool_and_ends_with_an_answer(stories):
    calls, messages, starts, completed, ends, firsts, fragments = [], [], [], [], [], [], []

    def tracked_add(a: int, b: int) -> int:
        """Add two integers."""
        calls.append((a, b))
        return a + b

    result = stories.act("What is 2 + 3?", [tracked_add], max_prediction_rounds=2, config=FORCE,
                         on_message=messages.append, on_round_start=starts.append,
                         on_prediction_completed=completed.append, on_round_end=ends.append,
                         on_first_token=firsts.append,
                         on_prediction_fragment=lambda fragment, i: fragments.append((i, fragment.content)))
    assert result.rounds == 2 and result.total_time_seconds > 0
    assert starts == ends == firsts == [0, 1] and [r.round_index for r in completed] == [0, 1]
    for i in (0, 1):  # each round's fragments, tagged with its index, make its reply
        assert "".join(text for j, text in fragments if j == i) == completed[i].content
    ((a, b),) = calls
    assert [m["role"] for m in messages] == ["assistant", "tool", "assistant"]
    assert messages[0]["tool_calls"][0]["function"] == {"name": "tracked_add", "arguments": {"a": a, "b": b}}
    assert messages[1] == {"role": "tool", "content": str(a + b), "tool_call_id": "call_0", "name": "tracked_add"}
    assert "tool_calls" not in messages[2] and messages[2]["content"] == completed[1].content
    assert result.chat.messages == [{"role": "user", "content": "What is 2 + 3?"}] + messages
    assert result.tool_calls[0].error is False and result.tool_calls[0].result == str(a + b)


def test_the_round_limit_ends_the_loop(stories):
    runs = []

    def count(n: int) -> str:
        """Count."""
        runs.append(n)
        return "again"

    result = stories.act("Count", [count], max_prediction_rounds=3, config=FORCE)
    assert result.rounds == 3 and len(runs) == 2  # the last round offers no tools
    assert [m["role"] for m in result.chat.messages] == ["user", "assistant", "tool", "assistant", "tool", "assistant"]


def test_a_tool_that_raises_gives_the_model_an_error_result(stories):
    def divide(a: int, b: int) -> float:
        """Divide."""
        raise ZeroDivisionError("no dividing today")

    result = stories.act("Divide", [divide], max_prediction_rounds=2, config=FORCE)
    outcome = result.tool_calls[0]
    assert outcome.error and outcome.result == "Error: divide raised ZeroDivisionError: no dividing today"
    assert result.chat.messages[2]["content"] == outcome.result and result.rounds == 2
    assert stories.loaded
    # LM Studio's hook sees the failure and may reword what the model gets
    seen = []
    result = stories.act("Divide", [divide], max_prediction_rounds=2, config=FORCE,
                         handle_invalid_tool_request=lambda error, request: seen.append((str(error), request.name))
                         or "Dividing is closed today.")
    assert seen == [("Error: divide raised ZeroDivisionError: no dividing today", "divide")]
    assert result.chat.messages[2]["content"] == result.tool_calls[0].result == "Dividing is closed today."


def test_arguments_the_schema_refuses_give_the_model_an_error_result(stories):
    # the grammar cannot enforce multipleOf: the model writes a number jsonschema then refuses
    strict = json.loads(json.dumps(ADD))
    strict["function"]["parameters"]["properties"]["a"]["multipleOf"] = 1000
    ran = []
    tool = Tool(ToolDefinition.model_validate(strict), lambda a, b: ran.append(a))
    result = stories.act("Add", [tool], max_prediction_rounds=2, config=FORCE)
    outcome = result.tool_calls[0]
    a = outcome.request.arguments["a"]
    assert a % 1000 != 0 and ran == []
    assert outcome.error and outcome.result == f"Error: invalid arguments for add: a: {a} is not a multiple of 1000"


def test_a_round_without_a_call_ends_the_loop(stories):
    result = stories.act("Hi", [add], max_prediction_rounds=5,
                         config={"structured": literal("No tools needed."), "maxTokens": 50})
    assert result.rounds == 1 and result.tool_calls == []
    assert result.chat.messages[-1] == {"role": "assistant", "content": "No tools needed."}


def test_bad_act_arguments_are_one_line(stories):
    from lmsext.errors import ConfigError
    with pytest.raises(ConfigError, match=r"^rawTools\.force makes every round call a tool: give max_prediction_rounds$"):
        stories.act("Hi", [add], config=FORCE)
    with pytest.raises(ConfigError, match=r"^max_prediction_rounds=0: must be an integer >= 1$"):
        stories.act("Hi", [add], max_prediction_rounds=0)
    with pytest.raises(ConfigError, match=r"^rawTools\.force constrains the output to a tool call"):
        stories.respond("Hi", {**FORCE, "rawTools": {"type": "toolArray", "tools": [ADD], "force": True},
                               "structured": {"type": "json"}})
    assert stories.loaded


def test_the_view_shows_each_round_as_it_happens(stories):
    view = ActView(display=False)
    snapshots = []

    def add_and_look(a: int, b: int) -> int:
        """Add two integers."""
        snapshots.append(view._repr_mimebundle_()["text/plain"])  # the call is shown before its result
        return a + b

    result = stories.act("What is 2 + 3?", [add_and_look], max_prediction_rounds=2, config=FORCE, **view.callbacks())
    call = result.tool_calls[0].request
    args = json.dumps(call.arguments)
    assert snapshots == [f"round 1 …\n  add_and_look({args}) → …"]
    final = view._repr_mimebundle_()
    assert final["text/plain"].startswith(f"round 1\n  add_and_look({args}) → {sum(call.arguments.values())}\nround 2\n  answer: ")
    assert "<code>add_and_look</code>" in final["text/html"] and "running" not in final["text/html"]
