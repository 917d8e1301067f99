"""Find a span attribute by searching the span's bytes for its key: the uncompiled way to read.

A span attribute is found by searching the span's bytes for the encoded key (a C-speed substring
search) and checking that the hit really is the key of a top-level attribute, whatever order the
writer put the fields in, so the common "this span doesn't have that field" answer costs well
under a microsecond even in interpreted Python. Intrinsic fields (name, status, duration, ...)
parse the span once with upb. `span_fields` reads a span in one walk instead, which is cheaper
when compiled (see `FieldPlan.walks`); `locate_span_attribute` also serves edits of kept spans.

The search takes the key as protobuf writers encode it (one-byte tag, minimal length); a key
written with a padded tag or length is found by the walk only.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from typing import Final, NamedTuple

from opentelemetry.proto.trace.v1.trace_pb2 import Span

from refinery_py.model import FieldValue
from refinery_py.otlp.span_fields import KIND_NAMES, STATUS_ERROR
from refinery_py.otlp.values import decode_any_value
from refinery_py.otlp.wire import (
    FIXED64,
    LEN,
    VARINT,
    encode_varint,
    iter_fields,
    read_varint,
    skip_field,
)

_ERROR_CODE = re.compile(b"\x18\x02")
"""Status.code (field 3) = STATUS_CODE_ERROR. Searched with `re`, whose literal scan is 2-3×
faster here than `bytes.__contains__`, which stalls on the many 0x18 bytes (int attributes)."""
_ATTRIBUTE_TAG: Final = 0x4A  # Span field 9 (attributes), length-delimited
_VALUE_TAG: Final = 0x12  # KeyValue field 2 (value)

_signatures: dict[str, bytes] = {}


def _signature(key: str) -> bytes:
    """The bytes a KeyValue with this key starts with: field 1 tag, length, UTF-8 key."""
    signature = _signatures.get(key)
    if signature is None:
        encoded = key.encode()
        signature = b"\x0a" + encode_varint(len(encoded)) + encoded
        if len(_signatures) < 65536:
            _signatures[key] = signature
    return signature


class Attribute(NamedTuple):
    """Where one top-level span attribute sits, and its value.

    `raw[field_start:field_end]` is the whole attribute field (tag, length, KeyValue), what an
    edit removes. The value is the encoded AnyValue `buf[value_start:value_end]`: `buf` is the
    span's bytes, except for a KeyValue holding several value fields, whose merge (protobuf
    concatenates them) is a new bytes object.
    """

    field_start: int
    field_end: int
    buf: bytes
    value_start: int
    value_end: int

    def value(self) -> FieldValue | None:
        """The decoded value (None for an empty one)."""
        return decode_any_value(self.buf, self.value_start, self.value_end)


class AttributeIndex:
    """Where a span's top-level attributes start and end, learned by walking its fields lazily.

    The walk is what makes a substring hit trustworthy: an attribute's encoded key can also occur
    inside a string value (a URL path is attacker-controlled), inside an event's or a link's
    attributes, or inside another attribute's value; only a hit that is the key field of a
    top-level KeyValue is real. Fields are skipped by their lengths, never decoded, and only as
    far as the furthest hit asked about: instrumentations put the attributes rules care about
    (route, customer) early, so most lookups walk a fraction of the span. The walk takes the
    span's fields in whatever order they were written.

    A KeyValue is confirmed from its first bytes when written key first and value second (what
    SDKs write), or value first and key second (what the Collector writes); any other layout
    (repeated fields: protobuf's last key, and the merge of every value) is read field by field.
    """

    __slots__ = ("_ends", "_starts", "_walked", "raw")

    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        self._ends: dict[int, int] = {}
        """KeyValue start offset → end offset, for the attributes walked past so far (in order)."""
        self._starts: list[int] = []
        """The keys of `_ends`, as a list for bisecting; rebuilt when the walk has gone further."""
        self._walked = 0

    def _walk_past(self, offset: int) -> None:
        raw = self.raw
        ends = self._ends
        pos = self._walked
        end = len(raw)
        while pos <= offset and pos < end:
            tag = raw[pos]
            if tag >= 0x80:  # field numbers ≥ 16 (flags, future fields): general path
                key, pos = read_varint(raw, pos)
                pos = skip_field(raw, pos, key & 7, end)
                continue
            wire_type = tag & 7
            if wire_type == LEN:
                length = raw[pos + 1]
                if length < 0x80:
                    start = pos + 2
                else:
                    length, start = read_varint(raw, pos + 1)
                pos = start + length
                if tag == _ATTRIBUTE_TAG:
                    ends[start] = pos
            elif wire_type == FIXED64:  # start and end times
                pos += 9
            elif wire_type == VARINT and raw[pos + 1] < 0x80:  # kind, dropped counts
                pos += 2
            else:
                pos = skip_field(raw, pos + 1, wire_type, end)
        self._walked = pos

    def value(self, key: str) -> FieldValue | None:
        """The value of the first top-level span attribute named `key` (None: absent or empty).

        The substring search answers "absent" (the common case) without walking at all.
        """
        raw = self.raw
        signature = _signature(key)
        hit = raw.find(signature)
        while hit >= 0:
            if hit >= self._walked:
                self._walk_past(hit)
            end = self._ends.get(hit)
            if end is not None:  # key first, then a short value ending the KeyValue: read it
                value_pos = hit + len(signature)
                if (
                    value_pos + 2 <= end
                    and raw[value_pos] == _VALUE_TAG
                    and raw[value_pos + 1] < 0x80
                    and value_pos + 2 + raw[value_pos + 1] == end
                ):
                    return decode_any_value(raw, value_pos + 2, end)
            found = self._attribute_at(hit, signature)
            if found is not None:
                return found.value()
            hit = raw.find(signature, hit + 1)
        return None

    def locate(self, key: str) -> Attribute | None:
        """The first top-level span attribute named `key`, with its bounds, or None."""
        raw = self.raw
        signature = _signature(key)
        hit = raw.find(signature)
        while hit >= 0:
            found = self._attribute_at(hit, signature)
            if found is not None:
                return found
            hit = raw.find(signature, hit + 1)
        return None

    def _attribute_at(self, hit: int, signature: bytes) -> Attribute | None:
        """The attribute whose key field is the `signature` found at `hit`, if it is one."""
        if hit >= self._walked:
            self._walk_past(hit)
        raw = self.raw
        start = hit
        end = self._ends.get(hit)
        if end is None:
            if len(self._starts) != len(self._ends):
                self._starts = list(self._ends)
            index = bisect_right(self._starts, hit) - 1
            if index < 0:
                return None
            start = self._starts[index]
            end = self._ends[start]
            if hit >= end:
                return None  # not inside a top-level attribute
        value_pos = hit + len(signature) if start == hit else start
        if value_pos < end and raw[value_pos] == _VALUE_TAG:
            value_length, value_start = read_varint(raw, value_pos + 1)
            value_end = value_start + value_length
            # Key then value, ending the KeyValue; or value then key, the key ending it.
            if (start == hit and value_end == end) or (
                value_end == hit and hit + len(signature) == end
            ):
                return Attribute(_field_start(raw, start), end, raw, value_start, value_end)
        return self._read_key_value(start, end, hit)

    def _read_key_value(self, start: int, end: int, hit: int) -> Attribute | None:
        """The general path: the KeyValue at raw[start:end], if its last key field is at `hit`."""
        raw = self.raw
        key_at = -1
        values: list[tuple[int, int]] = []
        for field, wire_type, field_start, value_start, value_end in iter_fields(raw, start, end):
            if wire_type != LEN:
                continue
            if field == 1:
                key_at = field_start
            elif field == 2:
                values.append((value_start, value_end))
        if key_at != hit:
            return None
        field_start = _field_start(raw, start)
        if len(values) == 1:
            return Attribute(field_start, end, raw, *values[0])
        merged = b"".join(raw[value_start:value_end] for value_start, value_end in values)
        return Attribute(field_start, end, merged, 0, len(merged))


def _field_start(raw: bytes, key_value_start: int) -> int:
    """Where the attribute field holding the KeyValue at `key_value_start` begins: back over its
    length varint (whose bytes but the last have the high bit set) to its one-byte tag."""
    pos = key_value_start - 1
    while raw[pos - 1] >= 0x80:
        pos -= 1
    return pos - 1


def locate_span_attribute(raw: bytes, key: str) -> Attribute | None:
    """`AttributeIndex(raw).locate(key)`, for one-off lookups."""
    return AttributeIndex(raw).locate(key)


class SearchedSpan:
    """One span read by searching: attributes through an AttributeIndex, intrinsic fields
    from upb's parse of the span, each made on first use."""

    __slots__ = ("_index", "_message", "raw")

    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        self._index: AttributeIndex | None = None
        self._message: Span | None = None

    def attribute(self, key: str) -> FieldValue | None:
        """The first top-level attribute `key`'s value (None: absent or empty)."""
        raw = self.raw
        if _signature(key) not in raw:
            return None
        if self._index is None:
            self._index = AttributeIndex(raw)
        return self._index.value(key)

    def may_have_attribute(self, key: str) -> bool:
        """False when the span surely lacks attribute `key` (its encoded key is nowhere)."""
        return _signature(key) in self.raw

    @property
    def message(self) -> Span:
        """The span parsed by upb, on first use."""
        if self._message is None:
            self._message = Span.FromString(self.raw)
        return self._message

    def intrinsic(self, field: str) -> FieldValue | None:
        """An intrinsic field (see `span_fields.INTRINSIC_FIELDS`)."""
        if field == "error":
            # Most spans are not errors; rule that out with a substring search before parsing.
            if _ERROR_CODE.search(self.raw) is None or self.message.status.code != STATUS_ERROR:
                return None
            return True
        span = self.message
        if field == "name":
            return span.name
        if field in ("span.kind", "type"):
            return KIND_NAMES.get(span.kind, "unspecified")
        if field == "duration_ms":
            return (span.end_time_unix_nano - span.start_time_unix_nano) / 1e6
        if field == "status_code":
            return int(span.status.code)
        if field == "status_message":
            return span.status.message or None
        if field == "trace.trace_id":
            return span.trace_id.hex()
        if field == "trace.span_id":
            return span.span_id.hex()
        if field == "trace.parent_id":
            parent = span.parent_span_id
            return parent.hex() if parent and any(parent) else None
        if field == "span.num_events":
            return len(span.events)
        if field == "span.num_links":
            return len(span.links)
        return None
