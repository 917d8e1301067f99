"""Scalars are read the way Refinery's YAML parser (Go yaml.v3) reads them, with lines kept."""

import math

import pytest
import yaml

from refinery_py.config.yaml_tree import bool_value, compose, describe, line_of, scalar_value


def scalar(text: str) -> yaml.ScalarNode:
    root, problems = compose(f"key: {text}\n", "t.yaml")
    assert not problems
    assert isinstance(root, yaml.MappingNode)
    node = root.value[0][1]
    assert isinstance(node, yaml.ScalarNode)
    return node


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("42", 42),
        ("-7", -7),
        ("1_000_000", 1_000_000),
        ("0x1F", 31),
        ("0o17", 15),
        ("0755", 493),
        ("1.5", 1.5),
        ("1e3", 1000.0),
        (".5", 0.5),
        ("true", True),
        ("False", False),
        ("~", None),
        ("null", None),
        ("", None),
        # YAML 1.1 spellings that yaml.v3 reads as plain strings (PyYAML would not):
        ("yes", "yes"),
        ("no", "no"),
        ("on", "on"),
        ("12:30", "12:30"),
        ("2024-01-02", "2024-01-02"),
        # quoting and explicit tags keep strings strings
        ("'42'", "42"),
        ('"true"', "true"),
        ("!!str 42", "42"),
        ("/health-check", "/health-check"),
    ],
)
def test_scalar_value_follows_yaml_1_2_core_schema(text: str, value: object) -> None:
    result = scalar_value(scalar(text))
    assert result == value
    assert type(result) is type(value)


def test_special_floats() -> None:
    assert scalar_value(scalar(".inf")) == math.inf
    assert scalar_value(scalar("-.Inf")) == -math.inf
    nan = scalar_value(scalar(".nan"))
    assert isinstance(nan, float)
    assert math.isnan(nan)


@pytest.mark.parametrize(
    ("text", "value"),
    [("true", True), ("yes", True), ("On", True), ("n", False), ("OFF", False), ("maybe", None)],
)
def test_bool_value_accepts_yaml_1_1_words_like_yaml_v3(text: str, value: bool | None) -> None:
    assert bool_value(scalar(text)) is value


def test_bool_value_refuses_quoted_words() -> None:
    assert bool_value(scalar('"true"')) is None


def test_describe() -> None:
    root, _ = compose("a: [1]\nb: {c: 1}\nc: 3\nd: x\ne: 2.5\nf:\ng: true\n", "t.yaml")
    assert isinstance(root, yaml.MappingNode)
    described = [describe(value) for _, value in root.value]
    assert described == [
        "a list",
        "a mapping",
        "the integer 3",
        "the string 'x'",
        "the number 2.5",
        "nothing (null)",
        "true",
    ]


def test_lines_are_one_based() -> None:
    root, _ = compose("# comment\n\na: 1\nb:\n  c: 2\n", "t.yaml")
    assert isinstance(root, yaml.MappingNode)
    (a_key, _), (_, b_value) = root.value
    assert line_of(a_key) == 3
    assert line_of(b_value) == 5


def test_syntax_error_reports_yaml_line() -> None:
    root, problems = compose("a: 1\nb: [1, 2\nc: 3\n", "bad.yaml")
    assert root is None
    assert [str(problem) for problem in problems] == [
        "bad.yaml:3: YAML syntax error: expected ',' or ']', but got ':' "
        "(while parsing a flow sequence that starts at line 2)"
    ]


def test_unterminated_string_says_where_it_began() -> None:
    _, problems = compose('a: 1\nb: "open\nc: 3\n', "bad.yaml")
    assert [problem.line for problem in problems] == [4]
    assert "quoted scalar that starts at line 2" in problems[0].message


def test_indentation_error_line() -> None:
    _, problems = compose("a:\n  b: 1\n c: 2\n", "bad.yaml")
    assert [problem.line for problem in problems] == [3]


def test_tab_indentation_is_a_syntax_error_with_its_line() -> None:
    _, problems = compose("a: 1\nb:\n\tc: 2\n", "bad.yaml")
    assert [problem.line for problem in problems] == [3]


def test_control_characters_are_reported_with_their_line() -> None:
    _, problems = compose("a: 1\nb: \x07\n", "bad.yaml")
    assert [(problem.line, problem.message) for problem in problems] == [
        (2, "YAML cannot contain the character '\\x07'")
    ]


def test_two_documents_are_refused() -> None:
    _, problems = compose("a: 1\n---\nb: 2\n", "bad.yaml")
    assert [problem.line for problem in problems] == [2]
    assert "single document" in problems[0].message


def test_recursive_alias_is_refused() -> None:
    _, problems = compose("a: 1\nb: &x [1, *x]\n", "bad.yaml")
    assert [problem.line for problem in problems] == [2]
    assert "refers to a value that contains it" in problems[0].message


def test_alias_bomb_is_refused() -> None:
    lines = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for index in range(6):
        previous, name = chr(ord("a") + index), chr(ord("b") + index)
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{previous}"] * 10) + "]")
    _, problems = compose("\n".join(lines) + "\n", "bomb.yaml")
    assert len(problems) == 1
    assert "too many values" in problems[0].message


def test_deep_nesting_is_refused() -> None:
    _, problems = compose("a: " + "[" * 150 + "]" * 150 + "\n", "deep.yaml")
    assert len(problems) == 1
    assert "nested more than 100 levels" in problems[0].message
