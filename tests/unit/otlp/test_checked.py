"""The compiled request check (`checked`) refuses exactly what upb's parser refuses.

upb is the reference: every body here is given to both, and they must agree. Edge cases of the
wire format first, then nesting at the limit, then thousands of requests damaged at random.
"""

from __future__ import annotations

import random

import pytest
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from refinery_py.otlp.checked import check_request
from refinery_py.otlp.errors import MalformedPayload
from refinery_py.otlp.wire import encode_varint
from tests.otlp_builders import request, span
from tests.otlp_nesting import in_event_attribute, in_resource_attribute, in_span_attribute, nested
from tests.otlp_traffic import varied_requests


def _upb_accepts(body: bytes) -> bool:
    try:
        ExportTraceServiceRequest.FromString(body)
    except DecodeError:
        return False
    return True


def _checked_accepts(body: bytes) -> bool:
    try:
        check_request(body)
    except MalformedPayload:
        return False
    return True


def _tag(number: int, wire_type: int) -> bytes:
    return encode_varint((number << 3) | wire_type)


def _len(number: int, payload: bytes) -> bytes:
    return _tag(number, 2) + encode_varint(len(payload)) + payload


def _in_span(fields: bytes) -> bytes:
    """A request whose one span is `fields` after a valid trace and span ID."""
    raw = _len(1, bytes(range(1, 17))) + _len(2, bytes(range(1, 9))) + fields
    return _len(1, _len(2, _len(2, raw)))


EDGES = {
    "a string field as a varint": _tag(5, 0) + encode_varint(5),
    "a message field as a varint": _tag(15, 0) + encode_varint(1),
    "an enum as a length-delimited field": _len(6, b"\xff\xfe"),
    "bad UTF-8 in the name": _len(5, b"\xff\xfe"),
    "bad UTF-8 in trace_state": _len(3, b"\xe2\x82"),
    "bad UTF-8 in an unknown field": _len(99, b"\xff\xfe"),
    "bad UTF-8 in the status message": _len(15, _len(2, b"\xc0\x80")),
    "a surrogate in an attribute key": _len(9, _len(1, b"\xed\xa0\x80")),
    "a string value with multi-byte UTF-8": _len(
        9, _len(1, "ключ".encode()) + _len(2, _len(1, "✓".encode()))
    ),
    "bytes in a bytes value": _len(9, _len(1, b"k") + _len(2, _len(7, b"\xff\x00\xfe"))),
    "field number 0": b"\x02\x00",
    "wire type 6": bytes([(20 << 3) | 6]),
    "wire type 7": bytes([(20 << 3) | 7]),
    "an end of group outside one": _tag(20, 4),
    "an unknown group": _tag(20, 3) + _tag(1, 0) + b"\x05" + _len(2, b"x") + _tag(20, 4),
    "a group ending with another number": _tag(20, 3) + _tag(21, 4),
    "a group that does not end": _tag(20, 3) + _tag(1, 0) + b"\x05",
    "a known field as a group": _tag(5, 3) + _tag(5, 4),
    "field number 0 in a group": _tag(20, 3) + b"\x05abcd" + b"\x00\x01" + _tag(20, 4),
    "a group of number 0 in a group": _tag(20, 3) + _tag(0, 3) + _tag(0, 4) + _tag(20, 4),
    "a group ending with number 0": _tag(20, 3) + _tag(0, 4),
    "a ten-byte varint": _tag(6, 0) + b"\xff" * 9 + b"\x01",
    "an eleven-byte varint": _tag(6, 0) + b"\xff" * 10 + b"\x01",
    "a five-byte tag": b"\xa8\x80\x80\x80\x00\x01",
    "a six-byte tag": b"\xa8\x80\x80\x80\x80\x00\x01",
    "a tag of 2^32": b"\x80\x80\x80\x80\x10\x01",
    "the largest field number": encode_varint(((1 << 29) - 1) << 3) + b"\x01",
    "a length past the end": _tag(5, 2) + encode_varint(5) + b"ab",
    "a length of 2^31": _tag(5, 2) + encode_varint(1 << 31),
    "a padded length": _tag(5, 2) + b"\x82\x80\x80\x80\x80\x80\x80\x80\x80\x00ab",
    "a truncated fixed64": _tag(7, 1) + b"abc",
    "a truncated varint": _tag(6, 0) + b"\x80",
    "a padded status with a group in it": _len(15, _tag(20, 3) + _tag(20, 4)),
}


@pytest.mark.parametrize("fields", EDGES.values(), ids=EDGES.keys())
def test_wire_format_edges(fields: bytes) -> None:
    body = _in_span(fields)
    assert _checked_accepts(body) == _upb_accepts(body)


def test_the_edges_include_both_verdicts() -> None:
    verdicts = {_upb_accepts(_in_span(fields)) for fields in EDGES.values()}
    assert verdicts == {True, False}


@pytest.mark.parametrize("kind", ["array", "map"])
@pytest.mark.parametrize("place", [in_span_attribute, in_event_attribute, in_resource_attribute])
def test_nesting_stops_where_upbs_does(place: object, kind: str) -> None:
    for levels in range(25, 55):
        _, body = place(*nested(levels, kind))  # type: ignore[operator]
        assert _checked_accepts(body) == _upb_accepts(body), levels


@pytest.mark.parametrize("groups", range(1, 5))
@pytest.mark.parametrize("levels", [45, 46, 47])
def test_groups_count_as_nesting(groups: int, levels: int) -> None:
    inner = b"\x0a\x01x" + _tag(20, 3) * groups + _tag(20, 4) * groups
    for _ in range(levels):
        inner = _len(5, _len(1, inner))
    raw = _len(1, bytes(range(1, 17))) + _len(2, bytes(range(1, 9))) + _len(9, _len(2, inner))
    body = _len(1, _len(2, _len(2, raw)))
    assert _checked_accepts(body) == _upb_accepts(body)


def _damaged(body: bytes, rng: random.Random) -> bytes:
    """`body` with one random change: a byte changed, bytes cut out or put in, or a cut end."""
    at = rng.randrange(len(body))
    choice = rng.randrange(5)
    if choice == 0:
        return body[:at] + bytes([rng.randrange(256)]) + body[at + 1 :]
    if choice == 1:
        return body[:at] + bytes([body[at] ^ (1 << rng.randrange(8))]) + body[at + 1 :]
    if choice == 2:
        return body[:at] + body[at + rng.randint(1, 4) :]
    if choice == 3:
        return body[:at] + rng.randbytes(rng.randint(1, 3)) + body[at:]
    return body[:at]


def test_randomly_damaged_requests() -> None:
    rng = random.Random(2026)
    bodies = [
        request(
            span(1, 2, 1, name="GET /x", attrs={"k": "v", "n": 7}, error=True)
        ).SerializeToString(),
        *varied_requests(seed=5, traces=4),
    ]
    small = [body for body in bodies if len(body) < 6000]
    verdicts = {True: 0, False: 0}
    for n in range(4000):
        body = _damaged(rng.choice(small), rng)
        if n % 3 == 0:  # and again, so some bodies carry two faults
            body = _damaged(body, rng) if body else body
        accepted = _upb_accepts(body)
        assert _checked_accepts(body) == accepted, body.hex()
        verdicts[accepted] += 1
    assert min(verdicts.values()) > 400  # both verdicts are well represented


@pytest.mark.parametrize("length", [1, 2, 7, 8, 9, 15, 16, 17, 23, 24, 25, 40])
def test_a_byte_above_0x7f_is_seen_wherever_it_is_in_a_string(length: int) -> None:
    """Strings are scanned 8 bytes at a time: put a non-ASCII byte (alone, bad UTF-8; or
    starting a two-byte character) at every position of strings of lengths around 8 and
    16, at every alignment of the string in the body."""
    verdicts = set()
    for shift in range(8):
        before = _len(5, b"a" * shift)  # moves the string by `shift` bytes
        for position in range(length):
            for odd in (b"\xff", "é".encode()):  # é cut at the end is bad UTF-8 too
                text = (b"x" * position + odd + b"y" * length)[:length]
                body = _in_span(before + _len(3, text))
                expected = _upb_accepts(body)
                assert _checked_accepts(body) == expected, (shift, position, text)
                verdicts.add(expected)
            ascii_body = _in_span(before + _len(3, b"z" * length))
            assert _checked_accepts(ascii_body) and _upb_accepts(ascii_body)
    assert verdicts == ({True, False} if length > 1 else {False})


@pytest.mark.parametrize("text", [b"", b"A", b"\xff", b"a\xc3", "é".encode(), b"ab\x80"])
def test_a_string_in_the_first_bytes_of_the_body(text: bytes) -> None:
    """A resource's schema_url can end before byte 8 of the body, where no 8-byte read fits."""
    body = _len(1, _len(3, text))
    assert len(body) < 8
    assert _checked_accepts(body) == _upb_accepts(body)


def _attribute(key: bytes, value: bytes) -> bytes:
    """A KeyValue as SDKs write it: key (1), then the AnyValue (2) holding `value` (its fields)."""
    return _len(1, key) + _len(2, value)


ATTRIBUTES = {
    "a string value": _attribute(b"http.route", _len(1, b"/api/v1/orders")),
    "an empty key and string": _attribute(b"", _len(1, b"")),
    "an int value": _attribute(b"http.status_code", _tag(3, 0) + encode_varint(503)),
    "a negative int (ten bytes)": _attribute(b"n", _tag(3, 0) + encode_varint((1 << 64) - 1)),
    "an eleven-byte int": _attribute(b"n", _tag(3, 0) + b"\xff" * 10 + b"\x01"),
    "an int cut short": _attribute(b"n", _tag(3, 0) + b"\xff\xff"),
    "an int with a byte after it": _attribute(b"n", _tag(3, 0) + b"\x05\x00"),
    "a bool value": _attribute(b"app.flagged", _tag(2, 0) + b"\x01"),
    "a bool of 300": _attribute(b"app.flagged", _tag(2, 0) + encode_varint(300)),
    "a double value": _attribute(b"d", _tag(4, 1) + b"\x00" * 8),
    "bad UTF-8 in the key": _attribute(b"k\xff", _len(1, b"v")),
    "bad UTF-8 in the value": _attribute(b"k", _len(1, b"v\xc3")),
    "UTF-8 in the key and value": _attribute("ключ".encode(), _len(1, "значение".encode())),
    "a key of 200 bytes": _attribute(b"k" * 200, _len(1, b"v")),
    "a value of 200 bytes": _attribute(b"k", _len(1, b"v" * 200)),
    "bad UTF-8 in a 200-byte value": _attribute(b"k", _len(1, b"v" * 199 + b"\xff")),
    "the value first": _len(2, _len(1, b"v")) + _len(1, b"k"),
    "two string values": _attribute(b"k", _len(1, b"a") + _len(1, b"b\xff")),
    "an empty value": _attribute(b"k", b""),
    "no value": _len(1, b"k"),
    "a value field as a varint": _len(1, b"k") + _tag(2, 0) + b"\x01",
    "an unknown field after the value": _attribute(b"k", _len(1, b"v")) + _tag(9, 0) + b"\x01",
    "a string value as a varint": _attribute(b"k", _tag(1, 0) + b"\x01"),
    "a string value past its AnyValue": _len(1, b"k") + b"\x12\x03\x0a\x05abc",
    "a key past the attribute": b"\x0a\x09abc" + _len(2, _len(1, b"v")),
}


@pytest.mark.parametrize("attribute", ATTRIBUTES.values(), ids=ATTRIBUTES.keys())
def test_attributes_as_sdks_write_them_and_not(attribute: bytes) -> None:
    """Attributes laid out as SDKs write them are checked on a shorter path than other
    KeyValues; both must agree with upb, in a span, a resource and an event."""
    bodies = [
        _in_span(_len(9, attribute)),
        _len(1, _len(1, _len(1, attribute))),  # a resource attribute
        _in_span(_len(11, _len(3, attribute))),  # an event attribute
    ]
    for body in bodies:
        assert _checked_accepts(body) == _upb_accepts(body), body.hex()


def test_the_attributes_include_both_verdicts() -> None:
    verdicts = {_upb_accepts(_in_span(_len(9, a))) for a in ATTRIBUTES.values()}
    assert verdicts == {True, False}
