"""OTLP `AnyValue` → the plain values rules compare (str, int, float, bool)."""

from __future__ import annotations

import base64
import struct

import orjson
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from refinery_py.model import FieldValue
from refinery_py.otlp.wire import read_varint

_DOUBLE = struct.Struct("<d")
_JSONValue = str | int | float | bool | list[object] | dict[str, object] | None


def decode_any_value(buf: bytes, start: int, end: int) -> FieldValue | None:
    """Decode an encoded AnyValue occupying buf[start:end]; None when it holds nothing.

    Scalars are read straight from the wire; arrays and maps become JSON text and bytes become
    base64, the way Refinery flattens them for rules. The fast path takes an AnyValue that is one
    scalar field; anything else (several fields, where protobuf's last one wins, or a nested
    value) is parsed by upb.
    """
    if start >= end:
        return None
    tag = buf[start]
    if tag == 0x0A:  # string_value
        length, pos = read_varint(buf, start + 1)
        if pos + length == end:
            return buf[pos:end].decode()
    elif tag == 0x18:  # int_value (int64, two's complement)
        value, pos = read_varint(buf, start + 1)
        if pos == end:
            return value - (1 << 64) if value >= 1 << 63 else value
    elif tag == 0x10:  # bool_value
        value, pos = read_varint(buf, start + 1)
        if pos == end:
            return value != 0
    elif tag == 0x21 and start + 9 == end:  # double_value
        return float(_DOUBLE.unpack_from(buf, start + 1)[0])
    return any_value_to_field(AnyValue.FromString(buf[start:end]))


def any_value_to_field(value: AnyValue) -> FieldValue | None:
    """The rules' view of a parsed AnyValue (see decode_any_value)."""
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind in ("array_value", "kvlist_value"):
        return orjson.dumps(_to_json(value)).decode()
    if kind == "bytes_value":
        return base64.b64encode(value.bytes_value).decode()
    result: FieldValue = getattr(value, kind)
    return result


def attributes_to_fields(attributes: list[KeyValue]) -> dict[str, FieldValue]:
    """Decode a repeated KeyValue into a dict; the first occurrence of a key wins."""
    fields: dict[str, FieldValue] = {}
    for attribute in attributes:
        if attribute.key not in fields:
            decoded = any_value_to_field(attribute.value)
            if decoded is not None:
                fields[attribute.key] = decoded
    return fields


def _to_json(value: AnyValue) -> _JSONValue:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_to_json(item) for item in value.array_value.values]
    if kind == "kvlist_value":
        return {item.key: _to_json(item.value) for item in value.kvlist_value.values}
    if kind == "bytes_value":
        return base64.b64encode(value.bytes_value).decode()
    if kind is None:
        return None
    result: _JSONValue = getattr(value, kind)
    return result
