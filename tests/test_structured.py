"""Structured output on the real engine: integer bounds in the grammar, number bounds after generation,
unsupported ``structured`` forms, and what the user is told when the grammar check's child dies.

Integer bounds are checked with llama.cpp's own grammar engine (tests/grammar_oracle.py: a child
process feeding each candidate numeral, character by character, to ``llama_sampler_init_grammar``'s
sampler): every integer in and around each range must be accepted exactly when it is in the range.
"""

from __future__ import annotations

import json
import math
import os
import random
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, Field

from lmsext.config import PredictionConfig, StructuredSpec
from lmsext.config.structured import INTEGER_DIGITS
from lmsext.engine.grammar import (CHECK_MEMORY_BYTES, _death_message, check_grammar, json_schema_to_gbnf,
                                   parse_output, schema_violation, to_gbnf)
from lmsext.errors import ConfigError

sys.path.insert(0, str(Path(__file__).resolve().parent))
from grammar_oracle import GrammarOracle  # noqa: E402

CAP_MIB = CHECK_MEMORY_BYTES // 2**20
OOM_GRAMMAR = 'root ::= "a"{2,1}'


@pytest.fixture(scope="module")
def oracle(stories_path):
    o = GrammarOracle(str(stories_path))
    yield o
    o.close()


def inclusive_bounds(schema: dict) -> tuple[int | None, int | None]:
    """The smallest and largest integer the bound keywords allow, straight from JSON-schema semantics
    (written here again, independently of lmsext's helpers)."""
    def best(candidates, pick):
        return pick(candidates) if candidates else None
    lows, highs = [], []
    lo_ex, hi_ex = schema.get("exclusiveMinimum"), schema.get("exclusiveMaximum")
    if "minimum" in schema:
        lows.append(math.floor(schema["minimum"]) + 1 if lo_ex is True else math.ceil(schema["minimum"]))
    if "maximum" in schema:
        highs.append(math.ceil(schema["maximum"]) - 1 if hi_ex is True else math.floor(schema["maximum"]))
    if lo_ex is not None and not isinstance(lo_ex, bool):
        lows.append(math.floor(lo_ex) + 1)
    if hi_ex is not None and not isinstance(hi_ex, bool):
        highs.append(math.ceil(hi_ex) - 1)
    return best(lows, max), best(highs, min)


def in_range(n: int, schema: dict) -> bool:
    """Whether ``n`` meets the bounds, and has at most max(16, digits of the bounds) digits (open sides stop
    there, like llama.cpp's plain integer rule stops at 16)."""
    low, high = inclusive_bounds(schema)
    digits = max([INTEGER_DIGITS] + [len(str(abs(b))) for b in (low, high) if b is not None])
    return (low is None or n >= low) and (high is None or n <= high) and len(str(abs(n))) <= digits


def probes(low: int | None, high: int | None, width: int = 300) -> list[int]:
    """Every integer within ``width`` of the bounds (all of a small range), powers-of-ten edges, some randoms."""
    centre = [b for b in (low, high) if b is not None] or [0]
    values = set()
    for b in centre + [0]:
        values.update(range(b - width, b + width + 1))
    if low is not None and high is not None and high - low <= 5000:
        values.update(range(low, high + 1))
    for k in range(1, INTEGER_DIGITS + 3):
        for v in (10**k - 1, 10**k, 10**k + 1, 2 * 10**k):
            values.update((v, -v))
    rng = random.Random(f"{low},{high}")
    lo, hi = (low if low is not None else -10**17), (high if high is not None else 10**17)
    values.update(rng.randint(lo - 1000, hi + 1000) for _ in range(300))
    return sorted(values)


def check_schema(oracle: GrammarOracle, schema: dict, values: list[int]) -> None:
    grammar = json_schema_to_gbnf(schema)
    accepted = oracle.accepts(grammar, [str(v) for v in values])
    wrong = [(v, a) for v, a in zip(values, accepted) if a != in_range(v, schema)]
    assert not wrong, f"{schema}: accepted≠expected for {wrong[:10]} (of {len(wrong)})\n{grammar}"


# ------------------------------------------------------------------------------ integer bounds, exhaustively

RANGES = [(0, 9), (5, 123), (-20, 7), (-100, -3), (0, None), (None, 50), (0, 0), (-5, -5), (1, 100), (99, 1000),
          (-1000, -999), (19, 2011), (-987_654, 123_456), (10**15, None), (None, -10**15), (-10**18, 10**18)]


@pytest.mark.parametrize("low,high", RANGES, ids=lambda v: "open" if v is None else str(v))
def test_integer_range_accepts_exactly_the_integers_in_range(oracle, low, high):
    schema = {"type": "integer"}
    if low is not None:
        schema["minimum"] = low
    if high is not None:
        schema["maximum"] = high
    check_schema(oracle, schema, probes(low, high))


@pytest.mark.parametrize("schema", [
    {"type": "integer", "exclusiveMinimum": 5, "exclusiveMaximum": 123},  # pydantic gt/lt
    {"type": "integer", "minimum": -20.5, "maximum": 7.9},  # fractional bounds round inwards
    {"type": "integer", "exclusiveMinimum": -20.5, "exclusiveMaximum": 7.0},
    {"type": "integer", "minimum": 5, "exclusiveMinimum": True, "maximum": 9, "exclusiveMaximum": True},  # draft 4
    {"type": "integer", "minimum": 3, "exclusiveMinimum": 3},  # both: the tighter wins
    {"type": "integer", "maximum": 1e300},  # an upper bound beyond 100 digits counts as open
])
def test_integer_bound_keyword_forms(oracle, schema):
    values = probes(-30, 130)
    if schema.get("maximum") == 1e300:
        accepted = oracle.accepts(json_schema_to_gbnf(schema), [str(v) for v in values])
        assert accepted == [len(str(abs(v))) <= INTEGER_DIGITS for v in values]
        return
    check_schema(oracle, schema, values)


def test_only_canonical_numerals_are_accepted(oracle):
    grammar = json_schema_to_gbnf({"type": "integer", "minimum": -50, "maximum": 50})
    bad = ["-0", "00", "05", "+5", "5.0", "1e1", "--5", "- 5", "", "-", "0x1"]
    assert oracle.accepts(grammar, bad) == [False] * len(bad)
    assert oracle.accepts(grammar, ["0", "5 ", "-50", "50"]) == [True] * 4  # the trailing space of JSON rules


bound = st.one_of(st.none(), st.integers(-10**6, 10**6), st.integers(-10**20, 10**20),
                  st.floats(-1e6, 1e6, allow_nan=False))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(low=bound, high=bound, low_exclusive=st.booleans(), high_exclusive=st.booleans())
def test_random_bounds_match_json_schema_semantics(oracle, low, high, low_exclusive, high_exclusive):
    if low is not None and high is not None and low > high:
        low, high = high, low
    schema = {"type": "integer"}
    if low is not None:
        schema["exclusiveMinimum" if low_exclusive else "minimum"] = low
    if high is not None:
        schema["exclusiveMaximum" if high_exclusive else "maximum"] = high
    lo, hi = inclusive_bounds(schema)
    if lo is not None and hi is not None and lo > hi:
        with pytest.raises(ConfigError, match="no integer satisfies"):
            StructuredSpec.parse(schema)
        return
    edges = [b for b in (lo, hi) if b is not None]
    values = sorted({v for e in edges + [0] for v in range(e - 40, e + 41)}
                    | {s * (10**k + d) for k in (1, 6, 15, 16, 20) for d in (-1, 0) for s in (1, -1)})
    check_schema(oracle, schema, values)


def test_bounds_hold_inside_objects_arrays_optionals_and_refs(oracle):
    class Inner(BaseModel):
        level: int = Field(ge=1, le=3)

    class Form(BaseModel):
        age: int = Field(ge=0, le=120)
        delta: int | None = Field(default=None, gt=-10, lt=0)
        scores: list[int] = Field(default_factory=list, max_length=3)
        inner: Inner

    schema = Form.model_json_schema()
    schema["properties"]["scores"]["items"].update(minimum=-5, maximum=5)
    schema["properties"]["rank"] = {"type": ["integer", "null"], "minimum": 10, "maximum": 20}
    schema["required"] = ["age", "delta", "scores", "inner", "rank"]
    grammar = json_schema_to_gbnf(schema)

    def doc(age=30, delta=-1, scores=(1, 2), level=2, rank=15):
        return json.dumps({"age": age, "delta": delta, "scores": list(scores), "inner": {"level": level},
                           "rank": rank})
    good = [doc(), doc(age=0), doc(age=120, delta=None), doc(scores=(-5, 5, 0)), doc(level=1), doc(level=3),
            doc(rank=None), doc(rank=10), doc(delta=-9)]
    bad = [doc(age=121), doc(age=-1), doc(delta=0), doc(delta=-10), doc(scores=(6,)), doc(scores=(-6,)),
           doc(level=0), doc(level=4), doc(rank=9), doc(rank=21)]
    assert oracle.accepts(grammar, good) == [True] * len(good)
    assert oracle.accepts(grammar, bad) == [False] * len(bad)


@pytest.mark.parametrize("schema,message", [
    ({"type": "integer", "minimum": 10, "maximum": 5}, "structured: no integer satisfies minimum=10, maximum=5"),
    ({"type": "integer", "exclusiveMinimum": 5, "exclusiveMaximum": 6},
     "structured: no integer satisfies exclusiveMinimum=5, exclusiveMaximum=6"),
    ({"type": "number", "minimum": 1, "exclusiveMaximum": 1}, "structured: no number satisfies minimum=1"),
    ({"type": "object", "properties": {"age": {"type": "integer", "minimum": "3"}}},
     "structured.properties.age.minimum='3': must be a finite number"),
    ({"type": "number", "maximum": float("inf")}, "structured.maximum=inf: must be a finite number"),
    ({"type": "integer", "exclusiveMinimum": None}, "structured.exclusiveMinimum=None: must be a finite number"),
    ({"type": "integer", "minimum": 10**100}, "structured: minimum=100000000000000000000000000... asks for "
                                              "integers of more than 100 digits"),
    ({"type": "array", "items": {"type": "integer"}, "maxItems": 10**8},
     "structured.maxItems=100000000: must be an integer from 0 to 100,000"),
])
def test_impossible_or_malformed_bounds_are_one_line_config_errors(schema, message):
    with pytest.raises(ConfigError) as info:
        PredictionConfig(structured=schema)
    text = str(info.value)
    assert text.startswith(message) and "\n" not in text, text


# ------------------------------------------------------------------------------ number bounds: checked after


def test_number_bounds_are_checked_on_the_parsed_output():
    class Reading(BaseModel):
        t: float = Field(ge=0, le=1)
        p: float = Field(gt=0)

    spec = StructuredSpec.parse(Reading)
    assert parse_output('{"t": 0.5, "p": 2}', spec)[1] is None
    assert parse_output('{"t": 1.5, "p": 2}', spec) == (
        {"t": 1.5, "p": 2}, "output does not match the JSON schema: $.t = 1.5 is above the maximum 1")
    assert parse_output('{"t": 0, "p": 0}', spec)[1] == (
        "output does not match the JSON schema: $.p = 0 is not above the exclusiveMinimum 0")
    plain = StructuredSpec.parse({"type": "object", "properties": {
        "xs": {"type": "array", "items": {"$ref": "#/$defs/Unit"}},
        "o": {"anyOf": [{"type": "number", "minimum": 10}, {"type": "null"}]}},
        "$defs": {"Unit": {"type": "number", "minimum": -1, "maximum": 1}}})
    assert parse_output('{"xs": [0.5, -1.25], "o": null}', plain)[1] == (
        "output does not match the JSON schema: $.xs[1] = -1.25 is below the minimum -1")
    assert parse_output('{"xs": [], "o": 9.5}', plain)[1] == (
        "output does not match the JSON schema: $.o = 9.5 is below the minimum 10")
    assert parse_output('{"xs": [1], "o": null}', plain) == ({"xs": [1], "o": None}, None)
    assert schema_violation({"a": 1e300}, {"additionalProperties": {"maximum": 5}}) == \
        "$.a = 1e+300 is above the maximum 5"
    # pydantic's own failures are one line too
    error = parse_output('{"t": 0.5}', spec)[1]
    assert error == "output does not validate as Reading: $.p: Field required"


# ------------------------------------------------------------------------------ end to end on stories260K


class Rating(BaseModel):
    stars: int = Field(ge=1, le=5)
    delta: int = Field(ge=-20, le=-3)
    count: int = Field(gt=99, lt=1000)


def test_generation_with_pydantic_bounds_stays_inside(module_model):
    # without integer bounds in the grammar, stories260K writes negative stars on every one of these seeds
    for seed in range(6):
        r = module_model.respond("Rate the story", config={"structured": Rating, "maxTokens": 120, "seed": seed,
                                                           "temperature": 1.0})
        assert r.stats.stop_reason == "eosFound" and r.parse_error is None, (r.content, r.parse_error)
        assert isinstance(r.parsed, Rating), r.content
        assert 1 <= r.parsed.stars <= 5 and -20 <= r.parsed.delta <= -3 and 99 < r.parsed.count < 1000


def test_generation_with_number_bounds_reports_violations(module_model):
    class Temp(BaseModel):
        t: float = Field(ge=0, le=1)

    outcomes = set()
    for seed in range(20):
        r = module_model.respond("Rate the story", config={"structured": Temp, "maxTokens": 60, "seed": seed,
                                                           "temperature": 1.0})
        value = json.loads(r.content)["t"]
        if 0 <= value <= 1:
            assert r.parse_error is None and r.parsed.t == value
        else:
            assert r.parse_error.startswith(f"output does not match the JSON schema: $.t = {value!r} is ")
            assert "\n" not in r.parse_error and r.parsed == {"t": value}
        outcomes.add(r.parse_error is None)
        if len(outcomes) == 2:
            break
    assert outcomes == {True, False}  # both happen: the tiny model ignores the bounds the grammar cannot hold


# ------------------------------------------------------------------------------ unsupported structured forms


@pytest.mark.parametrize("given,start", [
    ({"type": "xml"}, "structured.type='xml' is not supported: structured must be {'type': 'json', 'jsonSchema'"),
    ({"type": "JSON"}, "structured.type='JSON' is not supported (did you mean 'json'?): structured must be"),
    ({"type": "json_object"}, "structured.type='json_object' is not supported (did you mean 'json'?)"),
    ({"type": "xml", "jsonSchema": {}}, "structured.type='xml' is not supported"),
    ({"type": 5}, "structured.type=5 is not supported"),
    ({"type": None}, "structured.type=None is not supported"),
])
def test_unsupported_structured_type_is_one_line_naming_every_form(given, start):
    with pytest.raises(ConfigError) as info:
        PredictionConfig(structured=given)
    text = str(info.value)
    assert text.startswith(start) and "\n" not in text and info.value.key == "structured.type", text
    for form in ("{'type': 'json', 'jsonSchema': {...}}", "{'type': 'gbnf', 'gbnfGrammar': '...'}",
                 "{'type': 'none'}", "a JSON schema dict", "a pydantic model class", "'json_schema'"):
        assert form in text


def test_schema_typos_still_name_the_json_schema_types():
    with pytest.raises(ConfigError, match=r"^structured.type='objekt': must be one of 'array'"):
        PredictionConfig(structured={"type": "objekt"})
    with pytest.raises(ConfigError, match=r"^structured.type='xml': must be one of 'array'"):
        PredictionConfig(structured={"type": "xml", "properties": {}})  # a schema: it has other keywords


# ------------------------------------------------------------------------------ the grammar check's child


def test_grammar_past_the_memory_cap_says_so_and_the_model_survives(module_model):
    with pytest.raises(ConfigError) as info:
        module_model.respond("x", config={"structured": {"type": "gbnf", "gbnfGrammar": OOM_GRAMMAR},
                                          "maxTokens": 5})
    assert str(info.value) == (f"structured: the grammar needs more than {CAP_MIB} MiB to parse — probably a "
                               f'repetition like "a"{{2,1}} (max below min) or a huge bound; it was not used')
    r = module_model.respond("Rate the story", config={"structured": Rating, "maxTokens": 120, "seed": 1})
    assert r.parse_error is None and 1 <= r.parsed.stars <= 5


def test_grammar_that_crashes_the_parser_names_the_signal(stories_path):
    deep = "root ::= " + "(" * 200_000 + '"a"' + ")" * 200_000  # recursion overflows llama.cpp's stack
    with pytest.raises(ConfigError) as info:
        check_grammar(deep, str(stories_path))
    assert str(info.value) == ("structured: llama.cpp crashed parsing this grammar (SIGSEGV, segmentation fault); "
                               "it was not used")


def test_death_messages():
    assert "needs more than" in _death_message(-6, 0, "terminate called after throwing an instance of "
                                                      "'std::bad_alloc'", parsing=True)
    assert "needs more than" in _death_message(-11, CHECK_MEMORY_BYTES, "", parsing=True)  # peak at the cap
    assert _death_message(-9, 0, "", parsing=True) == (
        "structured: llama.cpp crashed parsing this grammar (SIGKILL: killed from outside, perhaps by the system's "
        "out-of-memory killer); it was not used")
    assert _death_message(3, 0, "Traceback...\nImportError: no llama\n", parsing=False) == (
        "structured: llama.cpp crashed loading the vocabulary to check the grammar (exit code 3: ImportError: "
        "no llama); it was not used")


def test_missing_vocabulary_file(tmp_path):
    with pytest.raises(ConfigError, match=r"^structured: cannot check the grammar: llama.cpp could not read the "
                                          r"vocabulary of .*gone\.gguf$"):
        check_grammar('root ::= "a"', str(tmp_path / "gone.gguf"))


def test_every_grammar_made_from_a_schema_parses_in_llama_cpp(stories_path):
    for schema in ({"type": "integer", "minimum": -10**99, "maximum": 10**99 - 1},
                   Rating.model_json_schema(), {"type": ["integer", "null"], "exclusiveMaximum": 0}):
        check_grammar(to_gbnf(StructuredSpec.parse(schema)), str(stories_path))


def test_a_child_past_the_time_limit_is_killed_and_reaped(monkeypatch):
    import lmsext.engine.grammar as grammar
    monkeypatch.setattr(grammar, "CHECK_TIMEOUT_S", 1)
    status, _, out, _ = grammar._run_child([sys.executable, "-c", "import os, time; print(os.getpid(), flush=True); "
                                                                  "time.sleep(60)"], b"")
    assert status is None
    with pytest.raises(ChildProcessError):  # already reaped: no zombie left behind
        os.waitpid(int(out.split()[0]), os.WNOHANG)


# ------------------------------------------------------------------------------ recursive schemas (issue 13)


class TreeNode(BaseModel):
    """A recursive model: its JSON schema refers to itself through ``#/$defs/TreeNode``."""

    name: str
    children: list[TreeNode]


def test_a_recursive_pydantic_model_becomes_a_recursive_grammar(oracle):
    """The converter used to fail on it with ``KeyError: '#/$defs/TreeNode'`` (refs inside a ref's target
    were never resolved); the grammar now accepts trees of any depth and nothing else."""
    grammar = json_schema_to_gbnf(TreeNode.model_json_schema())
    deep = {"name": "a", "children": []}
    for i in range(6):
        deep = {"name": f"n{i}", "children": [deep, {"name": "leaf", "children": []}]}
    good = [json.dumps(deep), '{"name": "x", "children": []}']
    bad = ['{"name": "x", "children": [{"name": 1, "children": []}]}', '{"name": "x"}',
           '{"name": "x", "children": [{"children": []}]}']
    assert oracle.accepts(grammar, good + bad) == [True] * len(good) + [False] * len(bad)


@pytest.mark.parametrize("schema, message", [
    ({"type": "object", "properties": {"a": {"$ref": "#"}}}, r"\$ref '#' is not supported"),
    ({"$ref": "#/$defs/missing"}, r"\$ref '#/\$defs/missing' points to nothing"),
    ({"$ref": "https://example.com/schema.json"}, r"\$ref 'https://example\.com/schema\.json' is not supported"),
])
def test_unusable_refs_are_one_line_in_the_schemas_terms(schema, message):
    spec = PredictionConfig.parse({"structured": {"type": "json", "jsonSchema": schema}}).structured
    with pytest.raises(ConfigError, match=message) as info:
        to_gbnf(spec)
    assert "stdin" not in str(info.value) and "\n" not in str(info.value)
