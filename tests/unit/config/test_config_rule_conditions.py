"""Rules and conditions: operator, Field, Value and Datatype must make sense together."""

from __future__ import annotations

import textwrap

import pytest

from refinery_py.config.rules import parse_rules, read_rules
from refinery_py.config.rules_spec import ConditionSpec, DynamicSpec, RulesBasedSpec, RuleSpec

HEAD = """\
RulesVersion: 2
Samplers:
  __default__:
    RulesBasedSampler:
      Rules:
        - Name: r
"""
PREFIX = "rules.yaml"
RULE = "Samplers.__default__.RulesBasedSampler.Rules[0]"
CONDITION = f"{RULE}.Conditions[0]"


def rule_file(rule: str) -> str:
    """HEAD plus the rest of one rule, whose text starts on line 7."""
    return HEAD + textwrap.indent(textwrap.dedent(rule), " " * 10)


def condition_file(condition: str) -> str:
    """One rule with SampleRate 1 and one condition starting on line 9."""
    body = textwrap.indent(textwrap.dedent(condition), "  ").replace("  ", "- ", 1)
    return rule_file("SampleRate: 1\nConditions:\n" + body)


def found(text: str) -> list[tuple[int, str, str]]:
    _, problems = read_rules(text, PREFIX)
    return [(problem.line, problem.severity, problem.message) for problem in problems]


def only_condition(text: str) -> ConditionSpec:
    spec = parse_rules(text, PREFIX)
    sampler = spec.samplers["__default__"]
    assert isinstance(sampler, RulesBasedSpec)
    [condition] = sampler.rules[0].conditions
    return condition


def test_field_becomes_a_one_tuple_and_fields_a_tuple() -> None:
    one = only_condition(condition_file("Field: http.route\nOperator: =\nValue: /health\n"))
    assert one == ConditionSpec(fields=("http.route",), operator="=", value="/health", line=9)
    many = only_condition(
        condition_file("Fields: [http.status_code, status]\nOperator: '>='\nValue: 500\n")
    )
    assert many.fields == ("http.status_code", "status")
    assert many.value == 500


def test_has_root_span_needs_no_field() -> None:
    condition = only_condition(condition_file("Operator: has-root-span\nValue: true\n"))
    assert (condition.fields, condition.value) == ((), True)


def test_matches_compiles_a_go_regex() -> None:
    condition = only_condition(
        condition_file("Field: url\nOperator: matches\nValue: '^/api/\\d+$'\n")
    )
    assert condition.pattern is not None
    assert condition.pattern.search("/api/42")
    assert not condition.pattern.search("/api/42\n")  # Go's $ is the very end of the text
    assert not condition.pattern.search("/api/٤٢")  # and Go's \d is ASCII only


def test_matches_stringifies_a_numeric_value_like_go() -> None:
    condition = only_condition(condition_file("Field: code\nOperator: matches\nValue: 200\n"))
    assert condition.pattern is not None
    assert condition.pattern.pattern == "200"


def test_in_accepts_a_single_scalar_and_a_list() -> None:
    single = only_condition(condition_file("Field: a\nOperator: in\nValue: x\n"))
    listed = only_condition(condition_file("Field: a\nOperator: not-in\nValue: [1, 2]\n"))
    assert (single.value, listed.value) == ("x", (1, 2))


CONDITION_MISTAKES = [
    (
        "Field: a\nFields: [b]\nOperator: exists\n",
        10,
        "both Field (line 9) and Fields are given; use only one",
    ),
    ("Operator: exists\n", 9, f"{CONDITION} needs a Field (or Fields) to test"),
    ("Field: ''\nOperator: exists\n", 9, f"{CONDITION}.Field must not contain an empty field name"),
    ("Fields: []\nOperator: exists\n", 9, f"{CONDITION}.Fields must list at least one field"),
    ("Field: [a]\nOperator: exists\n", 9, f"{CONDITION}.Field must be a string, found a list"),
    ("Field:\nOperator: exists\n", 9, f"{CONDITION}.Field must name a field"),
    (
        "Field: a\nOperator: startswith\nValue: x\n",
        10,
        f"{CONDITION}.Operator must be one of =, !=, >, <, >=, <=, starts-with, contains, "
        "does-not-contain, exists, not-exists, has-root-span, matches, in, not-in; "
        "found 'startswith'; did you mean starts-with?",
    ),
    ("Field: a\nValue: x\n", 9, f"missing required key Operator in {CONDITION}"),
    (
        "Field: a\nOperator: =\nValue: 1\nDatatype: integer\n",
        12,
        f"{CONDITION}.Datatype must be one of string, int, float, bool; found 'integer'; "
        "did you mean int?",
    ),
    ("Field: a\nOperator: =\n", 9, f"{CONDITION} needs a Value for operator ="),
    (
        "Field: a\nOperator: contains\nValue:\n",
        11,
        f"{CONDITION} needs a Value for operator contains",
    ),
    (
        "Field: a\nOperator: '='\nValue: abc\nDatatype: int\n",
        11,
        f"{CONDITION}: Value 'abc' is not an int, so the condition can never match",
    ),
    (
        "Field: a\nOperator: '<'\nValue: 1.2.3\nDatatype: float\n",
        11,
        f"{CONDITION}: Value '1.2.3' is not a float, so the condition can never match",
    ),
    (
        "Field: a\nOperator: '!='\nValue: yes\nDatatype: bool\n",
        11,
        f"{CONDITION}: Value 'yes' is not a bool, so the condition can never match",
    ),
    (
        "Field: a\nOperator: '>'\nValue: true\nDatatype: bool\n",
        12,
        f"{CONDITION}: Datatype bool cannot be used with >; use = or !=",
    ),
    (
        "Field: a\nOperator: in\nValue: [true]\nDatatype: bool\n",
        12,
        f"{CONDITION}: Datatype bool cannot be used with in",
    ),
    (
        "Field: a\nOperator: in\nValue: true\n",
        11,
        f"{CONDITION}: in needs a list of values or a single string or number, found True",
    ),
    (
        "Field: a\nOperator: in\nValue: [1, two]\n",
        11,
        f"{CONDITION}: the in list mixes integers and strings; Refinery needs values of one type",
    ),
    (
        "Field: a\nOperator: not-in\nValue: [[1]]\n",
        11,
        f"{CONDITION}: not-in needs a flat list of values, found a list inside the list",
    ),
    (
        "Field: a\nOperator: in\nValue: ['1', x]\nDatatype: int\n",
        11,
        f"{CONDITION}: Value 'x' is not an int, so the condition can never match",
    ),
    (
        "Field: a\nOperator: '='\nValue: [1, 2]\n",
        11,
        f"{CONDITION}: a list Value only works with in and not-in, not with =",
    ),
    (
        "Field: a\nOperator: '='\nValue: {x: 1}\n",
        11,
        f"{CONDITION}.Value must be a single value or a list, found a mapping",
    ),
    (
        "Operator: has-root-span\nValue: maybe\n",
        10,
        f"{CONDITION}: has-root-span needs Value true or false, found the string 'maybe'",
    ),
    (
        "Field: url\nOperator: matches\nValue: '([a-z'\n",
        11,
        f"{CONDITION}.Value is not a valid regular expression: missing ]: [a-z",
    ),
    (
        "Field: url\nOperator: matches\nValue: '(?<=a)b'\n",
        11,
        f"{CONDITION}.Value is not a valid regular expression: invalid perl operator: (?<=",
    ),
    (
        "Field: url\nOperator: matches\nValue: 'a{2,1}'\n",
        11,
        f"{CONDITION}.Value is not a valid regular expression: invalid repetition size: {{2,1}}",
    ),
    (
        "Field: a\nOperator: exists\nVlaue: 1\n",
        11,
        f"unknown key Vlaue in {CONDITION}; did you mean Value?",
    ),
]


@pytest.mark.parametrize(("condition", "line", "message"), CONDITION_MISTAKES)
def test_condition_mistakes(condition: str, line: int, message: str) -> None:
    assert found(condition_file(condition)) == [(line, "error", message)]


CONDITION_WARNINGS = [
    ("Field: a\nOperator: exists\nValue: 1\n", 11, f"{CONDITION}.Value is ignored by exists"),
    (
        "Field: a\nOperator: has-root-span\nValue: false\n",
        9,
        f"{CONDITION}.Field is ignored by has-root-span",
    ),
    (
        "Field: ?.NUM_SPANS\nOperator: '>'\nValue: 3\n",
        9,
        f"{CONDITION}.Field: ?.NUM_SPANS is not a computed field (?.NUM_DESCENDANTS is); "
        "it will never be present",
    ),
    (
        "Field: a\nOperator: '='\nValue: 1.5\nDatatype: int\n",
        11,
        f"{CONDITION}.Value 1.5 is truncated to 1 by Datatype int",
    ),
]


@pytest.mark.parametrize(("condition", "line", "message"), CONDITION_WARNINGS)
def test_condition_warnings_still_load(condition: str, line: int, message: str) -> None:
    text = condition_file(condition)
    assert found(text) == [(line, "warning", message)]
    assert parse_rules(text, PREFIX)


def test_go_bool_spellings_are_accepted_for_has_root_span() -> None:
    for value in ("true", "'false'", "'t'", "1", "'FALSE'"):
        text = condition_file(f"Operator: has-root-span\nValue: {value}\n")
        assert found(text) == [], value


RULE_MISTAKES = [
    ("SampleRate: 0\n", 7, f"{RULE}.SampleRate must be at least 1, found 0"),
    (
        "Scope: spans\nSampleRate: 1\n",
        7,
        f"{RULE}.Scope must be one of trace, span; found 'spans'; did you mean span?",
    ),
    (
        "SampleRate: 1\nConditon: []\n",
        8,
        f"unknown key Conditon in {RULE}; did you mean Conditions?",
    ),
    ("Conditions: {a: 1}\nDrop: true\n", 7, f"{RULE}.Conditions must be a list, found a mapping"),
    (
        "Sampler:\n  RulesBasedSampler:\n    Rules: []\n",
        8,
        f"{RULE}.Sampler.RulesBasedSampler: a rule's Sampler cannot be a RulesBasedSampler; "
        "rules do not nest",
    ),
    (
        "Sampler:\n  EMADynamicSamplr: {FieldList: [a]}\n",
        8,
        f"unknown sampler type EMADynamicSamplr in {RULE}.Sampler; did you mean EMADynamicSampler?",
    ),
    (
        "Sampler:\n  DynamicSampler: {SampleRate: 2}\n",
        8,
        f"missing required key FieldList in {RULE}.Sampler.DynamicSampler",
    ),
]


@pytest.mark.parametrize(("rule", "line", "message"), RULE_MISTAKES)
def test_rule_mistakes(rule: str, line: int, message: str) -> None:
    assert found(rule_file(rule)) == [(line, "error", message)]


RULE_WARNINGS = [
    (
        "Conditions:\n  - {Field: a, Operator: exists}\n",
        6,
        f"{RULE} sets none of SampleRate, Drop or Sampler; matching traces are kept at rate 1 "
        "(Refinery would drop them)",
    ),
    ("Drop: true\nSampleRate: 5\n", 8, f"{RULE}.SampleRate is ignored because Drop is true"),
    (
        "Drop: true\nSampler:\n  DeterministicSampler: {SampleRate: 2}\n",
        7,
        f"{RULE} sets both Drop and Sampler; the Sampler decides and Drop is ignored",
    ),
    (
        "Scope: span\nSampleRate: 1\nConditions:\n  - {Operator: has-root-span, Value: true}\n",
        10,
        f"{RULE}: has-root-span cannot be evaluated with Scope: span; Refinery skips such a rule",
    ),
]


@pytest.mark.parametrize(("rule", "line", "message"), RULE_WARNINGS)
def test_rule_warnings(rule: str, line: int, message: str) -> None:
    assert found(rule_file(rule)) == [(line, "warning", message)]


def test_downstream_sampler_is_read() -> None:
    spec = parse_rules(
        rule_file("Sampler:\n  DynamicSampler:\n    SampleRate: 4\n    FieldList: [route]\n"),
        PREFIX,
    )
    sampler = spec.samplers["__default__"]
    assert isinstance(sampler, RulesBasedSpec)
    assert sampler.rules[0] == RuleSpec(
        name="r",
        sampler=DynamicSpec(sample_rate=4, field_list=("route",), line=9),
        line=6,
    )
