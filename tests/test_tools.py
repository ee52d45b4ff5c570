"""Tools: the ``rawTools`` / ``toolCallStopStrings`` settings in LM Studio's shapes, tool definitions made
from Python functions, and tool calls parsed from each template family's output format."""

from __future__ import annotations

import enum
from typing import Literal, Optional

import pytest

from lmsext.config import PredictionConfig
from lmsext.errors import ConfigError
from lmsext.tools import ToolDefinition, as_tools, parse_tool_calls, tool_from_function

ADD = {"type": "function", "function": {
    "name": "add", "description": "Add two integers",
    "parameters": {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
                   "required": ["a", "b"]}}}


# -- the settings ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("raw_key, stop_key", [("rawTools", "toolCallStopStrings"),
                                               ("raw_tools", "tool_call_stop_strings")])
def test_raw_tools_and_tool_call_stop_strings_parse_in_both_spellings(raw_key, stop_key):
    config = PredictionConfig.parse({raw_key: {"type": "toolArray", "tools": [ADD], "force": True},
                                     stop_key: "</tool_call>"})
    assert config.raw_tools.type == "toolArray" and config.raw_tools.force is True
    assert [t.name for t in config.raw_tools.active] == ["add"]
    assert config.tool_call_stop_strings == ["</tool_call>"]
    # LM Studio's SDK shape comes back unchanged (camel) and round-trips
    camel = config.to_dict("camel")
    assert camel["rawTools"] == {"type": "toolArray", "tools": [ADD], "force": True}
    assert PredictionConfig.parse(camel) == config
    assert PredictionConfig.parse({raw_key: {"type": "none"}}).raw_tools.active == []


@pytest.mark.parametrize("raw, message", [
    ({"type": "toolarray"}, r"^rawTools=.*: must be \{'type': 'toolArray'"),
    ({"type": "toolArray", "tools": [{"type": "function", "function": {"name": "a b"}}]},
     r"^rawTools\.tools\[0\]\.function\.name='a b': must be 1 to 64 letters"),
    ({"type": "toolArray", "tools": [{"function": {"name": "f", "parameters": {"type": "object",
                                                                            "properties": {"x": {"type": "nope"}}}}}]},
     r"^rawTools\.tools\[0\]\.function\.parameters\.properties\.x\.type: not a valid JSON schema"),
    ({"type": "toolArray", "tools": [{"function": {"name": "f", "parameters": {"type": "string"}}}]},
     r"^rawTools\.tools\[0\]\.function\.parameters=.*must be a JSON schema of an object"),
    ({"type": "toolArray", "tools": [ADD, ADD]}, r"two tools are named 'add'"),
    ({"type": "toolArray", "force": "yes"}, r"^rawTools\.force='yes': must be true or false$"),
    ({"type": "none", "tools": [ADD]}, r"type 'none' takes no tools"),
])
def test_bad_raw_tools_are_one_line_naming_the_key(raw, message):
    with pytest.raises(ConfigError, match=message) as info:
        PredictionConfig.parse({"rawTools": raw})
    assert "\n" not in str(info.value)


# -- definitions from Python functions -------------------------------------------------------------------


class Unit(enum.Enum):
    C = "celsius"
    F = "fahrenheit"


def weather(city: str, days: int = 1, unit: Unit = Unit.C, hourly: Optional[bool] = None,
            kind: Literal["rain", "sun"] = "sun") -> str:
    """Forecast for a city.

    Longer notes that are not the description."""
    return f"{city}: {kind}"


def test_a_python_function_makes_a_definition_with_a_json_schema():
    tool = tool_from_function(weather)
    fn = tool.definition.function
    assert (fn.name, fn.description) == ("weather", "Forecast for a city.")
    props = fn.parameters["properties"]
    assert fn.parameters["required"] == ["city"]
    assert props["city"] == {"type": "string"} and props["days"] == {"type": "integer", "default": 1}
    assert props["kind"]["enum"] == ["rain", "sun"]
    assert fn.parameters["additionalProperties"] is False
    assert "title" not in str(fn.parameters)  # pydantic's titles are noise in a prompt
    # the schema is enforced on the arguments with jsonschema
    assert tool.argument_errors({"city": "Oslo", "days": 3}) is None
    assert tool.argument_errors({"city": "Oslo", "days": "3"}) == "days: '3' is not of type 'integer'"
    assert "required property" in tool.argument_errors({})
    assert "'extra' was unexpected" in tool.argument_errors({"city": "x", "extra": 1})
    # an overridden name / description; dicts and ToolDefinitions are tools too
    assert tool_from_function(weather, name="w", description="d").definition.to_dict()["function"]["name"] == "w"
    tools = as_tools([weather, ADD, ToolDefinition.model_validate(
        {"type": "function", "function": {"name": "noop"}})])
    assert [t.name for t in tools] == ["weather", "add", "noop"]
    assert tools[2].argument_errors({}) is None  # no parameters: an empty object is fine


def test_bad_tool_lists_are_one_line():
    with pytest.raises(ConfigError, match=r"^tools: int is not a tool"):
        as_tools([1])
    with pytest.raises(ConfigError, match=r"^tools must be a list"):
        as_tools(weather.__name__)
    with pytest.raises(ConfigError, match=r"two tools are named 'weather'"):
        as_tools([weather, weather])


# -- parsing each family's format -----------------------------------------------------------------------

NAMES = ["add", "weather"]


@pytest.mark.parametrize("text, fmt, content", [
    # Qwen 2.5 / Hermes: tags around JSON, several calls, text around them
    ('Let me add.\n<tool_call>\n{"name": "add", "arguments": {"a": 1, "b": 2}}\n</tool_call>', "hermes", "Let me add."),
    # stopped on "</tool_call>" as a toolCallStopString: no closing tag
    ('<tool_call>{"name": "add", "arguments": {"a": 1, "b": 2}}', "hermes", ""),
    # Llama 3.x JSON ("parameters"), with or without <|python_tag|>
    ('{"name": "add", "parameters": {"a": 1, "b": 2}}', "llama3", ""),
    ('<|python_tag|>{"name": "add", "parameters": {"a": 1, "b": 2}}', "llama3", ""),
    # Mistral v3 list and v11 name[ARGS]
    ('[TOOL_CALLS][{"name": "add", "arguments": {"a": 1, "b": 2}}]', "mistral", ""),
    ('[TOOL_CALLS]add[ARGS]{"a": 1, "b": 2}', "mistral", ""),
    # OpenAI-shaped with arguments as a JSON string
    ('<tool_call>{"function": {"name": "add", "arguments": "{\\"a\\": 1, \\"b\\": 2}"}}</tool_call>', "hermes", ""),
])
def test_each_family_format_parses_to_the_same_call(text, fmt, content):
    found = parse_tool_calls(text, NAMES)
    assert found.format == fmt and found.notes == []
    assert [(c.name, c.arguments) for c in found.calls] == [("add", {"a": 1, "b": 2})]
    assert found.content == content and found.calls[0].id == "call_0"


def test_several_calls_in_one_reply():
    text = ('<tool_call>{"name": "add", "arguments": {"a": 1, "b": 2}}</tool_call>\n'
            '<tool_call>{"name": "weather", "arguments": {"city": "Oslo"}}</tool_call>')
    assert [c.name for c in parse_tool_calls(text, NAMES).calls] == ["add", "weather"]
    text = '[TOOL_CALLS]add[ARGS]{"a": 1, "b": 2}[TOOL_CALLS]weather[ARGS]{"city": "Oslo"}'
    assert [(c.name, c.id) for c in parse_tool_calls(text, NAMES).calls] == [("add", "call_0"), ("weather", "call_1")]


@pytest.mark.parametrize("text, note", [
    ('<tool_call>{"name": "add", "arguments": {"a": 1,</tool_call>', r"^hermes tool call ignored: not JSON"),
    ('<tool_call>{"arguments": {}}</tool_call>', r"^hermes tool call ignored: no tool name"),
    ('<tool_call>{"name": "rm_rf", "arguments": {}}</tool_call>', r"no tool is named 'rm_rf' \(tools: add, weather\)"),
    ('[TOOL_CALLS][{"name": "add", "arguments": {"a"', r"^mistral tool call ignored: not JSON"),
    ('[TOOL_CALLS]add[ARGS]{"a": 1', r"^mistral tool call ignored: not JSON"),
])
def test_a_malformed_call_is_text_with_a_note(text, note):
    found = parse_tool_calls(text, NAMES)
    assert found.calls == [] and found.content == text and found.format is None
    assert len(found.notes) == 1
    assert __import__("re").search(note, found.notes[0])


def test_plain_answers_are_no_calls():
    for text in ("Once upon a time", '{"not": "a call"}', "{ braces in prose", "[1, 2]", ""):
        found = parse_tool_calls(text, NAMES)
        assert found.calls == [] and found.notes == [] and found.content == text


def test_lm_studio_sdk_tool_function_defs_are_tools():
    """The SDK's ToolFunctionDef (dict or object): parameters map names to types or {"type", "default"}."""
    from types import SimpleNamespace
    spec = {"name": "scale", "description": "Scale a number", "implementation": lambda x, k=2.0: x * k,
            "parameters": {"x": int, "k": {"type": float, "default": 2.0}}}
    (tool,) = as_tools([spec])
    assert tool.definition.to_dict()["function"] == {"name": "scale", "description": "Scale a number", "parameters": {
        "type": "object", "properties": {"x": {"type": "integer"}, "k": {"type": "number", "default": 2.0}},
        "required": ["x"], "additionalProperties": False}}
    assert tool.implementation(x=3) == 6.0 and tool.argument_errors({"x": 1.5}) == "x: 1.5 is not of type 'integer'"
    (same,) = as_tools([SimpleNamespace(**spec)])
    assert same.definition == tool.definition
    with pytest.raises(ConfigError, match=r"^tool 'scale': the implementation must be callable$"):
        as_tools([{**spec, "implementation": 3}])


def test_chat_keeps_tool_calls_and_tool_results():
    from lmsext import Chat
    call = {"id": "call_0", "type": "function", "function": {"name": "add", "arguments": {"a": 1, "b": 2}}}
    chat = Chat.from_history([{"role": "user", "content": "2+1?"},
                              {"role": "assistant", "content": None, "tool_calls": [call]},
                              {"role": "tool", "content": "3", "tool_call_id": "call_0", "name": "add"}])
    assert chat.messages[1] == {"role": "assistant", "content": "", "tool_calls": [call]}
    chat.add_tool_result("4", tool_call_id="call_1")
    assert chat.messages[-1] == {"role": "tool", "content": "4", "tool_call_id": "call_1"}
    assert Chat.from_history(chat.to_dict()) == chat


def test_templates_get_tools_verbatim_through_tojson_as_hugging_face_renders_them():
    from lmsext.chat_templates import ChatTemplate, template_tools
    template = ChatTemplate("{% for tool in tools %}{{ tool | tojson }}\n{% endfor %}{{ messages[0].content }}")
    tool = {"type": "function", "function": {"name": "look", "description": "don't <b> & more",
                                             "parameters": {"type": "object", "properties": {}}}}
    with template_tools([tool]):
        text = template.render([{"role": "user", "content": "hi"}])
    # keys in their order, no HTML escapes (Jinja's own tojson would write don\u0027t \u003cb\u003e)
    assert text == '{"type": "function", "function": {"name": "look", "description": "don\'t <b> & more", ' \
                   '"parameters": {"type": "object", "properties": {}}}}\nhi'
    assert template.render([{"role": "user", "content": "hi"}]) == "hi"  # outside the block: no tools
