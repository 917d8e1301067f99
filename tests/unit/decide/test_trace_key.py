"""The dynamic samplers' key, including Refinery's TestKeyGeneration cases (trace_key_test.go)."""

from __future__ import annotations

import pytest

from refinery_py.decide.trace_key import MAX_KEY_VALUES, MAX_SPANS_SCANNED, TraceKey
from refinery_py.model import FieldValue

from .fakes import FakeTrace

Spans = list[dict[str, FieldValue]]


def key_of(fields: list[str], spans: Spans, *, length: bool = False, root: int | None = 0) -> str:
    return TraceKey(fields, length).build(FakeTrace(spans, root=root))


@pytest.mark.parametrize(
    ("fields", "spans", "root", "expected"),
    [
        (
            ["http.status_code", "request.path", "app.team.id", "important_field"],
            [
                {
                    "http.status_code": 200,
                    "request.path": "/{slug}/home",
                    "app.team.id": 2.0,
                    "important_field": True,
                }
            ],
            None,
            "2•,200•,true•,/{slug}/home•,1",
        ),
        (
            ["http.status_code", "request.path", "app.team.id", "important_field"],
            [
                {"http.status_code": 200},
                {"request.path": "/{slug}/home"},
                {"app.team.id": 2.0},
                {"important_field": True},
            ],
            None,
            "2•,200•,true•,/{slug}/home•,4",
        ),
        (
            ["http.status_code"],
            [
                {"http.status_code": 200},
                {"http.status_code": 200},
                {"http.status_code": 404},
                {"http.status_code": 404},
            ],
            None,
            "200•404•,4",
        ),
        (
            ["http.status_code", "root.service_name", "root.another_field"],
            [
                {"http.status_code": 404},
                {"http.status_code": 200, "service_name": "another"},
                {"service_name": "test"},
            ],
            2,
            "200•404•,test,3",
        ),
        (
            ["http.status_code", "request.path"],
            [{"app.team.id": 2}, {"important_field": True}],
            1,
            "2",
        ),
    ],
    ids=["single span", "spread", "repeated values", "root fields", "no values"],
)
def test_refinery_key_generation(
    fields: list[str], spans: Spans, root: int | None, expected: str
) -> None:
    assert key_of(fields, spans, length=True, root=root) == expected


def test_values_are_compared_as_text() -> None:
    # 1 and "1" are one value; True, 1 and 1.0 would be one set member but are three texts.
    assert key_of(["a"], [{"a": 1}, {"a": "1"}]) == "1•,"
    assert key_of(["a"], [{"a": True}, {"a": 1}, {"a": 1.5}]) == "1•1.5•true•,"
    assert key_of(["a"], [{"a": "x"}, {"a": 1}, {"a": "x"}]) == "1•x•,"


def test_floats_print_like_go() -> None:
    # Non-root values use strconv.FormatFloat(f, 'f', -1, 64); root values use %v.
    assert key_of(["a"], [{"a": 1e21}]) == "1000000000000000000000•,"
    assert key_of(["a"], [{"a": 0.000001}]) == "0.000001•,"
    assert key_of(["root.a"], [{"a": 1e21}]) == "1e+21,"
    assert key_of(["root.a"], [{"a": 2.0}]) == "2,"


def test_root_fields_need_a_root_span() -> None:
    assert key_of(["root.a", "b"], [{"a": "x", "b": "y"}], root=None) == "y•,"
    assert key_of(["root.a", "b"], [{"a": "x", "b": "y"}], root=0) == "y•,x,"


def test_absent_fields_leave_no_trace_in_the_key() -> None:
    assert key_of(["a", "b", "c"], [{"b": "y"}]) == "y•,"
    assert key_of(["a"], []) == ""
    assert key_of(["a"], [], length=True, root=None) == "0"


def test_field_order_does_not_matter() -> None:
    spans: Spans = [{"a": "1", "b": "2"}]
    assert key_of(["b", "a"], spans) == key_of(["a", "b"], spans) == "1•,2•,"


def test_key_values_are_capped() -> None:
    # Refinery's TestKeyLimits: 160 distinct values each for two fields.
    spans: Spans = [{"fieldA": f"value{i}", "fieldB": i} for i in range(160)]
    key = key_of(["fieldA", "fieldB"], spans, length=True)
    assert key.count("•") == MAX_KEY_VALUES
    # The first values met are kept (in span order, then sorted), and fieldB is never reached.
    kept = key.split("•,")[0].split("•")
    assert sorted(kept) == sorted(f"value{i}" for i in range(MAX_KEY_VALUES))
    assert key.endswith("•,160")


def test_cap_counts_values_across_fields() -> None:
    spans: Spans = [{"a": f"a{i}", "b": f"b{i}"} for i in range(60)]
    key = key_of(["a", "b"], spans)
    assert key.count("•") == MAX_KEY_VALUES
    assert key.count("a") == 60
    assert key.count("b") == MAX_KEY_VALUES - 60


def test_huge_traces_are_read_only_up_to_the_cap_plus_the_root() -> None:
    spans: Spans = [{"svc": "web"} for _ in range(MAX_SPANS_SCANNED + 500)]
    spans[MAX_SPANS_SCANNED + 10] = {"svc": "late-service"}
    spans[-1] = {"svc": "root-service"}
    trace = FakeTrace(spans, root=len(spans) - 1)
    assert TraceKey(["svc"], True).build(trace) == f"root-service•web•,{len(spans)}"
    assert sum(len(span.reads) for span in trace._spans) == MAX_SPANS_SCANNED + 1


def test_only_the_key_fields_are_read() -> None:
    key = TraceKey(["root.customer.id", "http.route"], False)
    assert key.fields == {"customer.id", "http.route"}
    trace = FakeTrace([{"customer.id": "c1", "http.route": "/a", "other": 1}, {"x": 2}])
    assert key.build(trace) == "/a•,c1,"
    assert trace.reads() == {"customer.id", "http.route"}
