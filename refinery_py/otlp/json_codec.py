"""A fast OTLP JSON ⇄ protobuf codec, driven by the message descriptors.

`google.protobuf.json_format` builds and walks message objects through reflection; for OTLP that
costs hundreds of microseconds per span, which would cap JSON ingest and `rules test` replays at a
few thousand spans per second. This codec writes protobuf wire bytes straight from the parsed JSON
(and reads upb messages straight into dicts), using per-field tables derived once from the
descriptors, so it stays correct for every field the OTLP version in use defines.

OTLP JSON is proto3 JSON with two differences: trace and span IDs are hex, not base64, and enums
are integers (names are accepted too, as proto3 JSON allows). Field names may be camelCase or the
original snake_case, in any order: each message's fields are written in field-number order, as upb
writes them, whatever order the JSON keys came in (readers downstream have fast paths for it).
Keys that name no field of the OTLP version in use are ignored, as the OTLP spec requires of
receivers (a newer sender's new fields), just as the protobuf door skips unknown field numbers. A
document that is not valid OTLP JSON raises MalformedPayload saying where, and so does one that
the protobuf door would refuse: messages nested deeper than upb parses (`MAX_DEPTH`).
"""

from __future__ import annotations

import base64
import binascii
import math
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from refinery_py.otlp.errors import MalformedPayload
from refinery_py.otlp.wire import encode_varint

_HEX_ID_FIELDS = {
    ("opentelemetry.proto.trace.v1.Span", "trace_id"),
    ("opentelemetry.proto.trace.v1.Span", "span_id"),
    ("opentelemetry.proto.trace.v1.Span", "parent_span_id"),
    ("opentelemetry.proto.trace.v1.Span.Link", "trace_id"),
    ("opentelemetry.proto.trace.v1.Span.Link", "span_id"),
}
"""Bytes fields that OTLP JSON writes as hex rather than base64."""

_DOUBLE = struct.Struct("<d")
_FLOAT = struct.Struct("<f")
_FIXED64 = struct.Struct("<Q")
_FIXED32 = struct.Struct("<I")
_SFIXED64 = struct.Struct("<q")
_SFIXED32 = struct.Struct("<i")
_SPECIAL_FLOATS = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
_DECIMAL = re.compile(r"-?[0-9]+", re.ASCII)
_NUMBER = re.compile(r"-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?", re.ASCII)
"""JSON's number syntax (leading zeros tolerated): what a string may hold where a number goes.
Python's int() and float() also take other scripts' digits, `_` and surrounding spaces."""

MAX_DEPTH = 100
"""How many levels messages may nest below the request (the request is level 0): upb's decoding
limit (`kUpb_WireFormat_DefaultDepthLimit`, a budget each sub-message entered spends), so both
doors refuse the same requests. A span attribute's value sits at level 5 (ResourceSpans,
ScopeSpans, Span, KeyValue, AnyValue); each level of `arrayValue` adds two, of `kvlistValue`
three."""

T = FieldDescriptor
_VARINT_TYPES = {T.TYPE_INT64, T.TYPE_UINT64, T.TYPE_INT32, T.TYPE_UINT32, T.TYPE_BOOL, T.TYPE_ENUM}
_INT64_TYPES = {T.TYPE_INT64, T.TYPE_UINT64, T.TYPE_FIXED64, T.TYPE_SFIXED64, T.TYPE_SINT64}
_RANGES = {
    T.TYPE_INT32: (-(2**31), 2**31 - 1),
    T.TYPE_SINT32: (-(2**31), 2**31 - 1),
    T.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    T.TYPE_UINT32: (0, 2**32 - 1),
    T.TYPE_FIXED32: (0, 2**32 - 1),
    T.TYPE_INT64: (-(2**63), 2**63 - 1),
    T.TYPE_SINT64: (-(2**63), 2**63 - 1),
    T.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    T.TYPE_UINT64: (0, 2**64 - 1),
    T.TYPE_FIXED64: (0, 2**64 - 1),
    T.TYPE_ENUM: (-(2**31), 2**31 - 1),
}


@dataclass(slots=True)
class _Field:
    name: str
    json_name: str
    number: int
    tag_bytes: bytes
    type: int
    repeated: bool
    hex_id: bool
    message: _Schema | None
    enum_values: dict[str, int] | None
    oneof: str | None


@dataclass(slots=True)
class _Schema:
    full_name: str
    by_key: dict[str, _Field]
    by_name: dict[str, _Field]


_schemas: dict[str, _Schema] = {}


def _schema(descriptor: Descriptor) -> _Schema:
    schema = _schemas.get(descriptor.full_name)
    if schema is not None:
        return schema
    schema = _schemas[descriptor.full_name] = _Schema(descriptor.full_name, {}, {})
    for fd in descriptor.fields:
        wire_type = _wire_type(fd.type)
        message_type, enum_type = fd.message_type, fd.enum_type
        entry = _Field(
            name=fd.name,
            json_name=fd.json_name,
            number=fd.number,
            tag_bytes=encode_varint((fd.number << 3) | wire_type),
            type=fd.type,
            repeated=fd.is_repeated,
            hex_id=(descriptor.full_name, fd.name) in _HEX_ID_FIELDS,
            message=_schema(message_type) if message_type is not None else None,
            enum_values=(
                {value.name: value.number for value in enum_type.values}
                if enum_type is not None
                else None
            ),
            oneof=fd.containing_oneof.name if fd.containing_oneof is not None else None,
        )
        schema.by_key[fd.json_name] = entry
        schema.by_key[fd.name] = entry
        schema.by_name[fd.name] = entry
    return schema


def _wire_type(field_type: int) -> int:
    if field_type in (T.TYPE_DOUBLE, T.TYPE_FIXED64, T.TYPE_SFIXED64):
        return 1
    if field_type in (T.TYPE_FLOAT, T.TYPE_FIXED32, T.TYPE_SFIXED32):
        return 5
    if field_type in (T.TYPE_STRING, T.TYPE_BYTES, T.TYPE_MESSAGE):
        return 2
    return 0


_REQUEST = _schema(ExportTraceServiceRequest.DESCRIPTOR)


# ---- JSON → protobuf ------------------------------------------------------------------------


def encode_request(document: object) -> bytes:
    """Protobuf bytes of an OTLP JSON ExportTraceServiceRequest (already parsed from JSON).

    An ID that is not valid hex is encoded as empty bytes, so the span is refused on its own
    (OTLP partial success) rather than failing the whole request.
    """
    if not isinstance(document, dict):
        raise MalformedPayload("OTLP JSON body must be an object with a resourceSpans list")
    if document and not any(key in _REQUEST.by_key for key in document):
        # Unknown fields are ignored, but a body with nothing else is not a trace request at all
        # (logs or metrics sent to the traces path, say): answered 200, it would vanish unseen.
        found = ", ".join(sorted(document)[:3])
        raise MalformedPayload(f"not an OTLP JSON trace request: no resourceSpans, only {found}")
    return _encode_message(document, _REQUEST, "", 0)


def _encode_message(document: dict[str, Any], schema: _Schema, path: str, depth: int) -> bytes:
    """The fields of one message (`depth` levels below the request), in field-number order."""
    if depth > MAX_DEPTH:
        raise MalformedPayload(
            f"{path}: messages nest deeper than {MAX_DEPTH} levels below the request"
        )
    parts: list[bytes] = []
    numbers: list[int] = []
    last = 0
    in_order = True
    oneof_seen: dict[str, str] = {}
    for key, value in document.items():
        entry = schema.by_key.get(key)
        if entry is None or value is None:
            # OTLP/JSON receivers must ignore fields they do not know (the OTLP spec, since
            # 2022): that is how OTLP adds fields, and a sender on a newer OTLP sends them.
            continue
        where = f"{path}.{key}" if path else key
        if entry.oneof is not None:
            other = oneof_seen.setdefault(entry.oneof, key)
            if other != key:
                raise MalformedPayload(f"{where}: {other} is already set (only one may be)")
        if entry.repeated:
            if not isinstance(value, list):
                raise MalformedPayload(f"{where}: expected a list, found {_kind(value)}")
            if entry.message is _KEY_VALUE:
                encoded = _encode_attributes(entry, value, where, depth + 1)
            else:
                encoded = b"".join(
                    _encode_value(entry, item, f"{where}[{index}]", depth + 1, always=True)
                    for index, item in enumerate(value)
                )
        else:
            encoded = _encode_value(entry, value, where, depth + 1, always=entry.oneof is not None)
        number = entry.number
        if number <= last:
            in_order = False
        last = number
        parts.append(encoded)
        numbers.append(number)
    if in_order:
        return b"".join(parts)
    return _in_number_order(document, schema, path, numbers, parts)


def _in_number_order(
    document: dict[str, Any], schema: _Schema, path: str, numbers: list[int], parts: list[bytes]
) -> bytes:
    """`parts` (encoded fields, their numbers in `numbers`) sorted by field number; a field
    named twice (by its JSON and its proto name) is an error."""
    ordered = sorted(zip(numbers, parts, strict=True), key=_field_number)
    for (number, _), (following, _) in pairwise(ordered):
        if number == following:
            keys = [k for k in document if (e := schema.by_key.get(k)) and e.number == number]
            where = f"{path}.{keys[-1]}" if path else keys[-1]
            raise MalformedPayload(f"{where}: the same field as {keys[0]}, which is already set")
    return b"".join(part for _, part in ordered)


def _field_number(part: tuple[int, bytes]) -> int:
    return part[0]


_KEY_VALUE = _schemas["opentelemetry.proto.common.v1.KeyValue"]
_ANY_VALUE = _schemas["opentelemetry.proto.common.v1.AnyValue"]


def _encode_attributes(entry: _Field, items: list[Any], where: str, depth: int) -> bytes:
    """A repeated KeyValue (each at `depth`): the bulk of every span, so scalar values skip the
    generic path."""
    parts: list[bytes] = []
    tag = entry.tag_bytes
    for index, item in enumerate(items):
        encoded = _scalar_attribute(item) if depth < MAX_DEPTH else None
        if encoded is None:
            encoded = _encode_value(entry, item, f"{where}[{index}]", depth, always=True)[
                len(tag) :
            ]
        parts.append(tag)
        parts.append(encoded)
    return b"".join(parts)


_KEY_PREFIXES: dict[str, bytes] = {}
"""Encoded `key` field plus the value tag, per attribute key: keys repeat on every span."""


def _scalar_attribute(item: Any) -> bytes | None:
    """`{"key": k, "value": {"stringValue"|"intValue"|"boolValue"|"doubleValue": v}}` encoded
    (length-prefixed KeyValue), or None for anything else (the generic path handles it)."""
    if type(item) is not dict or len(item) != 2:
        return None
    key = item.get("key")
    value = item.get("value")
    if type(key) is not str or type(value) is not dict or len(value) != 1:
        return None
    kind, scalar = next(iter(value.items()))
    if kind == "stringValue" and type(scalar) is str:
        data = scalar.encode()
        any_value = b"\x0a" + encode_varint(len(data)) + data
    elif kind == "intValue" and (
        type(scalar) is int or (type(scalar) is str and scalar.isascii() and scalar.isdigit())
    ):
        number = int(scalar)
        if number >= 1 << 63:
            return None
        any_value = b"\x18" + encode_varint(number)
    elif kind == "boolValue" and type(scalar) is bool:
        any_value = b"\x10\x01" if scalar else b"\x10\x00"
    elif kind == "doubleValue" and type(scalar) in (int, float):
        any_value = b"\x21" + _DOUBLE.pack(float(scalar))
    else:
        return None
    prefix = _KEY_PREFIXES.get(key)
    if prefix is None:
        key_data = key.encode()
        prefix = b"\x0a" + encode_varint(len(key_data)) + key_data + b"\x12"
        if len(_KEY_PREFIXES) < 65536:
            _KEY_PREFIXES[key] = prefix
    body = prefix + encode_varint(len(any_value)) + any_value
    return encode_varint(len(body)) + body


def _encode_value(entry: _Field, value: Any, where: str, depth: int, *, always: bool) -> bytes:
    """One encoded field (a message one at `depth`); empty bytes for a proto3 default value
    outside a oneof or list."""
    field_type = entry.type
    if field_type == T.TYPE_MESSAGE:
        if not isinstance(value, dict):
            raise MalformedPayload(f"{where}: expected an object, found {_kind(value)}")
        assert entry.message is not None
        body = _encode_message(value, entry.message, where, depth)
        return entry.tag_bytes + encode_varint(len(body)) + body
    if field_type == T.TYPE_STRING:
        if not isinstance(value, str):
            raise MalformedPayload(f"{where}: expected a string, found {_kind(value)}")
        if not value and not always:
            return b""
        data = value.encode("utf-8", "surrogatepass")
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedPayload(f"{where}: not valid UTF-8") from None
        return entry.tag_bytes + encode_varint(len(data)) + data
    if field_type == T.TYPE_BYTES:
        data = _decode_bytes(entry, value, where)
        if not data and not always:
            return b""
        return entry.tag_bytes + encode_varint(len(data)) + data
    if field_type == T.TYPE_BOOL:
        if not isinstance(value, bool):
            raise MalformedPayload(f"{where}: expected true or false, found {_kind(value)}")
        if not value and not always:
            return b""
        return entry.tag_bytes + (b"\x01" if value else b"\x00")
    if field_type in (T.TYPE_DOUBLE, T.TYPE_FLOAT):
        number = _float(value, where)
        if number == 0 and not math.copysign(1, number) < 0 and not always:
            return b""
        packer = _DOUBLE if field_type == T.TYPE_DOUBLE else _FLOAT
        return entry.tag_bytes + packer.pack(number)
    number = _integer(entry, value, where)
    if number == 0 and not always:
        return b""
    if field_type in _VARINT_TYPES:
        return entry.tag_bytes + encode_varint(number)
    if field_type == T.TYPE_FIXED64:
        return entry.tag_bytes + _FIXED64.pack(number)
    if field_type == T.TYPE_FIXED32:
        return entry.tag_bytes + _FIXED32.pack(number)
    if field_type == T.TYPE_SFIXED64:
        return entry.tag_bytes + _SFIXED64.pack(number)
    if field_type == T.TYPE_SFIXED32:
        return entry.tag_bytes + _SFIXED32.pack(number)
    # sint32 / sint64: zigzag
    return entry.tag_bytes + encode_varint((number << 1) ^ (number >> 63))


def _decode_bytes(entry: _Field, value: Any, where: str) -> bytes:
    if not isinstance(value, str):
        raise MalformedPayload(f"{where}: expected a string, found {_kind(value)}")
    if entry.hex_id:
        try:
            return bytes.fromhex(value)
        except ValueError:
            return b""  # refused per span by the splitter, as an invalid ID
    try:
        padded = value + "=" * (-len(value) % 4)
        if "-" in value or "_" in value:
            return base64.urlsafe_b64decode(padded)
        return base64.b64decode(padded, validate=True)
    except (binascii.Error, ValueError):
        raise MalformedPayload(f"{where}: not valid base64") from None


def _shown(text: str) -> str:
    """A string for an error message: whole when short, its start and length when not (a
    request's value can be megabytes long, and the message goes to the sender and the log)."""
    if len(text) <= 40:
        return repr(text)
    return f"{text[:40]!r}... ({len(text):,} characters)"


def _float(value: Any, where: str) -> float:
    if isinstance(value, bool):
        raise MalformedPayload(f"{where}: expected a number, found a boolean")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        special = _SPECIAL_FLOATS.get(value)
        if special is not None:
            return special
        if _NUMBER.fullmatch(value):
            return float(value)
        raise MalformedPayload(f"{where}: expected a number, found {_shown(value)}")
    raise MalformedPayload(f"{where}: expected a number, found {_kind(value)}")


def _integer(entry: _Field, value: Any, where: str) -> int:
    if isinstance(value, bool):
        raise MalformedPayload(f"{where}: expected an integer, found a boolean")
    if entry.enum_values is not None and isinstance(value, str) and value in entry.enum_values:
        return entry.enum_values[value]
    number: int
    if isinstance(value, int):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    elif isinstance(value, str):
        if _DECIMAL.fullmatch(value):
            number = int(value)
        elif _NUMBER.fullmatch(value) and float(value).is_integer():
            number = int(float(value))
        else:
            raise MalformedPayload(f"{where}: expected an integer, found {_shown(value)}")
    else:
        raise MalformedPayload(f"{where}: expected an integer, found {_kind(value)}")
    low, high = _RANGES[entry.type]
    if not low <= number <= high:
        raise MalformedPayload(f"{where}: {number} is out of range")
    if number < 0 and entry.type in (T.TYPE_INT64, T.TYPE_INT32, T.TYPE_ENUM):
        number += 1 << 64  # negative varints are ten-byte two's complement
    return number


def _kind(value: object) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), "a number"
    )


# ---- protobuf → JSON ------------------------------------------------------------------------

_Converter = Callable[[Any], Any]


def message_to_json(message: Message) -> dict[str, Any]:
    """An OTLP protobuf message as an OTLP JSON object (hex IDs, integer enums, camelCase,
    64-bit integers as strings, defaults left out)."""
    schema = _schema(message.DESCRIPTOR)  # type: ignore[arg-type]  # upb's Descriptor type
    out: dict[str, Any] = {}
    for descriptor, value in message.ListFields():
        entry = schema.by_name[descriptor.name]
        if entry.message is _KEY_VALUE and entry.repeated:
            out[entry.json_name] = [_attribute_to_json(item) for item in value]
            continue
        convert = _converter(entry)
        out[entry.json_name] = [convert(v) for v in value] if entry.repeated else convert(value)
    return out


def _attribute_to_json(item: Any) -> dict[str, Any]:
    value = item.value
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return {"key": item.key, "value": {"stringValue": value.string_value}}
    if kind == "int_value":
        return {"key": item.key, "value": {"intValue": str(value.int_value)}}
    if kind == "bool_value":
        return {"key": item.key, "value": {"boolValue": value.bool_value}}
    return message_to_json(item)


def _converter(entry: _Field) -> _Converter:
    field_type = entry.type
    if field_type == T.TYPE_MESSAGE:
        return message_to_json
    if field_type == T.TYPE_BYTES:
        if entry.hex_id:
            return bytes.hex
        return lambda data: base64.b64encode(data).decode()
    if field_type in _INT64_TYPES:
        return str
    if field_type in (T.TYPE_DOUBLE, T.TYPE_FLOAT):
        return _json_float
    return _identity


def _identity(value: Any) -> Any:
    return value


def _json_float(value: float) -> float | str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return value
