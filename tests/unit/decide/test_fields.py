"""Where a condition's value comes from: Fields order, `root.`, `?.NUM_DESCENDANTS`, nesting."""

from __future__ import annotations

import json

import pytest

from refinery_py.config.rules_spec import NUM_DESCENDANTS, ConditionSpec
from refinery_py.decide.conditions import Condition

from .fakes import FakeSpan, FakeTrace, cond, rule, rules_sampler

SCOPES = ("trace", "span")


def matched(
    trace: FakeTrace, *conditions: ConditionSpec, scope: str = "trace", nested: bool = False
) -> bool:
    sampler = rules_sampler(rule("r", *conditions, scope=scope, drop=True), nested=nested)
    return not sampler.decide(trace, now=0.0).keep


# --- Fields: the first present field is the one tested, even when the test then fails.


@pytest.mark.parametrize("scope", SCOPES)
def test_fields_uses_the_first_present_field(scope: str) -> None:
    condition = cond(["a", "b"], "=", 17)
    assert matched(FakeTrace([{"b": 17}]), condition, scope=scope)
    assert not matched(FakeTrace([{"a": 2, "b": 17}]), condition, scope=scope)
    assert matched(FakeTrace([{"a": 17, "b": 2}]), condition, scope=scope)
    assert not matched(FakeTrace([{"c": 17}]), condition, scope=scope)


@pytest.mark.parametrize("scope", SCOPES)
def test_fields_are_resolved_per_span(scope: str) -> None:
    condition = cond(["a", "b"], "=", 17)
    assert matched(FakeTrace([{"a": 1}, {"b": 17}]), condition, scope=scope)


# --- root.: read from the root span; skipped when the trace has no root.


@pytest.mark.parametrize("scope", SCOPES)
def test_root_prefix_reads_the_root_span_only(scope: str) -> None:
    condition = cond("root.test", "contains", "foo", "string")
    spans = [{"test": "nope"}, {"test": "foo"}]
    assert not matched(FakeTrace(spans, root=0), condition, scope=scope)
    assert matched(FakeTrace(spans, root=1), condition, scope=scope)


@pytest.mark.parametrize("scope", SCOPES)
def test_root_prefix_value_counts_for_every_span(scope: str) -> None:
    # Scope span: the root's value is treated as part of the span being looked at.
    conditions = (cond("root.service.name", "=", "api"), cond("http.status_code", "=", 500))
    trace = FakeTrace([{"service.name": "api"}, {"http.status_code": 500}])
    assert matched(trace, *conditions, scope=scope)


@pytest.mark.parametrize("scope", SCOPES)
def test_root_prefix_without_a_root_is_skipped(scope: str) -> None:
    trace = FakeTrace([{"foo": 100.01}, {"foo": 99.1}], root=None)
    assert not matched(trace, cond("root.foo", "=", 100.01), scope=scope)
    assert matched(trace, cond(["root.foo", "foo"], "=", 100.01), scope=scope)


@pytest.mark.parametrize("scope", SCOPES)
def test_root_field_after_a_span_field(scope: str) -> None:
    # A span without `foo` falls back to the root's `foo`, and must then meet the other
    # conditions itself in Scope span.
    conditions = (cond(["foo", "root.foo"], "=", 2), cond("bar", "exists"))
    assert matched(FakeTrace([{"foo": 2}, {"bar": 0}], root=0), *conditions, scope=scope)
    assert not matched(FakeTrace([{"foo": 3}, {"bar": 0}], root=0), *conditions, scope=scope)
    own_foo = FakeTrace([{"foo": 2}, {"bar": 0, "foo": 3}])
    assert matched(own_foo, *conditions, scope=scope) is (scope == "trace")
    no_root = FakeTrace([{"foo": 2}, {"bar": 0}], root=None)
    assert matched(no_root, *conditions, scope=scope) is (scope == "trace")


@pytest.mark.parametrize("scope", SCOPES)
def test_not_exists_on_root_field_matches_a_trace_without_root(scope: str) -> None:
    # Refinery's documented foot-gun: without a has-root-span guard, a missing root means the
    # root field is missing too.
    trace = FakeTrace([{"service.name": "x"}, {"foo": True}], root=None)
    assert matched(trace, cond("root.service.name", "not-exists"), scope=scope)
    guarded = (cond(None, "has-root-span", True), cond("root.service.name", "not-exists"))
    assert not matched(trace, *guarded)


def test_root_match_stops_looking_at_other_spans() -> None:
    # Refinery's checkedOnlyRoot: a value found on the root settles the condition for the trace.
    spans = [FakeSpan({"x": 1}), FakeSpan({"x": 2}), FakeSpan({"x": 3})]
    trace = FakeTrace(spans, root=0)
    assert not matched(trace, cond("root.x", "=", 3))
    assert spans[1].reads == [] and spans[2].reads == []


def test_trace_scope_stops_at_the_first_matching_span() -> None:
    spans = [FakeSpan({"x": 1}), FakeSpan({"x": 2}), FakeSpan({"x": 3})]
    assert matched(FakeTrace(spans), cond("x", "=", 2))
    assert spans[2].reads == []


# --- ?.NUM_DESCENDANTS: the number of spans in the trace.


@pytest.mark.parametrize("scope", SCOPES)
@pytest.mark.parametrize(
    "case",
    [
        (">", 3, "int", 4, True),
        (">", 3, "int", 3, False),
        ("<", 3, None, 2, True),
        ("<", 3, None, 4, False),
        ("=", 1, None, 1, True),
        (">=", 2.5, None, 3, True),
        ("=", "5", "string", 5, True),
        ("<=", 4.0, "float", 5, False),
        ("exists", None, None, 1, True),
    ],
)
def test_num_descendants_is_the_span_count(
    scope: str, case: tuple[str, object, str | None, int, bool]
) -> None:
    operator, value, datatype, spans, expected = case
    trace = FakeTrace([{"i": i} for i in range(spans)])
    condition = cond(NUM_DESCENDANTS, operator, value, datatype)
    assert matched(trace, condition, scope=scope) is expected


def test_num_descendants_counts_without_a_root_and_reads_no_field() -> None:
    trace = FakeTrace([{}, {}, {}], root=None)
    assert matched(trace, cond(NUM_DESCENDANTS, "=", 3))
    assert trace.reads() == set()


def test_num_descendants_in_a_fields_list_is_an_ordinary_field() -> None:
    # Refinery computes it only for a single `Field`; in `Fields` it is looked up like any name.
    trace = FakeTrace([{"n": 7}, {}])
    assert matched(trace, cond([NUM_DESCENDANTS, "n"], "=", 7))
    assert not matched(trace, cond([NUM_DESCENDANTS, "n"], "=", 2))


def test_no_spans_means_no_condition_matches() -> None:
    empty = FakeTrace([], root=None)
    assert not matched(empty, cond("x", "not-exists"))
    assert not matched(empty, cond(NUM_DESCENDANTS, "=", 0))
    assert not matched(empty, cond("x", "not-exists"), scope="span")


# --- CheckNestedFields: dotted names inside JSON-valued attributes.


def test_nested_field_inside_a_json_attribute() -> None:
    headers = json.dumps({"User-Agent": "curl/8", "X-Count": 3, "Null": None, "List": [1, 2]})
    trace = FakeTrace([{"http.headers": headers}])
    condition = cond("http.headers.User-Agent", "starts-with", "curl")
    assert matched(trace, condition, nested=True)
    assert not matched(trace, condition, nested=False)


@pytest.mark.parametrize(
    ("field", "operator", "value", "datatype", "expected"),
    [
        # Nested values come back as text (gjson's Result.String()), so an untyped number
        # comparison does not match while a typed one does.
        ("a.count", "=", 3, None, False),
        ("a.count", "=", 3, "int", True),
        ("a.count", "=", "3", None, True),
        ("a.ratio", "=", "0.5", None, True),
        ("a.big", "=", "1000000", None, True),  # 1e6 written as 'f', not Go's %v
        ("a.flag", "=", "true", None, True),
        ("a.flag", "=", True, "bool", True),
        ("a.none", "exists", None, None, True),  # JSON null exists, as empty text
        ("a.none", "=", "", None, True),
        ("a.list.1", "=", "y", None, True),
        ("a.list.5", "exists", None, None, False),
        ("a.obj.k", "=", "v", None, True),
        ("a.obj", "=", '{"k":"v"}', None, True),
        ("a.missing", "not-exists", None, None, True),
        ("a.count.deeper", "exists", None, None, False),
    ],
)
def test_nested_values(
    field: str, operator: str, value: object, datatype: str | None, expected: bool
) -> None:
    document = {
        "count": 3,
        "ratio": 0.5,
        "big": 1e6,
        "flag": True,
        "none": None,
        "list": ["x", "y"],
        "obj": {"k": "v"},
    }
    trace = FakeTrace([{"a": json.dumps(document)}])
    assert matched(trace, cond(field, operator, value, datatype), nested=True) is expected


def test_nested_lookup_through_a_dotted_attribute_name() -> None:
    trace = FakeTrace([{"http.request": '{"method": {"name": "GET"}}'}])
    assert matched(trace, cond("http.request.method.name", "=", "GET"), nested=True)


def test_direct_field_wins_over_nested() -> None:
    trace = FakeTrace([{"test.test1": "a", "test": '{"test1": "b"}'}])
    assert matched(trace, cond("test.test1", "=", "a"), nested=True)


def test_all_fields_are_tried_directly_before_any_nested_lookup() -> None:
    trace = FakeTrace([{"test": '{"test1": "nested"}', "test2": "direct"}])
    condition = cond(["test.test1", "test2"], "=", "direct")
    assert matched(trace, condition, nested=True)


def test_nested_lookup_over_fields_in_order() -> None:
    trace = FakeTrace([{"test": '{"test2": "a"}'}])
    assert matched(trace, cond(["test.test1", "test.test2"], "=", "a"), nested=True)


def test_nested_lookup_ignores_text_that_is_not_json() -> None:
    trace = FakeTrace([{"a": "{not json", "a.b": "plain"}])
    assert not matched(trace, cond("a.b.c", "exists"), nested=True)
    assert matched(trace, cond("a.b", "=", "plain"), nested=True)


def test_nested_lookup_of_a_root_field_uses_the_raw_name_on_the_root() -> None:
    # Refinery hands gjson the field name with its `root.` prefix, on the root span's data.
    spans = [{"http": '{"x": "1"}', "root": '{"http": {"x": "2"}}'}, {"http": '{"x": "3"}'}]
    trace = FakeTrace(spans, root=0)
    assert not matched(trace, cond("root.http.x", "=", "1"), nested=True)
    assert matched(trace, cond("root.http.x", "=", "2"), nested=True)
    assert not matched(trace, cond("root.http.x", "=", "3"), nested=True)


def test_nested_lookup_stringifies_a_plain_attribute_found_on_the_nested_span() -> None:
    # With Fields [a, root.b], Refinery's nested pass reads `a` from the root span, as text.
    trace = FakeTrace([{"a": 5}, {"c": 1}], root=0)
    condition = cond(["a", "root.b"], "=", "5")
    assert matched(trace, condition, scope="span", nested=True)
    assert not matched(trace, condition, scope="span", nested=False)


def test_condition_reads_are_declared() -> None:
    assert Condition(cond(["root.a", "b"], "=", 1)).reads == {"a", "b"}
    assert Condition(cond(NUM_DESCENDANTS, ">", 1)).reads == frozenset()
    nested = Condition(cond("root.x.y", "exists"), check_nested_fields=True)
    assert nested.reads == {"x.y", "root", "root.x", "root.x.y"}
