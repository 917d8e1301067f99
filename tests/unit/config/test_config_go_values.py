"""Refinery's (Go's) value conversions, used to judge a condition's Value against its Datatype."""

from __future__ import annotations

import math

import pytest

from refinery_py.config.go_values import go_bool, go_float, go_int, go_text


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("abc", "abc"),
        (True, "true"),
        (False, "false"),
        (42, "42"),
        (100.0, "100"),
        (1.5, "1.5"),
        (0.1, "0.1"),
        (1e6, "1e+06"),
        (999999.0, "999999"),
        (1234567.0, "1.234567e+06"),
        (0.0001, "0.0001"),
        (0.00001, "1e-05"),
        (-2.5e-7, "-2.5e-07"),
        (0.0, "0"),
        (-0.0, "-0"),
        (math.inf, "+Inf"),
        (-math.inf, "-Inf"),
        (math.nan, "NaN"),
        ((1, "a"), "[1 a]"),
        (None, "<nil>"),
    ],
)
def test_go_text_matches_fmt_v(value: object, text: str) -> None:
    assert go_text(value) == text


@pytest.mark.parametrize(
    ("value", "number"),
    [(7, 7), (7.9, 7), (-7.9, -7), ("42", 42), ("+3", 3), ("-3", -3), ("4.0", None),
     ("x", None), (" 1", None), ("1_000", None), (True, None), (math.inf, None),
     ("99999999999999999999", None)],
)  # fmt: skip
def test_go_int(value: object, number: int | None) -> None:
    assert go_int(value) == number


@pytest.mark.parametrize(
    ("value", "number"),
    [(7, 7.0), (1.5, 1.5), ("1.5", 1.5), ("1e3", 1000.0), (".5", 0.5), ("Inf", math.inf),
     ("x", None), ("1.2.3", None), (" 1", None), (False, None)],
)  # fmt: skip
def test_go_float(value: object, number: float | None) -> None:
    assert go_float(value) == number


@pytest.mark.parametrize(
    ("value", "flag"),
    [(True, True), ("true", True), ("T", True), ("1", True), (1, True), (False, False),
     ("F", False), ("0", False), (0, False), ("yes", None), ("TrUe", None), (2, None)],
)  # fmt: skip
def test_go_bool_is_strconv_parse_bool(value: object, flag: bool | None) -> None:
    assert go_bool(value) is flag
