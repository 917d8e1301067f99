"""Is this an ExportTraceServiceRequest? The answer upb's parser gives, from one compiled walk.

Validating a request with upb builds a message object for every attribute of every span, about
half of what ingest costs; compiled, walking the bytes against the message schema is a fraction
of that. The walk accepts and refuses exactly what upb does (tests/unit/otlp/test_checked.py
compares the two on thousands of damaged requests):

- every field's tag is a varint of at most 5 bytes below 2^32, with a field number above 0 (but
  inside an unknown group, where upb lets 0 pass too) and a wire type of 0-5; varints are at
  most 10 bytes, lengths at most 5; lengths and fixed-size values stay inside their message;
  groups end with the field number they started with;
- a field of the schema with its own wire type is checked as what it is: a message field's
  contents recursively, a string's UTF-8; with another wire type it is an unknown field, checked
  for framing only, like every field the schema does not know;
- messages (and groups) nest at most MAX_DEPTH levels below the request.

Most of a request is attributes, and most attributes are written the same way (an ASCII key, then
a value holding one short ASCII string or a number): `_plain_attribute` recognises those and
checks them without descending two levels; anything else takes the general walk.

The schema is read from the OTLP descriptors, so fields added by a newer opentelemetry-proto are
checked as upb checks them. Interpreted, this walk is slower than upb (see `ingest`).
"""

from __future__ import annotations

from typing import Final

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from librt.strings import read_i64_le
from mypy_extensions import i64
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from refinery_py.otlp.errors import MalformedPayload

MAX_DEPTH: Final = 100
"""upb's default nesting limit: messages at most 100 levels below the request."""

_KEY_VALUE: Final = "opentelemetry.proto.common.v1.KeyValue"
_UNKNOWN: Final = 255
_OTHER: Final = 0
_STRING: Final = 1
_MESSAGE: Final = 2

_WIRE_TYPES: Final = {
    FieldDescriptor.TYPE_DOUBLE: 1,
    FieldDescriptor.TYPE_FLOAT: 5,
    FieldDescriptor.TYPE_INT64: 0,
    FieldDescriptor.TYPE_UINT64: 0,
    FieldDescriptor.TYPE_INT32: 0,
    FieldDescriptor.TYPE_FIXED64: 1,
    FieldDescriptor.TYPE_FIXED32: 5,
    FieldDescriptor.TYPE_BOOL: 0,
    FieldDescriptor.TYPE_STRING: 2,
    FieldDescriptor.TYPE_MESSAGE: 2,
    FieldDescriptor.TYPE_BYTES: 2,
    FieldDescriptor.TYPE_UINT32: 0,
    FieldDescriptor.TYPE_ENUM: 0,
    FieldDescriptor.TYPE_SFIXED32: 5,
    FieldDescriptor.TYPE_SFIXED64: 1,
    FieldDescriptor.TYPE_SINT32: 0,
    FieldDescriptor.TYPE_SINT64: 0,
}


class MessageSchema:
    """What one message type's fields are, indexed by field number: the wire type each is
    written with (_UNKNOWN for numbers not in the schema), what it holds, its message type."""

    __slots__ = ("children", "is_key_value", "kinds", "name", "wire_types")

    def __init__(self, name: str, size: int) -> None:
        self.name = name
        self.is_key_value = name == _KEY_VALUE
        self.wire_types = bytes([_UNKNOWN] * size)
        self.kinds = bytes(size)
        self.children: list[MessageSchema | None] = [None] * size


def _schema(descriptor: Descriptor, built: dict[str, MessageSchema]) -> MessageSchema:
    """The schema of `descriptor`'s message type (types that recur share one schema)."""
    found = built.get(descriptor.full_name)
    if found is not None:
        return found
    size = max((field.number for field in descriptor.fields), default=0) + 1
    schema = built[descriptor.full_name] = MessageSchema(descriptor.full_name, size)
    wire_types = bytearray(schema.wire_types)
    kinds = bytearray(schema.kinds)
    for field in descriptor.fields:
        if field.type == FieldDescriptor.TYPE_GROUP or (
            field.is_repeated and _WIRE_TYPES[field.type] != 2
        ):
            # Groups and packable repeated numbers take rules this walk does not have; OTLP
            # has none. Should a newer OTLP add one, ingest validates with upb instead.
            raise NotImplementedError(f"{descriptor.full_name}.{field.name}")
        wire_types[field.number] = _WIRE_TYPES[field.type]
        if field.message_type is not None:
            kinds[field.number] = _MESSAGE
            schema.children[field.number] = _schema(field.message_type, built)
        elif field.type == FieldDescriptor.TYPE_STRING:
            kinds[field.number] = _STRING
    schema.wire_types = bytes(wire_types)  # bytes: indexing them compiles to a load
    schema.kinds = bytes(kinds)
    return schema


def _request_schema() -> MessageSchema | None:
    try:
        return _schema(ExportTraceServiceRequest.DESCRIPTOR, {})
    except NotImplementedError:
        return None


REQUEST: Final = _request_schema()
"""The request's schema; None when it has fields this walk cannot check (see `_schema`)."""


def check_request(buf: bytes) -> None:
    """Raise MalformedPayload unless upb would parse `buf` as an ExportTraceServiceRequest."""
    if REQUEST is None:
        raise NotImplementedError("the OTLP schema has fields the compiled check cannot check")
    check_message(buf, 0, len(buf), REQUEST, 0)


def check_message(buf: bytes, start: i64, end: i64, schema: MessageSchema, depth: i64) -> None:
    """Check the message of type `schema` in buf[start:end], `depth` levels below the request."""
    wire_types = schema.wire_types
    known = len(wire_types)
    pos: i64 = start
    while pos < end:
        tag: i64 = buf[pos]
        pos += 1
        if tag >= 0x80:
            tag, pos = _read_tag(buf, pos, end, tag)
        number: i64 = tag >> 3
        wire_type: i64 = tag & 7
        if number == 0:
            raise MalformedPayload(_CORRUPT + " (field number 0)")
        if wire_type == 2:
            length: i64 = buf[pos] if pos < end else 0x80
            if length < 0x80 and length < end - pos:  # the common case: one byte, in bounds
                pos += 1
            else:
                length, pos = _read_length(buf, pos, end)
            if number < known and wire_types[number] == 2:
                kind = schema.kinds[number]
                if kind == _MESSAGE:
                    if depth + 1 > MAX_DEPTH:
                        raise MalformedPayload(_TOO_DEEP)
                    child = schema.children[number]
                    assert child is not None
                    if not (
                        child.is_key_value
                        and depth + 2 <= MAX_DEPTH
                        and _plain_attribute(buf, pos, pos + length)
                    ):
                        check_message(buf, pos, pos + length, child, depth + 1)
                elif kind == _STRING and not _is_ascii(buf, pos, pos + length):
                    _check_utf8(buf, pos, pos + length)
            pos += length
        else:
            pos = _skip_unchecked(buf, pos, end, tag, depth + 1)
        if pos > end:
            raise MalformedPayload(_CORRUPT + " (a field runs past the end of its message)")


def _plain_attribute(buf: bytes, start: i64, end: i64) -> bool:
    """Whether the KeyValue in buf[start:end] is an attribute as SDKs write them, and valid: an
    ASCII key (field 1) then a value (field 2) holding one ASCII string_value (1), int_value (3)
    or bool_value (2), every length one byte. Most attributes are; they are checked here without
    the two levels of `check_message` (whose verdict on them is the same), the others there."""
    if end - start < 4 or buf[start] != 0x0A:
        return False
    key_end: i64 = start + 2 + buf[start + 1]
    if buf[start + 1] >= 0x80 or key_end + 4 > end or buf[key_end] != 0x12:
        return False
    value_end: i64 = key_end + 2 + buf[key_end + 1]
    if buf[key_end + 1] >= 0x80 or value_end != end:
        return False
    inner = buf[key_end + 2]
    inner_start: i64 = key_end + 3
    if inner == 0x0A:  # string_value
        text_end: i64 = inner_start + 1 + buf[inner_start]
        if buf[inner_start] >= 0x80 or text_end != end:
            return False
        return _is_ascii(buf, start + 2, key_end) and _is_ascii(buf, inner_start + 1, end)
    # int_value or bool_value, a varint (two comparisons: compiled, `in` a set would box `inner`)
    if inner == 0x18 or inner == 0x10:  # noqa: PLR1714
        after: i64 = inner_start
        while after < end and after - inner_start < 10:
            if buf[after] < 0x80:
                return after + 1 == end and _is_ascii(buf, start + 2, key_end)
            after += 1
    return False


def _skip_unchecked(buf: bytes, pos: i64, end: i64, tag: i64, group_depth: i64) -> i64:
    """Past the value of a field that is not length-delimited (its `tag` read, `pos` after it):
    a varint, a fixed-size value or a group (which would be `group_depth` levels down)."""
    number: i64 = tag >> 3
    wire_type: i64 = tag & 7
    if wire_type == 0:
        return _skip_varint(buf, pos, end)
    if wire_type == 1:
        return pos + 8
    if wire_type == 5:
        return pos + 4
    if wire_type == 3:
        return _skip_group(buf, pos, end, number, group_depth)
    # An end of group outside one, or wire type 6 or 7.
    raise MalformedPayload(_CORRUPT + f" (wire type {wire_type} of field {number})")


_CORRUPT: Final = (
    "request body is not a valid OTLP ExportTraceServiceRequest: wire format was corrupt"
)
_TOO_DEEP: Final = (
    f"request body is not a valid OTLP ExportTraceServiceRequest: nested deeper than {MAX_DEPTH} "
    "levels"
)


def _read_tag(buf: bytes, pos: i64, end: i64, first: i64) -> tuple[i64, i64]:
    """A tag of more than one byte (`first` read, `pos` after it): at most 5 bytes, < 2^32."""
    tag: i64 = first & 0x7F
    shift: i64 = 7
    while True:
        if pos >= end:
            raise MalformedPayload(_CORRUPT + " (truncated tag)")
        byte: i64 = buf[pos]
        pos += 1
        tag |= (byte & 0x7F) << shift
        if byte < 0x80:
            if tag >= 1 << 32:
                raise MalformedPayload(_CORRUPT + " (tag above 2^32)")
            return tag, pos
        shift += 7
        if shift >= 35:
            raise MalformedPayload(_CORRUPT + " (tag longer than 5 bytes)")


def _read_length(buf: bytes, pos: i64, end: i64) -> tuple[i64, i64]:
    """A length at `pos` (a varint of at most 5 bytes, as upb reads it): (length, position after
    it); the length must fit before `end`."""
    length: i64 = 0
    shift: i64 = 0
    while True:
        if pos >= end:
            raise MalformedPayload(_CORRUPT + " (truncated length)")
        byte: i64 = buf[pos]
        pos += 1
        length |= (byte & 0x7F) << shift
        if byte < 0x80:
            break
        shift += 7
        if shift >= 35:
            raise MalformedPayload(_CORRUPT + " (a length longer than 5 bytes)")
    if length > end - pos:
        raise MalformedPayload(_CORRUPT + " (a field runs past the end of its message)")
    return length, pos


def _skip_varint(buf: bytes, pos: i64, end: i64) -> i64:
    count: i64 = 0
    while True:
        if pos >= end:
            raise MalformedPayload(_CORRUPT + " (truncated varint)")
        byte: i64 = buf[pos]
        pos += 1
        if byte < 0x80:
            return pos
        count += 1
        if count >= 10:
            raise MalformedPayload(_CORRUPT + " (varint longer than 10 bytes)")


def _skip_group(buf: bytes, pos: i64, end: i64, number: i64, depth: i64) -> i64:
    """Past the end of an unknown group of field `number` (its start tag read)."""
    if depth > MAX_DEPTH:
        raise MalformedPayload(_TOO_DEEP)
    while pos < end:
        tag: i64 = buf[pos]
        pos += 1
        if tag >= 0x80:
            tag, pos = _read_tag(buf, pos, end, tag)
        inner: i64 = tag >> 3
        wire_type: i64 = tag & 7
        # Field number 0 is refused in a message, but upb lets it pass inside a skipped group.
        if wire_type == 4:
            if inner != number:
                raise MalformedPayload(_CORRUPT + " (a group ends with another field number)")
            return pos
        if wire_type == 2:
            length, pos = _read_length(buf, pos, end)
            pos += length
        else:
            pos = _skip_unchecked(buf, pos, end, tag, depth + 1)
        if pos > end:
            raise MalformedPayload(_CORRUPT + " (a field runs past the end of its message)")
    raise MalformedPayload(_CORRUPT + " (a group does not end)")


_HIGH_BITS_BUT_LAST: Final = 0x0080808080808080
"""The top bit of each of the low 7 bytes of a 64-bit word; the 8th's is the sign. (The whole
mask would not fit mypyc's inline integers, and a boxed one costs a call per use.)"""


def _is_ascii(buf: bytes, start: i64, end: i64) -> bool:
    """Whether buf[start:end] has no byte above 0x7F, looked at 8 bytes at a time (compiled, a
    read is one load: most strings are ASCII, and this is most of the check's work)."""
    index: i64 = start
    while index + 8 <= end:
        word = read_i64_le(buf, index)
        if word < 0 or word & _HIGH_BITS_BUT_LAST:
            return False
        index += 8
    if index == end:
        return True
    if end >= 8:
        # The 1-7 bytes left are the top bytes of the 8 that end at `end` (read little-endian).
        word = read_i64_le(buf, end - 8)
        left_out: i64 = 64 - 8 * (end - index)  # bits below them
        return word >= 0 and (word & _HIGH_BITS_BUT_LAST & -(1 << left_out)) == 0
    while index < end:  # within the buffer's first 8 bytes: byte by byte
        if buf[index] >= 0x80:
            return False
        index += 1
    return True


def _check_utf8(buf: bytes, start: i64, end: i64) -> None:
    """A string field that is not ASCII must be UTF-8."""
    try:
        buf[start:end].decode()
    except UnicodeDecodeError:
        raise MalformedPayload(
            "request body is not a valid OTLP ExportTraceServiceRequest: a string field has bad "
            "UTF-8"
        ) from None
