"""Every operator × datatype × rule scope, with matching and non-matching span values.

Each case lists span values that meet the condition (`hits`), values that do not (`misses`), and
whether a span *without* the field meets it (`missing`: Refinery's quirks make some negative
operators match absent fields). Every value is checked three ways:

- a one-span trace, in both scopes (the operator itself);
- a two-span trace where the tested field and a companion field sit on different spans: Scope
  trace matches when either span meets the condition, Scope span only when the span without the
  field does (it is the one with the companion);
- a two-span trace where one span has both fields: Scope span then follows the value itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest

from refinery_py.config.go_regex import compile_go_regex
from refinery_py.config.rules_spec import ConditionSpec
from refinery_py.model import FieldValue

from .fakes import FakeTrace, cond, rule, rules_sampler


@dataclass(frozen=True)
class Case:
    operator: str
    datatype: str | None
    value: object
    hits: tuple[FieldValue, ...]
    misses: tuple[FieldValue, ...]
    missing: bool

    def condition(self) -> ConditionSpec:
        return cond("f", self.operator, self.value, self.datatype)

    def label(self) -> str:
        return f"{self.operator}/{self.datatype or 'none'}/{self.value!r}"


def c(
    operator: str,
    datatype: str | None,
    value: object,
    hits: tuple[FieldValue, ...],
    misses: tuple[FieldValue, ...],
    *,
    missing: bool = False,
) -> Case:
    return Case(operator, datatype, value, hits, misses, missing)


CASES = [
    # --- no Datatype: numbers compare across int/float, other types only with their own type.
    c("=", None, 5, (5, 5.0), (6, 4.9, "5", True)),
    c("=", None, 2.5, (2.5,), (2, 3, "2.5")),
    c("=", None, "foo", ("foo",), ("Foo", "foo ", 0, True)),
    c("=", None, True, (True,), (False, 1, "true")),
    c("!=", None, 5, (6, 4.5, -5), (5, 5.0, "6", False)),
    c("!=", None, "foo", ("bar", ""), ("foo", 1, True)),
    c("!=", None, True, (False,), (True, "false", 0)),
    c("!=", None, None, (1, "x", False), ()),  # no Value: every present value ranks above nil
    c(">", None, 5, (6, 5.5), (5, 4, "6", True)),
    c(">", None, "b", ("c", "ba"), ("a", "b", 5)),
    c(">", None, False, (True,), (False, 1)),
    c(">", None, None, (0, ""), ()),
    c("<", None, 5, (4, 4.5, -1), (5, 6, "4")),
    c("<", None, "b", ("a", "B"), ("b", "c", 1)),
    c("<", None, True, (False,), (True, 0)),
    c(">=", None, 5, (5, 6, 5.0), (4, 4.99, "5")),
    c(">=", None, "b", ("b", "c"), ("a",)),
    c("<=", None, 5, (5, 4.0), (6, "5")),
    c("<=", None, 2.5, (2, 2.5), (3, 2.6)),
    c("=", None, None, (), (1, "", False)),
    # --- Datatype string: both sides as Go's %v text; a missing field is the text "<nil>".
    c("=", "string", "500", ("500", 500, 500.0), ("500.0", "5000", True)),
    c("=", "string", "true", ("true", True), ("True", 1)),
    c("=", "string", 1.5, ("1.5", 1.5), ("1.50",)),
    c("=", "string", 1000000.0, ("1e+06", 1e6), (1000000, "1000000")),
    c("!=", "string", "500", ("501", 501, ""), ("500", 500), missing=True),
    c(">", "string", "10.3", (9.3, "2", "10.30"), ("10", "1", 10.3), missing=True),
    c("<", "string", "b", ("a", "B", 1), ("b", "c"), missing=True),
    c(">=", "string", "b", ("b", "c", True), ("a", 1)),
    c("<=", "string", "b", ("b", "a", 9), ("c", True), missing=True),
    # --- Datatype int: ints, truncated floats and Atoi strings; anything else never matches.
    c("=", "int", 500, (500, 500.9, "500", "+500"), (501, "500.0", " 500", True, "abc")),
    c("=", "int", "500", (500, "500"), (499,)),
    c("=", "int", 2.7, (2, 2.2, "2"), (3,)),
    c("!=", "int", 500, (501, "499", -500), (500, "abc", True, "5e2")),
    c(">", "int", 3, (4, "10", 4.1), (3, 3.9, "x", "2")),
    c("<", "int", 3, (2, -1.5, "-7"), (3, "3", 3.5)),
    c(">=", "int", 3, (3, 3.2, 100), (2.9, "2")),
    c("<=", "int", 3, (3, 2, "3", -3.9), (4, "4")),
    # --- Datatype float: numbers and ParseFloat strings.
    c("=", "float", 1.5, (1.5, "1.5", "15e-1", "1_5e-1"), (1, "1.5 ", True)),
    c("=", "float", 2, (2, 2.0, "2"), (2.5,)),
    c("!=", "float", 1.5, (2, "2.5"), (1.5, "1.5", "abc", False)),
    c(">", "float", 100.01, (101, "1e3", "inf", 100.02), (100, "nan", 100.01, "x")),
    c("<", "float", 100.01, (100, "-inf", -1), (100.01, 200, "x")),
    c(">=", "float", 4.13, ("4.13", 5, 4.13), (4, "fourPointOneThree")),
    c("<=", "float", 4.13, ("4.13", 4, -1.0), (4.2, "4.2")),
    # --- Datatype bool (= and != only): present values read like Go's ParseBool, else false.
    c("=", "bool", True, (True, "true", "T", "1", 1, 1.0), (False, "yes", 2, "TrUe", "0")),
    c("=", "bool", False, (False, "false", "yes", 0, "0", 2), (True, "t", 1)),
    c("=", "bool", "true", (True, "TRUE"), (False,)),
    c("!=", "bool", True, (False, "no", 0), (True, "1", "t")),
    c("!=", "bool", False, (True, "T"), (False, "x")),
    # --- string operators: Datatype is ignored, values are %v text, a missing field is "<nil>".
    c("starts-with", None, "honey", ("honeycomb", "honey"), ("Honeycomb", "bee", "")),
    c("starts-with", None, "12", (123, 12.5, "12"), (312, 1.2)),
    c("starts-with", "string", "tr", (True, "true"), (False, "xtr")),
    c("starts-with", "int", "5", ("5x", 55), ("x5",)),
    c("starts-with", None, "<", ("<a",), ("a",), missing=True),
    c("contains", None, "eyco", ("honeycomb", "eyco"), ("honey", "EYCO", 1)),
    c("contains", None, ".", (1.5, "a.b"), (15, 1.0, True)),
    c("contains", "string", "ru", (True, "run"), (False,)),
    c("contains", None, "nil", ("vanilla",), ("x",), missing=True),
    c("does-not-contain", None, "noteyco", ("honeycomb", "", 5), ("xnoteycox",), missing=True),
    c("does-not-contain", "string", "ue", (False, "x"), (True, "blue"), missing=True),
    c("does-not-contain", "float", "1", (2.5, "x"), (1.5, 10), missing=True),
    # --- exists / not-exists: any present value, whatever its type; Datatype is ignored.
    c("exists", None, None, ("x", 0, False, "", 0.0), ()),
    c("exists", "int", None, ("not an int",), ()),
    c("not-exists", None, None, (), ("x", 0, False, ""), missing=True),
    c("not-exists", "string", None, (), ("x",), missing=True),
    # --- in / not-in: sets of %v text without Datatype or with string; of ints; of floats.
    c("in", None, ["a", "b", 3, True], ("a", 3, "3", True, "true"), ("c", 3.5, False, "A")),
    c("in", None, "a", ("a",), ("ab", "")),
    c("in", None, 3.0, (3, "3", 3.0), ("3.0",)),
    c("in", "string", [200, 404], (200, "404", 200.0), ("200.0", 500)),
    c("not-in", None, ["a", "b"], ("c", 1, True), ("a", "b"), missing=True),
    c("not-in", "string", [1], ("2", 2), (1, "1", 1.0), missing=True),
    c("in", "int", [200, "201", 202.9, "x"], (200, "201", 202.5, 201.0), (203, "200.0", True, "x")),
    c("in", "int", 7, (7, "7", 7.7), (8,)),
    c("not-in", "int", [200, 201], (500, "abc", True), (200, "201", 201.5), missing=True),
    c("in", "float", [1.5, "2.5", 3], (1.5, "2.5", 3, "3.0", 3.0), (1.4, "x", "nan")),
    c("not-in", "float", [1.5], (2, "nan", "x"), (1.5, "1.5", "15e-1"), missing=True),
    # --- matches: the precompiled pattern searched in the %v text.
    c("matches", None, r"^[0-9]+$", ("123", 123), ("abc", "123abc", 1.5)),
    c("matches", None, r"\d+", ("abc123", 7, 2.5), ("abc",)),
    c("matches", None, r"^/api/v[12]/", ("/api/v1/users",), ("/api/v3/x", "x/api/v1/")),
    c("matches", "int", r"^tr", (True,), (1,)),
    c("matches", None, r".*", ("", 0), (), missing=True),
    c("matches", None, r"^<nil>$", ("<nil>",), ("nil",), missing=True),
]

SCOPES = ("trace", "span")


def _values(case: Case) -> list[tuple[FieldValue, bool]]:
    return [(v, True) for v in case.hits] + [(v, False) for v in case.misses]


ONE_SPAN = [
    pytest.param(case, value, expected, scope, id=f"{case.label()}={value!r}-{scope}")
    for case in CASES
    for value, expected in _values(case)
    for scope in SCOPES
]
MISSING = [
    pytest.param(case, scope, id=f"{case.label()}-missing-{scope}")
    for case in CASES
    for scope in SCOPES
]
TWO_SPANS = [
    pytest.param(case, value, expected, id=f"{case.label()}={value!r}")
    for case in CASES
    for value, expected in _values(case)
]


def _matches(case: Case, scope: str, trace: FakeTrace, *extra: ConditionSpec) -> bool:
    sampler = rules_sampler(rule("r", case.condition(), *extra, scope=scope, drop=True))
    return not sampler.decide(trace, now=0.0).keep


def test_every_operator_is_covered() -> None:
    from refinery_py.config.rules_spec import OPERATORS

    covered = {case.operator for case in CASES} | {"has-root-span"}  # see test_rules.py
    assert covered == set(OPERATORS)


@pytest.mark.parametrize(("case", "value", "expected", "scope"), ONE_SPAN)
def test_operator_on_one_span(case: Case, value: FieldValue, expected: bool, scope: str) -> None:
    assert _matches(case, scope, FakeTrace([{"f": value}])) is expected


@pytest.mark.parametrize(("case", "scope"), MISSING)
def test_operator_on_a_span_without_the_field(case: Case, scope: str) -> None:
    assert _matches(case, scope, FakeTrace([{"other": 1}])) is case.missing


@pytest.mark.parametrize(("case", "value", "expected"), TWO_SPANS)
def test_scopes_with_field_and_companion_on_different_spans(
    case: Case, value: FieldValue, expected: bool
) -> None:
    companion = cond("companion", "exists")
    trace = FakeTrace([{"f": value}, {"companion": 1}])
    assert _matches(case, "trace", trace, companion) is (expected or case.missing)
    assert _matches(case, "span", trace, companion) is case.missing


@pytest.mark.parametrize(("case", "value", "expected"), TWO_SPANS)
def test_scopes_with_field_and_companion_on_one_span(
    case: Case, value: FieldValue, expected: bool
) -> None:
    companion = cond("companion", "exists")
    trace = FakeTrace([{"f": value, "companion": 1}, {"other": 1}])
    assert _matches(case, "trace", trace, companion) is (expected or case.missing)
    assert _matches(case, "span", trace, companion) is expected


# --- Refinery's set-up failures and fallbacks, kept deliberately.


def _one(condition: ConditionSpec, value: FieldValue | None) -> bool:
    sampler = rules_sampler(rule("r", condition, drop=True))
    span = {} if value is None else {"f": value}
    return not sampler.decide(FakeTrace([span]), now=0.0).keep


def test_ordering_operator_with_bool_datatype_falls_back_to_untyped() -> None:
    # Refinery only sets a bool match function for = and !=; > compares untyped.
    assert _one(cond("f", ">", 5, "bool"), 6) is True
    assert _one(cond("f", ">", 5, "bool"), "6") is False


def test_int_datatype_with_unconvertible_value_falls_back_to_untyped() -> None:
    # Refinery's set-up fails on Value "abc" and leaves the untyped comparison in charge.
    assert _one(cond("f", "=", "abc", "int"), "abc") is True
    assert _one(cond("f", "=", "abc", "int"), 0) is False
    assert _one(cond("f", "<", "x", "float"), "a") is True


def test_in_with_bool_datatype_never_matches() -> None:
    assert _one(cond("f", "in", [True], "bool"), True) is False
    assert _one(cond("f", "not-in", [True], "bool"), False) is False
    assert _one(cond("f", "not-in", [True], "bool"), None) is False


def test_in_with_a_bool_or_missing_value_never_matches() -> None:
    assert _one(cond("f", "in", True), True) is False
    assert _one(cond("f", "not-in", None), "x") is False


def test_list_value_with_comparison_never_matches() -> None:
    assert _one(cond("f", "=", ["a"]), "a") is False
    assert _one(cond("f", "=", ["a", "b"], "string"), "[a b]") is True  # Go's %v of a list


def test_matches_without_precompiled_pattern_compiles_at_construction() -> None:
    spec = ConditionSpec(fields=("f",), operator="matches", value=r"^a+$")
    assert _one(spec, "aaa") is True
    bad = ConditionSpec(fields=("f",), operator="matches", value="[a-z+")
    assert _one(bad, "a") is False


def test_nan_compares_as_equal_in_untyped_comparisons() -> None:
    # Go's compare finds NaN neither less nor more, so it reports equal.
    assert _one(cond("f", "=", 5), math.nan) is True
    assert _one(cond("f", ">", 5), math.nan) is False


def test_nan_truncates_to_min_int64_with_int_datatype() -> None:
    assert _one(cond("f", "<", -(2**62), "int"), math.nan) is True


def test_huge_int_compares_as_float_against_float_value() -> None:
    # Go converts the int64 to float64 first: 2**53 + 1 becomes 2**53.
    assert _one(cond("f", "=", float(2**53)), 2**53 + 1) is True
    assert _one(cond("f", "=", 2**53), 2**53 + 1) is False


def test_pattern_search_uses_the_spec_pattern() -> None:
    spec = ConditionSpec(
        fields=("f",), operator="matches", value="ignored", pattern=compile_go_regex("^x")
    )
    assert _one(spec, "xyz") is True
