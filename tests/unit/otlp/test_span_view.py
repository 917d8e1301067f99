from __future__ import annotations

import base64

import orjson
import pytest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue, KeyValueList
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from refinery_py.otlp.ingest import OriginInterner, split_request
from refinery_py.otlp.span_view import WireSpan, WireTrace, locate_span_attribute
from refinery_py.otlp.wire import encode_varint
from tests.otlp_builders import kv, request, span


def view_of(message_span: Span, **request_kwargs: object) -> WireSpan:
    batch = split_request(
        request(message_span, **request_kwargs).SerializeToString(),  # type: ignore[arg-type]
        OriginInterner(),
    )
    return WireSpan(batch.spans[0], batch.origins[0])


def test_attribute_types() -> None:
    s = view_of(span(1, 2, 1, attrs={"s": "x", "i": -7, "f": 1.5, "b": True, "z": 0}))
    assert s.get("s") == "x"
    assert s.get("i") == -7
    assert s.get("f") == 1.5
    assert s.get("b") is True
    assert s.get("z") == 0
    assert s.get("missing") is None


def test_arrays_maps_and_bytes_are_flattened_to_text() -> None:
    message = span(1, 2)
    message.attributes.extend(
        [
            KeyValue(
                key="arr",
                value=AnyValue(
                    array_value=ArrayValue(
                        values=[AnyValue(string_value="a"), AnyValue(int_value=2)]
                    )
                ),
            ),
            KeyValue(
                key="map",
                value=AnyValue(kvlist_value=KeyValueList(values=[kv("k", "v"), kv("n", 1.0)])),
            ),
            KeyValue(key="raw", value=AnyValue(bytes_value=b"\x00\x01")),
            KeyValue(key="empty", value=AnyValue()),
        ]
    )
    s = view_of(message)
    assert orjson.loads(str(s.get("arr"))) == ["a", 2]
    assert orjson.loads(str(s.get("map"))) == {"k": "v", "n": 1.0}
    assert s.get("raw") == base64.b64encode(b"\x00\x01").decode()
    assert s.get("empty") is None


def test_intrinsic_fields() -> None:
    root = view_of(span(1, 2, name="GET /x", duration_ns=1_500_000, kind=Span.SPAN_KIND_SERVER))
    assert root.get("name") == "GET /x"
    assert root.get("span.kind") == root.get("type") == "server"
    assert root.get("duration_ms") == 1.5
    assert root.get("status_code") == 0
    assert root.get("error") is None
    assert root.get("trace.trace_id") == (1).to_bytes(16, "big").hex()
    assert root.get("trace.span_id") == (2).to_bytes(8, "big").hex()
    assert root.get("trace.parent_id") is None
    assert root.get("span.num_events") == 0
    assert root.get("span.num_links") == 0
    child = view_of(span(1, 3, 2, error=True))
    assert child.get("error") is True
    assert child.get("status_code") == 2
    assert child.get("status_message") == "failed"
    assert child.get("trace.parent_id") == (2).to_bytes(8, "big").hex()


def test_span_attributes_win_over_scope_and_resource() -> None:
    s = view_of(
        span(1, 2, attrs={"shared": "span"}),
        resource_attrs={"shared": "resource", "region": "eu"},
    )
    assert s.get("shared") == "span"
    assert s.get("region") == "eu"
    assert s.get("service.name") == "svc"
    assert s.get("library.name") == "test.scope"
    assert s.get("library.version") == "1.0"


def test_event_and_link_attributes_are_not_span_attributes() -> None:
    message = span(1, 2)
    event = message.events.add()
    event.name = "exception"
    event.attributes.append(kv("exception.type", "ValueError"))
    link = message.links.add()
    link.trace_id = (9).to_bytes(16, "big")
    link.span_id = (9).to_bytes(8, "big")
    link.attributes.append(kv("link.kind", "follows"))
    s = view_of(message)
    assert s.get("exception.type") is None
    assert s.get("link.kind") is None
    assert s.get("span.num_events") == 1
    assert s.get("span.num_links") == 1


def test_a_key_inside_a_string_value_is_not_an_attribute() -> None:
    inner = kv("route", "/admin").SerializeToString()
    forged = b"\x4a" + bytes([len(inner)]) + inner
    s = view_of(span(1, 2, attrs={"note": "x" + forged.decode("latin-1"), "route": "/real"}))
    assert s.get("route") == "/real"


def test_first_of_duplicate_keys_wins() -> None:
    message = span(1, 2)
    message.attributes.extend([kv("dup", "first"), kv("dup", "second")])
    assert view_of(message).get("dup") == "first"


@pytest.mark.parametrize("key", ["a", "k" * 200, "ünïcödé"])
def test_locate_handles_long_and_unicode_keys(key: str) -> None:
    raw = span(1, 2, attrs={"before": 1, key: "found", "after": 2}).SerializeToString()
    located = locate_span_attribute(raw, key)
    assert located is not None
    rebuilt = Span.FromString(raw[located.field_start : located.field_end])
    assert [(a.key, a.value.string_value) for a in rebuilt.attributes] == [(key, "found")]
    value = AnyValue.FromString(located.buf[located.value_start : located.value_end])
    assert value.string_value == "found"


def test_trace_view_root_and_spans() -> None:
    batch = split_request(
        request(span(1, 2, 1), span(1, 1), span(1, 3, 1)).SerializeToString(), OriginInterner()
    )
    trace = WireTrace(batch.trace_ids[0], batch.spans, batch.origins, 1)
    assert trace.trace_id == (1).to_bytes(16, "big").hex()
    assert len(trace.spans) == 3
    assert trace.root is not None
    assert trace.root.get("trace.span_id") == (1).to_bytes(8, "big").hex()
    assert WireTrace(batch.trace_ids[0], batch.spans, batch.origins, -1).root is None


def test_a_span_has_one_view_however_it_is_reached() -> None:
    # The root is asked for first, then every span: the root's view (and what it has read) is
    # the one in the list, and the count needs no views at all.
    batch = split_request(
        request(span(1, 2, 1), span(1, 1), span(1, 3, 1)).SerializeToString(), OriginInterner()
    )
    trace = WireTrace(batch.trace_ids[0], batch.spans, batch.origins, 1)
    assert trace.span_count == 3
    root = trace.root
    assert root is trace.root
    spans = trace.spans
    assert [s.get("trace.span_id") for s in spans] == [
        (n).to_bytes(8, "big").hex() for n in (2, 1, 3)
    ]
    assert spans[1] is root
    assert trace.spans_with("trace.span_id")[1] is root


def _value_first(key_value: KeyValue) -> bytes:
    """A KeyValue's bytes with its value written before its key (the Collector's order)."""
    key = key_value.key.encode()
    value = key_value.value.SerializeToString()
    return b"\x12" + encode_varint(len(value)) + value + b"\x0a" + encode_varint(len(key)) + key


def _span_with(*key_values: bytes) -> bytes:
    """A child span's bytes whose attributes are the given encoded KeyValues."""
    raw = span(1, 2, 1).SerializeToString()
    return raw + b"".join(b"\x4a" + encode_varint(len(kv)) + kv for kv in key_values)


def test_a_value_written_before_its_key_is_found() -> None:
    raw = _span_with(
        _value_first(kv("first", "a")), _value_first(kv("customer.id", "acme")), b"\x0a\x01z"
    )
    found = locate_span_attribute(raw, "customer.id")
    assert found is not None and found.value() == "acme"
    rebuilt = Span.FromString(raw[found.field_start : found.field_end])
    assert [a.key for a in rebuilt.attributes] == ["customer.id"]
    assert WireSpan(raw, _ORIGIN).get("first") == "a"
    assert WireSpan(raw, _ORIGIN).get("z") is None  # a key with no value holds nothing


def test_the_last_key_of_a_key_value_is_its_key_and_values_merge() -> None:
    route = kv("http.route", "/cart").SerializeToString()
    # key "customer.id", then key "http.route": protobuf keeps the last, so this is http.route.
    renamed = b"\x0a\x0bcustomer.id" + route
    # Two value fields merge: the AnyValue's oneof takes the last one written.
    two_values = b"\x0a\x04plan" + b"\x12\x02\x18\x05" + b"\x12\x06\x0a\x04team"
    raw = _span_with(renamed, two_values)
    view = WireSpan(raw, _ORIGIN)
    assert view.get("customer.id") is None
    assert view.get("http.route") == "/cart"
    assert view.get("plan") == "team"
    message = Span.FromString(raw)
    assert {a.key: a.value.WhichOneof("value") for a in message.attributes} == {
        "http.route": "string_value",
        "plan": "string_value",
    }


_ORIGIN = split_request(request(span(1, 2)).SerializeToString(), OriginInterner()).origins[0]
