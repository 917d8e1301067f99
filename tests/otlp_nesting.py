"""The same deeply nested attribute value as OTLP JSON and as hand-encoded protobuf.

Hand-encoded because upb will not build a message nested past its own limit.
"""

from __future__ import annotations

from collections.abc import Callable

from refinery_py.otlp.wire import encode_varint

TRACE_ID = "0102030405060708090a0b0c0d0e0f10"
SPAN_ID = "0102030405060708"


def _len(tag: int, payload: bytes) -> bytes:
    return bytes([tag]) + encode_varint(len(payload)) + payload


def nested(levels: int, kind: str) -> tuple[dict[str, object], bytes]:
    """An AnyValue wrapped `levels` times in arrays or maps: (JSON, protobuf)."""
    document: dict[str, object] = {"stringValue": "x"}
    encoded = _len(0x0A, b"x")
    for _ in range(levels):
        if kind == "array":
            document = {"arrayValue": {"values": [document]}}
            encoded = _len(0x2A, _len(0x0A, encoded))
        else:
            document = {"kvlistValue": {"values": [{"key": "k", "value": document}]}}
            encoded = _len(0x32, _len(0x0A, _len(0x0A, b"k") + _len(0x12, encoded)))
    return document, encoded


def in_span_attribute(value: dict[str, object], encoded: bytes) -> tuple[object, bytes]:
    """A request whose one span has the value as an attribute: (JSON document, protobuf)."""
    attribute = {"key": "deep", "value": value}
    span = {"traceId": TRACE_ID, "spanId": SPAN_ID, "attributes": [attribute]}
    span_bytes = (
        _len(0x0A, bytes.fromhex(TRACE_ID))
        + _len(0x12, bytes.fromhex(SPAN_ID))
        + _len(0x4A, _len(0x0A, b"deep") + _len(0x12, encoded))
    )
    document = {"resourceSpans": [{"scopeSpans": [{"spans": [span]}]}]}
    return document, _len(0x0A, _len(0x12, _len(0x12, span_bytes)))


def in_event_attribute(value: dict[str, object], encoded: bytes) -> tuple[object, bytes]:
    """One level deeper than a span attribute: Span → Event → KeyValue → AnyValue."""
    event = {"name": "e", "attributes": [{"key": "deep", "value": value}]}
    span = {"traceId": TRACE_ID, "spanId": SPAN_ID, "events": [event]}
    event_bytes = _len(0x12, b"e") + _len(0x1A, _len(0x0A, b"deep") + _len(0x12, encoded))
    span_bytes = (
        _len(0x0A, bytes.fromhex(TRACE_ID))
        + _len(0x12, bytes.fromhex(SPAN_ID))
        + _len(0x5A, event_bytes)
    )
    document = {"resourceSpans": [{"scopeSpans": [{"spans": [span]}]}]}
    return document, _len(0x0A, _len(0x12, _len(0x12, span_bytes)))


def in_resource_attribute(value: dict[str, object], encoded: bytes) -> tuple[object, bytes]:
    """One level shallower than a span attribute: ResourceSpans → Resource → KeyValue."""
    document = {"resourceSpans": [{"resource": {"attributes": [{"key": "d", "value": value}]}}]}
    resource = _len(0x0A, _len(0x0A, b"d") + _len(0x12, encoded))
    return document, _len(0x0A, _len(0x0A, resource))


Place = Callable[[dict[str, object], bytes], tuple[object, bytes]]
"""Puts an AnyValue (JSON, protobuf) somewhere in a request: one of the `in_*` functions."""
