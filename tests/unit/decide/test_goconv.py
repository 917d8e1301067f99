"""Go conversions, checked against what Go 1.26's fmt and strconv print for the same inputs."""

from __future__ import annotations

import math

import pytest

from refinery_py.decide.goconv import (
    MIN_INT64,
    go_fixed_string,
    go_float_string,
    go_string,
    parse_go_float,
    parse_go_int,
    to_bool,
    to_float,
    to_int,
)

# (value, fmt.Sprintf("%v", value), strconv.FormatFloat(value, 'f', -1, 64)) as Go prints them.
GO_FLOATS = [
    (1.5, "1.5", "1.5"),
    (1.0, "1", "1"),
    (0.1, "0.1", "0.1"),
    (100000.0, "100000", "100000"),
    (1000000.0, "1e+06", "1000000"),
    (123456789.0, "1.23456789e+08", "123456789"),
    (1e20, "1e+20", "100000000000000000000"),
    (1e21, "1e+21", "1000000000000000000000"),
    (1e-4, "0.0001", "0.0001"),
    (1e-5, "1e-05", "0.00001"),
    (0.00012345, "0.00012345", "0.00012345"),
    (-2.5, "-2.5", "-2.5"),
    (0.0, "0", "0"),
    (-0.0, "-0", "-0"),
    (math.inf, "+Inf", "+Inf"),
    (-math.inf, "-Inf", "-Inf"),
    (math.nan, "NaN", "NaN"),
    (1.7976931348623157e308, "1.7976931348623157e+308", "17976931348623157" + "0" * 292),
    (9.3, "9.3", "9.3"),
    (10.3, "10.3", "10.3"),
    (100.01, "100.01", "100.01"),
    (123456.7, "123456.7", "123456.7"),
    (1234567.0, "1.234567e+06", "1234567"),
    (3e10, "3e+10", "30000000000"),
    (2.2, "2.2", "2.2"),
]


@pytest.mark.parametrize(("value", "v_text", "f_text"), GO_FLOATS)
def test_float_formatting_matches_go(value: float, v_text: str, f_text: str) -> None:
    assert go_float_string(value) == v_text
    assert go_string(value) == v_text
    assert go_fixed_string(value) == f_text


def test_smallest_denormal_formats_like_go() -> None:
    assert go_float_string(5e-324) == "5e-324"
    assert go_fixed_string(5e-324) == "0." + "0" * 323 + "5"


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("x", "x"),
        (True, "true"),
        (False, "false"),
        (42, "42"),
        (-7, "-7"),
        (None, "<nil>"),
        (("a", 1, 2.5, True), "[a 1 2.5 true]"),
        ((), "[]"),
    ],
)
def test_go_string_of_values(value: object, text: str) -> None:
    assert go_string(value) == text


# (text, strconv.Atoi result or None on error, strconv.ParseFloat result or None on error)
GO_PARSES = [
    ("1", 1, 1.0),
    ("+1", 1, 1.0),
    ("-1", -1, -1.0),
    (" 1", None, None),
    ("1 ", None, None),
    ("1_000", None, 1000.0),
    ("0x10", None, None),
    ("1.5", None, 1.5),
    ("1e3", None, 1000.0),
    (".5", None, 0.5),
    ("5.", None, 5.0),
    ("-.5e-3", None, -0.0005),
    ("inf", None, math.inf),
    ("Inf", None, math.inf),
    ("+Inf", None, math.inf),
    ("-inf", None, -math.inf),
    ("infinity", None, math.inf),
    ("-Infinity", None, -math.inf),
    ("INFINITY", None, math.inf),
    ("+nan", None, None),
    ("-nan", None, None),
    ("1e400", None, None),
    ("-1e400", None, None),
    ("1e-400", None, 0.0),
    ("0x1p-2", None, 0.25),
    ("0x1.8p3", None, 12.0),
    ("0X1P4", None, 16.0),
    ("0x_1p0", None, 1.0),
    ("1__0", None, None),
    ("1_5.0", None, 15.0),
    ("_1", None, None),
    ("1_", None, None),
    ("١", None, None),
    ("9223372036854775807", 9223372036854775807, 9.223372036854776e18),
    ("9223372036854775808", None, 9.223372036854776e18),
    ("-9223372036854775808", -9223372036854775808, -9.223372036854776e18),
    ("-9223372036854775809", None, -9.223372036854776e18),
    ("", None, None),
    ("+", None, None),
    ("-", None, None),
    ("e5", None, None),
    ("1e", None, None),
    ("1e+", None, None),
    ("00012", 12, 12.0),
    ("1.5e", None, None),
    ("0b101", None, None),
    ("0o17", None, None),
    ("infx", None, None),
    ("in", None, None),
]


@pytest.mark.parametrize(("text", "as_int", "as_float"), GO_PARSES)
def test_parsing_matches_go(text: str, as_int: int | None, as_float: float | None) -> None:
    assert parse_go_int(text) == as_int
    assert parse_go_float(text) == as_float


@pytest.mark.parametrize("text", ["1" * 1_000_000 + "x", "0x" + "f" * 1_000_000 + "q"])
def test_a_megabyte_of_digits_that_is_no_number_is_read_in_one_pass(text: str) -> None:
    """Span values reach these parsers whenever a rule compares with a Datatype; the float
    syntax used to try every split of the digits (1.4 s at 8,000 of them)."""
    assert parse_go_int(text) is None
    assert parse_go_float(text) is None


def test_nan_parses_only_unsigned() -> None:
    assert math.isnan(parse_go_float("nan") or 0.0)
    assert math.isnan(parse_go_float("NaN") or 0.0)


@pytest.mark.parametrize(
    ("text", "result"),
    [
        ("1", True),
        ("t", True),
        ("T", True),
        ("TRUE", True),
        ("true", True),
        ("True", True),
        ("tRuE", False),
        ("0", False),
        ("f", False),
        ("FALSE", False),
        ("False", False),
        ("yes", False),
        ("<nil>", False),
    ],
)
def test_bool_words_match_go_parse_bool(text: str, result: bool) -> None:
    assert to_bool(text) is result


def test_to_bool_of_other_values_goes_through_their_text() -> None:
    assert to_bool(True) is True
    assert to_bool(1) is True
    assert to_bool(1.0) is True  # Go prints 1.0 as "1"
    assert to_bool(0) is False
    assert to_bool(2) is False
    assert to_bool(None) is False


def test_float_to_int_truncates_like_go_on_amd64() -> None:
    assert to_int(1.9) == 1
    assert to_int(-1.9) == -1
    for value in (math.nan, math.inf, -math.inf, 1e19, -1e19):
        assert to_int(value) == MIN_INT64


def test_conversions_refuse_bools_and_missing_values() -> None:
    for value in (True, False, None, ("1",)):
        assert to_int(value) is None
        assert to_float(value) is None
    assert to_float(3) == 3.0
    assert to_int("12") == 12
