"""Re-encode protobuf wire bytes with every message's fields in another order, at every level.

Protobuf lets a writer put a message's fields in any order, and the OpenTelemetry Collector
writes them in descending field-number order (a span's status first and its trace_id last, every
KeyValue's value before its key). Readers that only work for the order upb writes pass tests
built with upb; these helpers produce the other encodings of the same messages:

- `"descending"`: what the Collector writes;
- `"shuffled"`: a seeded random order per message;
- `"ascending"`: canonical order (what upb writes), for a control.

Occurrences of one field number keep their relative order (it is the order of a repeated
field's elements). With `decoys=True` the bytes also exercise protobuf's merge rules: every
singular scalar field is preceded by an occurrence holding a different value (the last one
wins), and every singular message field is split into two occurrences (they merge). The result
parses to a message equal to the original's.

Driven by the message descriptors, so it covers every field the OTLP version in use defines. It
has its own small wire parser on purpose: it must not share a bug with the code it tests.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

Order = Literal["ascending", "descending", "shuffled"]
ORDERS: tuple[Order, ...] = ("ascending", "descending", "shuffled")

_VARINT, _FIXED64, _LEN, _FIXED32 = 0, 1, 2, 5


@dataclass
class _Field:
    number: int
    wire_type: int
    value: bytes
    """The encoded value: varint bytes, fixed bytes, or a LEN field's payload (no length)."""


def reorder_request(body: bytes, order: Order, *, seed: int = 0, decoys: bool = False) -> bytes:
    """An `ExportTraceServiceRequest`'s bytes with every message's fields in `order`."""
    return reorder(
        body, ExportTraceServiceRequest.DESCRIPTOR, order, random.Random(seed), decoys=decoys
    )


def reorder(
    data: bytes,
    descriptor: Descriptor,
    order: Order,
    rng: random.Random,
    *,
    decoys: bool = False,
) -> bytes:
    """`data` (a serialized message of type `descriptor`) re-encoded with fields in `order`."""
    fields = _parse(data)
    by_number = {fd.number: fd for fd in descriptor.fields}
    for item in fields:
        fd = by_number.get(item.number)
        if fd is not None and fd.message_type is not None and item.wire_type == _LEN:
            item.value = reorder(item.value, fd.message_type, order, rng, decoys=decoys)
    if decoys:
        fields = _with_decoys(fields, by_number, rng)
    return b"".join(_encode(item) for item in _ordered(fields, order, rng))


def _ordered(fields: list[_Field], order: Order, rng: random.Random) -> list[_Field]:
    if order == "ascending":
        return sorted(fields, key=lambda item: item.number)
    if order == "descending":
        return sorted(fields, key=lambda item: -item.number)
    queues: dict[int, list[_Field]] = {}
    for item in fields:
        queues.setdefault(item.number, []).append(item)
    numbers = [item.number for item in fields]
    rng.shuffle(numbers)
    for queue in queues.values():
        queue.reverse()
    return [queues[number].pop() for number in numbers]


def _with_decoys(
    fields: list[_Field], by_number: dict[int, FieldDescriptor], rng: random.Random
) -> list[_Field]:
    """Decoy occurrences before singular fields; singular messages split in two."""
    out: list[_Field] = []
    for item in fields:
        fd = by_number.get(item.number)
        if fd is None or fd.is_repeated:
            out.append(item)
        elif fd.message_type is not None:
            inner = _parse(item.value)
            half = len(inner) // 2
            out.append(_Field(item.number, _LEN, b"".join(map(_encode, inner[:half]))))
            out.append(_Field(item.number, _LEN, b"".join(map(_encode, inner[half:]))))
        else:
            out.append(_decoy(item, fd, rng))
            out.append(item)
    return out


def _decoy(item: _Field, fd: FieldDescriptor, rng: random.Random) -> _Field:
    """An occurrence of `item`'s field with a different value, of a valid encoding."""
    if item.wire_type == _LEN:
        if fd.type == FieldDescriptor.TYPE_STRING:
            return _Field(item.number, _LEN, b"decoy-" + item.value[:8].hex().encode())
        length = len(item.value) or 8
        value = bytes(rng.randrange(1, 256) for _ in range(length))
        return _Field(item.number, _LEN, value if value != item.value else value[::-1])
    if item.wire_type == _VARINT:
        return _Field(item.number, _VARINT, b"\x07" if item.value != b"\x07" else b"\x05")
    size = 8 if item.wire_type == _FIXED64 else 4
    value = bytes(rng.randrange(1, 256) for _ in range(size))
    return _Field(item.number, item.wire_type, value)


def _parse(data: bytes) -> list[_Field]:
    fields: list[_Field] = []
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire_type = key >> 3, key & 7
        if wire_type == _VARINT:
            _, end = _varint(data, pos)
            fields.append(_Field(number, wire_type, data[pos:end]))
            pos = end
        elif wire_type == _FIXED64:
            fields.append(_Field(number, wire_type, data[pos : pos + 8]))
            pos += 8
        elif wire_type == _FIXED32:
            fields.append(_Field(number, wire_type, data[pos : pos + 4]))
            pos += 4
        elif wire_type == _LEN:
            length, pos = _varint(data, pos)
            fields.append(_Field(number, wire_type, data[pos : pos + length]))
            pos += length
        else:
            raise ValueError(f"wire type {wire_type} is not used by OTLP")
    if pos != len(data):
        raise ValueError("message runs past its end")
    return fields


def _encode(item: _Field) -> bytes:
    tag = _varint_bytes((item.number << 3) | item.wire_type)
    if item.wire_type == _LEN:
        return tag + _varint_bytes(len(item.value)) + item.value
    return tag + item.value


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def _varint_bytes(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)
