"""A resource attribute added on the wire: a request's resources that lack it get it.

Used to tag spans with the customer an ingest token names. Only the resource's bytes change (one
`KeyValue` appended to its attributes, its length prefix rewritten); spans are never re-encoded,
and resources that already carry the attribute are left exactly as sent.
"""

from __future__ import annotations

from refinery_py.model import Origin, SpanBatch
from refinery_py.otlp.ingest import OriginInterner
from refinery_py.otlp.wire import LEN, encode_varint, iter_fields, len_field

_RESOURCE = b"\x0a"  # ResourceSpans field 1 (resource)
_ATTRIBUTE = b"\x0a"  # Resource field 1 (attributes), and KeyValue field 1 (key)
_VALUE = b"\x12"  # KeyValue field 2 (value)
_STRING_VALUE = b"\x0a"  # AnyValue field 1 (string_value)


def string_attribute(key: str, value: str) -> bytes:
    """An encoded `KeyValue` with a string value, as a `Resource.attributes` field."""
    key_value = len_field(_ATTRIBUTE, key.encode()) + len_field(
        _VALUE, len_field(_STRING_VALUE, value.encode())
    )
    return len_field(_ATTRIBUTE, key_value)


def has_attribute(resource_fields: bytes, key: str) -> bool:
    """Whether any `resource` in these ResourceSpans fields has an attribute named `key`."""
    wanted = key.encode()
    for field, wire_type, _, start, end in iter_fields(resource_fields, 0, len(resource_fields)):
        if field != 1 or wire_type != LEN:
            continue
        for attr, attr_type, _, attr_start, attr_end in iter_fields(resource_fields, start, end):
            if attr != 1 or attr_type != LEN:
                continue
            for kv_field, kv_type, _, kv_start, kv_end in iter_fields(
                resource_fields, attr_start, attr_end
            ):
                if kv_field == 1 and kv_type == LEN:
                    if resource_fields[kv_start:kv_end] == wanted:
                        return True
                    break
    return False


def with_attribute(resource_fields: bytes, attribute: bytes) -> bytes:
    """`resource_fields` (a ResourceSpans without its scope_spans) with `attribute` (from
    `string_attribute`) appended to its resource's attributes; a resource is added if none is
    there. Several `resource` fields merge when parsed, so the last one takes the attribute."""
    last: tuple[int, int, int] | None = None
    for field, wire_type, field_start, start, end in iter_fields(
        resource_fields, 0, len(resource_fields)
    ):
        if field == 1 and wire_type == LEN:
            last = (field_start, start, end)
    if last is None:
        return resource_fields + len_field(_RESOURCE, attribute)
    field_start, start, end = last
    payload = resource_fields[start:end] + attribute
    return (
        resource_fields[:field_start]
        + _RESOURCE
        + encode_varint(len(payload))
        + payload
        + resource_fields[end:]
    )


def tag_resources(batch: SpanBatch, key: str, value: str, origins: OriginInterner) -> int:
    """Give the spans of `batch` whose resource lacks attribute `key` the attribute `key` =
    `value`, by pointing them at a tagged copy of their Origin. Returns how many distinct
    origins (resource and scope) were tagged."""
    attribute = string_attribute(key, value)
    tagged: dict[int, Origin] = {}
    changed = 0
    spans_origins = batch.origins
    for index, origin in enumerate(spans_origins):
        replacement = tagged.get(id(origin))
        if replacement is None:
            replacement = origin
            if not has_attribute(origin.resource_fields, key):
                resource = with_attribute(origin.resource_fields, attribute)
                replacement = origins.get(resource, origin.scope_fields)
                changed += 1
            tagged[id(origin)] = replacement
        if replacement is not origin:
            spans_origins[index] = replacement
    return changed
