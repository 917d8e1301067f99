"""Protobuf wire-format primitives: varints, tags, and walking a message's top-level fields.

Only what the codec needs. Hot loops in `ingest` and `frame` inline the common cases and call these
for the rest.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final

from refinery_py.otlp.errors import MalformedPayload

# Final, so that compiled modules (see refinery_py/compiled.py) use them as constants.
VARINT: Final = 0
FIXED64: Final = 1
LEN: Final = 2
START_GROUP: Final = 3
END_GROUP: Final = 4
FIXED32: Final = 5

_SMALL_VARINTS: tuple[bytes, ...] = tuple(
    bytes((n,)) if n < 0x80 else bytes(((n & 0x7F) | 0x80, n >> 7)) for n in range(1 << 14)
)
"""Encoded varints for 0..16383: every span length and most message lengths, without arithmetic."""


def encode_varint(value: int) -> bytes:
    """Encode a non-negative int (or a negative int64, two's complement) as a varint."""
    if 0 <= value < 16384:
        return _SMALL_VARINTS[value]
    if value < 0:
        value += 1 << 64
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    """Decode the varint at `pos`; return (value, position after it)."""
    try:
        byte = buf[pos]
        if byte < 0x80:
            return byte, pos + 1
        result = byte & 0x7F
        shift = 7
        pos += 1
        while True:
            byte = buf[pos]
            pos += 1
            result |= (byte & 0x7F) << shift
            if byte < 0x80:
                return result, pos
            shift += 7
            if shift > 63:
                raise MalformedPayload("varint longer than 10 bytes")
    except IndexError:
        raise MalformedPayload("truncated varint") from None


def len_field(tag: bytes, payload: bytes) -> bytes:
    """One length-delimited field: tag, length, payload."""
    return tag + encode_varint(len(payload)) + payload


def skip_field(buf: bytes, pos: int, wire_type: int, end: int) -> int:
    """Return the position after a field's value whose tag ended at `pos`."""
    if wire_type == VARINT:
        _, pos = read_varint(buf, pos)
    elif wire_type == LEN:
        length, pos = read_varint(buf, pos)
        pos += length
    elif wire_type == FIXED64:
        pos += 8
    elif wire_type == FIXED32:
        pos += 4
    elif wire_type == START_GROUP:
        depth = 1
        while depth:
            if pos >= end:
                raise MalformedPayload("unterminated group")
            key, pos = read_varint(buf, pos)
            if key & 7 == START_GROUP:
                depth += 1
            elif key & 7 == END_GROUP:
                depth -= 1
            else:
                pos = skip_field(buf, pos, key & 7, end)
    else:
        raise MalformedPayload(f"invalid wire type {wire_type}")
    if pos > end:
        raise MalformedPayload("field runs past the end of its message")
    return pos


def iter_fields(buf: bytes, start: int, end: int) -> Iterator[tuple[int, int, int, int, int]]:
    """Yield (field number, wire type, field start, value start, value end) for each field.

    For LEN fields the value span excludes the length prefix; for other types it is the encoded
    value. `field start` is where the tag begins, so `buf[field_start:value_end]` is the whole
    encoded field.
    """
    pos = start
    while pos < end:
        field_start = pos
        key, pos = read_varint(buf, pos)
        wire_type = key & 7
        if wire_type == LEN:
            length, value_start = read_varint(buf, pos)
            pos = value_start + length
            if pos > end:
                raise MalformedPayload("field runs past the end of its message")
            yield key >> 3, wire_type, field_start, value_start, pos
        else:
            value_start = pos
            pos = skip_field(buf, pos, wire_type, end)
            yield key >> 3, wire_type, field_start, value_start, pos
