"""The one-walk span reader (`span_fields`) against upb and against the search (`span_search`).

The walk must read what upb reads whatever the encoding: fields in any order, padded tags and
lengths, repeated fields merged by protobuf's rules. Both reading strategies run here whatever
this process runs (compiled or not): `FieldPlan(walks=...)` picks one.
"""

from __future__ import annotations

import pytest
from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from refinery_py.otlp.ingest import OriginInterner, split_request
from refinery_py.otlp.span_fields import (
    INTRINSIC_FIELDS,
    MAX_PLANNED_KEYS,
    FieldPlan,
    SpanFields,
)
from refinery_py.otlp.span_view import WireSpan, WireTrace
from refinery_py.otlp.values import any_value_to_field
from refinery_py.otlp.wire import encode_varint
from tests.otlp_builders import kv, request, span

ORIGIN = split_request(request(span(1, 1)).SerializeToString(), OriginInterner()).origins[0]
BOTH = pytest.mark.parametrize("walks", [True, False], ids=["walk", "search"])


def _field(number: int, payload: bytes, *, pad: int = 0) -> bytes:
    """A length-delimited field, its tag and length padded with `pad` extra varint bytes."""
    return _varint((number << 3) | 2, pad) + _varint(len(payload), pad) + payload


def _varint(value: int, pad: int = 0) -> bytes:
    encoded = bytearray(encode_varint(value))
    if pad:
        encoded[-1] |= 0x80
        encoded += b"\x80" * (pad - 1) + b"\x00"
    return bytes(encoded)


def _read(raw: bytes, field: str, *, walks: bool) -> object:
    return WireSpan(raw, ORIGIN, FieldPlan(walks=walks)).get(field)


def _upb_attribute(raw: bytes, key: str) -> object:
    for attribute in Span.FromString(raw).attributes:
        if attribute.key == key:
            return any_value_to_field(attribute.value)
    return None


def test_padded_tags_and_lengths_read_as_upb_reads_them() -> None:
    # An attribute whose KeyValue, key and value all have padded tags and lengths, a padded
    # status, and a kind written as a ten-byte varint: upb reads them; so must the walk.
    key_value = _field(1, b"http.route", pad=2) + _field(2, _field(1, b"/cart", pad=1), pad=1)
    raw = (
        span(1, 2, 1, name="op").SerializeToString()
        + _field(9, key_value, pad=3)
        + b"\xb0\x00"  # kind (field 6, varint) with a padded tag...
        + _varint((1 << 64) - 1)  # ... and the value -1 in ten bytes
        + _field(15, b"\x98\x80\x00" + _varint(2, 2), pad=1)  # status code ERROR, padded
    )
    message = Span.FromString(raw)
    assert _upb_attribute(raw, "http.route") == "/cart"
    assert message.status.code == 2 and message.kind == -1
    assert _read(raw, "http.route", walks=True) == "/cart"
    assert _read(raw, "error", walks=True) is True
    assert _read(raw, "status_code", walks=True) == 2
    assert _read(raw, "span.kind", walks=True) == "unspecified"


@BOTH
def test_every_intrinsic_reads_as_upb_reads_it(walks: bool) -> None:
    message = span(7, 8, 9, name="GET /x", duration_ns=1_500_000, error=True)
    message.kind = Span.SPAN_KIND_CLIENT
    message.events.add(name="e1")
    message.events.add(name="e2")
    message.links.add(trace_id=bytes(range(16)), span_id=bytes(range(8)))
    raw = message.SerializeToString()
    expected = {
        "trace.trace_id": message.trace_id.hex(),
        "trace.span_id": message.span_id.hex(),
        "trace.parent_id": message.parent_span_id.hex(),
        "name": "GET /x",
        "span.kind": "client",
        "type": "client",
        "duration_ms": 1.5,
        "status_code": 2,
        "status_message": "failed",
        "error": True,
        "span.num_events": 2,
        "span.num_links": 1,
    }
    assert set(expected) == INTRINSIC_FIELDS
    assert {field: _read(raw, field, walks=walks) for field in expected} == expected


@BOTH
def test_an_empty_span_has_the_defaults(walks: bool) -> None:
    assert _read(b"", "name", walks=walks) == ""
    assert _read(b"", "status_code", walks=walks) == 0
    assert _read(b"", "error", walks=walks) is None
    assert _read(b"", "trace.parent_id", walks=walks) is None
    assert _read(b"", "duration_ms", walks=walks) == 0
    assert _read(b"", "status_message", walks=walks) is None


def test_status_occurrences_merge_field_by_field() -> None:
    # Protobuf merges two occurrences of a message: code from the last that has one.
    first = _field(15, b"\x12\x04boom" + b"\x18\x02")
    second = _field(15, b"\x12\x02ok")
    raw = span(1, 2).SerializeToString() + first + second
    status = Span.FromString(raw).status
    assert (status.code, status.message) == (2, "ok")
    fields = SpanFields(raw, FieldPlan())
    assert fields.intrinsic(raw, "status_code") == 2
    assert fields.intrinsic(raw, "status_message") == "ok"


@BOTH
def test_the_first_attribute_with_a_key_wins_even_when_empty(walks: bool) -> None:
    message = span(1, 2)
    message.attributes.extend([KeyValue(key="dup"), kv("dup", "second"), kv("other", 3)])
    raw = message.SerializeToString()
    assert _read(raw, "dup", walks=walks) is None
    assert _read(raw, "other", walks=walks) == 3


def test_a_key_value_with_repeated_fields_reads_as_upb_merges_it() -> None:
    # Two key fields (the last wins) and two value fields (they merge: the last scalar wins).
    key_value = (
        _field(1, b"decoy")
        + _field(2, b"\x0a\x01a")
        + _field(1, b"route")
        + _field(2, b"\x0a\x01b")
    )
    raw = span(1, 2).SerializeToString() + _field(9, key_value)
    assert _upb_attribute(raw, "route") == "b" and _upb_attribute(raw, "decoy") is None
    assert _read(raw, "route", walks=True) == "b"
    assert _read(raw, "decoy", walks=True) is None


@BOTH
def test_long_keys_and_values(walks: bool) -> None:
    key = "k" * 300
    raw = span(1, 2, attrs={"short": "s", key: "v" * 500, "after": 1}).SerializeToString()
    assert _read(raw, key, walks=walks) == "v" * 500
    assert _read(raw, "after", walks=walks) == 1
    assert _read(raw, "k" * 299, walks=walks) is None


def test_keys_past_a_full_plan_are_read_one_by_one() -> None:
    plan = FieldPlan(walks=True)
    for n in range(MAX_PLANNED_KEYS):
        assert plan.slot(f"planned.{n}") == n
    assert plan.slot("one.too.many") == -1
    raw = span(1, 2, attrs={"planned.5": 5, "one.too.many": "found"}).SerializeToString()
    view = WireSpan(raw, ORIGIN, plan)
    assert view.get("planned.5") == 5
    assert view.get("one.too.many") == "found"
    assert view.may_have_attribute("one.too.many")


def test_a_key_planned_after_a_walk_is_read_by_another_walk() -> None:
    plan = FieldPlan(walks=True)
    raw = span(1, 2, attrs={"first": "a", "later": "b"}).SerializeToString()
    view = WireSpan(raw, ORIGIN, plan)
    assert view.get("first") == "a"
    assert view.get("later") == "b"
    assert plan.keys == ["first", "later"]


@BOTH
def test_spans_with_a_field(walks: bool) -> None:
    spans = [
        span(1, 1, attrs={"route": "/a"}).SerializeToString(),
        span(1, 2, 1, error=True).SerializeToString(),
        span(1, 3, 1, attrs={"route": "/b", "other": 1}).SerializeToString(),
    ]
    trace = WireTrace((1).to_bytes(16, "big"), spans, [ORIGIN] * 3, 0, FieldPlan(walks=walks))
    assert [s.get("trace.span_id") for s in trace.spans_with("route")] == [
        (1).to_bytes(8, "big").hex(),
        (3).to_bytes(8, "big").hex(),
    ]
    assert [s.get("error") for s in trace.spans_with("error")] == [True]
    assert trace.spans_with("missing") == []
    assert len(trace.spans_with("name")) == 3  # an intrinsic: every span
    assert len(trace.spans_with("service.name")) == 3  # on the resource: every span
