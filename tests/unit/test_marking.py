"""When spans are marked as they are buffered: while marks spare walks, and not otherwise."""

from __future__ import annotations

import pytest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from refinery_py.otlp.span_fields import MARK_ERROR, FieldPlan
from refinery_py.pipeline.marking import PROBE_EVERY, Marking


def _span(*keys: str, error: bool = False) -> bytes:
    span = Span(
        trace_id=bytes(range(1, 17)),
        span_id=bytes(range(1, 9)),
        name="op",
        attributes=[KeyValue(key=key, value=AnyValue(string_value="v")) for key in keys],
    )
    if error:
        span.status.code = span.status.STATUS_CODE_ERROR
    return span.SerializeToString()


def _marking() -> tuple[Marking, int]:
    plan = FieldPlan(walks=True)
    flag_bit = 1 << (plan.slot("app.flagged") + 1)
    return Marking(plan), flag_bit


def test_marks_are_taken_while_few_spans_have_what_is_asked() -> None:
    marking, flag_bit = _marking()
    plain = [_span("http.route", "customer.id")] * 99
    rare = [*plain, _span("app.flagged"), _span(error=True)]
    for _ in range(200):
        marks = marking.marks(rare)
        assert marks is not None
        assert marks[-2] == flag_bit and marks[-1] == MARK_ERROR and not any(marks[:-2])
        marking.decided(flag_bit | MARK_ERROR)
    assert marking.pays


def test_marking_stops_when_most_spans_have_what_is_asked_and_probes_to_resume() -> None:
    marking, flag_bit = _marking()
    common = [_span("app.flagged")] * 10
    marking.decided(flag_bit)
    taken = [marking.marks(common) is not None for _ in range(10 * PROBE_EVERY)]
    assert not marking.pays
    # Once it stops, only probes mark: one batch in PROBE_EVERY.
    assert sum(taken[-4 * PROBE_EVERY :]) == 4
    rare = [_span("http.route")] * 10
    for _ in range(100 * PROBE_EVERY):
        marking.marks(rare)
        marking.decided(flag_bit)
    assert marking.pays
    assert marking.marks(rare) is not None


def test_marking_stops_when_no_rule_asks() -> None:
    marking, _ = _marking()
    spans = [_span("http.route")] * 10
    for _ in range(200):
        marking.marks(spans)
        marking.decided(0)
    assert not marking.pays
    assert sum(marking.marks(spans) is not None for _ in range(PROBE_EVERY)) == 1


@pytest.mark.parametrize("walks", [False])
def test_spans_read_by_searches_are_not_marked(walks: bool) -> None:
    marking = Marking(FieldPlan(walks=walks))
    assert marking.marks([_span("app.flagged")]) is None
