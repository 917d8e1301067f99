"""Read named fields from buffered span bytes, on demand: the span view samplers see.

Nothing is decoded until a rule asks. A span attribute is found by searching the span's bytes for
the encoded key (a C-speed substring search) and checking that the hit really is a top-level
attribute, so the common "this span doesn't have that field" answer costs well under a
microsecond. Intrinsic fields (name, status, duration, ...) parse the span once with upb.
Resource and scope attributes are decoded once per distinct resource/scope and cached on the
shared `Origin`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from refinery_py.model import FieldValue, Origin
from refinery_py.otlp.values import attributes_to_fields, decode_any_value
from refinery_py.otlp.wire import FIXED64, LEN, VARINT, encode_varint, read_varint, skip_field

_KIND_NAMES = {
    Span.SPAN_KIND_UNSPECIFIED: "unspecified",
    Span.SPAN_KIND_INTERNAL: "internal",
    Span.SPAN_KIND_SERVER: "server",
    Span.SPAN_KIND_CLIENT: "client",
    Span.SPAN_KIND_PRODUCER: "producer",
    Span.SPAN_KIND_CONSUMER: "consumer",
}
_STATUS_ERROR = 2
_ERROR_CODE = re.compile(b"\x18\x02")
"""Status.code (field 3) = STATUS_CODE_ERROR. Searched with `re`, whose literal scan is 2-3×
faster here than `bytes.__contains__`, which stalls on the many 0x18 bytes (int attributes)."""
_ATTRIBUTE_TAG = 0x4A  # Span field 9 (attributes), length-delimited
_VALUE_TAG = 0x12  # KeyValue field 2 (value)

INTRINSIC_FIELDS = frozenset(
    {
        "trace.trace_id",
        "trace.span_id",
        "trace.parent_id",
        "name",
        "span.kind",
        "type",
        "duration_ms",
        "status_code",
        "status_message",
        "error",
        "span.num_events",
        "span.num_links",
    }
)
"""Fields computed from the span itself rather than read from an attribute."""

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


class AttributeIndex:
    """Where a span's top-level attributes start and end, learned by walking its fields lazily.

    The walk is what makes a substring hit trustworthy: an attribute's encoded key can also occur
    inside a string value (a URL path is attacker-controlled), inside an event's or a link's
    attributes, or inside another attribute's value; only a hit at the start of a top-level
    KeyValue is real. Fields are skipped by their lengths, never decoded, and only as far as the
    furthest hit asked about: instrumentations put the attributes rules care about (route,
    customer) early, so most lookups walk a fraction of the span.
    """

    __slots__ = ("_starts", "_walked", "raw")

    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        self._starts: dict[int, int] = {}
        """KeyValue start offset → end offset, for the attributes walked past so far."""
        self._walked = 0

    def key_value_end(self, offset: int) -> int | None:
        """The end of the top-level KeyValue starting at `offset`, or None if none starts there."""
        if offset >= self._walked:
            self._walk_past(offset)
        return self._starts.get(offset)

    def _walk_past(self, offset: int) -> None:
        raw = self.raw
        starts = self._starts
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
                    starts[start] = pos
            elif wire_type == FIXED64:  # start and end times
                pos += 9
            elif wire_type == VARINT and raw[pos + 1] < 0x80:  # kind, dropped counts
                pos += 2
            else:
                pos = skip_field(raw, pos + 1, wire_type, end)
        self._walked = pos

    def locate(self, key: str) -> tuple[int, int, int] | None:
        """The span attribute `key`: (field start, value start, value end), or None.

        `raw[field_start:value_end]` is the whole attribute field, `raw[value_start:value_end]`
        its encoded AnyValue. The substring search answers "absent" (the common case) without
        walking at all. Serializers write a KeyValue's key first; one written value-first is not
        found.
        """
        raw = self.raw
        signature = _signature(key)
        hit = raw.find(signature)
        while hit >= 0:
            key_value_end = self.key_value_end(hit)
            if key_value_end is not None:
                value_pos = hit + len(signature)
                value_start = value_end = value_pos
                if value_pos < key_value_end and raw[value_pos] == _VALUE_TAG:
                    value_length, value_start = read_varint(raw, value_pos + 1)
                    value_end = value_start + value_length
                field_start = hit - 1 - len(encode_varint(key_value_end - hit))
                return field_start, value_start, min(value_end, key_value_end)
            hit = raw.find(signature, hit + 1)
        return None


def locate_span_attribute(raw: bytes, key: str) -> tuple[int, int, int] | None:
    """`AttributeIndex(raw).locate(key)`, for one-off lookups."""
    return AttributeIndex(raw).locate(key)


class OriginFields:
    """Decoded resource and scope attributes of one Origin (scope wins over resource)."""

    __slots__ = ("fields",)

    def __init__(self, origin: Origin) -> None:
        resource = ResourceSpans.FromString(origin.resource_fields).resource
        scope_spans = ScopeSpans.FromString(origin.scope_fields)
        fields = attributes_to_fields(list(resource.attributes))
        scope = scope_spans.scope
        if scope.name:
            fields["library.name"] = scope.name
        if scope.version:
            fields["library.version"] = scope.version
        fields.update(attributes_to_fields(list(scope.attributes)))
        self.fields = fields


def origin_fields(origin: Origin) -> dict[str, FieldValue]:
    """Resource and scope attributes of `origin`, decoded once and cached on it."""
    parsed = origin.parsed
    if not isinstance(parsed, OriginFields):
        parsed = origin.parsed = OriginFields(origin)
    return parsed.fields


class WireSpan:
    """A SpanView over one span's wire bytes."""

    __slots__ = ("_index", "_message", "origin", "raw")

    def __init__(self, raw: bytes, origin: Origin) -> None:
        self.raw = raw
        self.origin = origin
        self._message: Span | None = None
        self._index: AttributeIndex | None = None

    def span_attribute(self, field: str) -> FieldValue | None:
        """The span's own attribute `field` (not the resource's or scope's), or None."""
        raw = self.raw
        if _signature(field) not in raw:
            return None
        if self._index is None:
            self._index = AttributeIndex(raw)
        found = self._index.locate(field)
        return None if found is None else decode_any_value(raw, found[1], found[2])

    @property
    def message(self) -> Span:
        """The span parsed by upb, on first use."""
        if self._message is None:
            self._message = Span.FromString(self.raw)
        return self._message

    def get(self, field: str) -> FieldValue | None:
        if field in INTRINSIC_FIELDS:
            return self._intrinsic(field)
        value = self.span_attribute(field)
        if value is not None:
            return value
        return origin_fields(self.origin).get(field)

    def _intrinsic(self, field: str) -> FieldValue | None:
        if field == "error":
            # Most spans are not errors; rule that out with a substring search before parsing.
            if _ERROR_CODE.search(self.raw) is None or self.message.status.code != _STATUS_ERROR:
                return None
            return True
        span = self.message
        if field == "name":
            return span.name
        if field in ("span.kind", "type"):
            return _KIND_NAMES.get(span.kind, "unspecified")
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


class WireTrace:
    """A TraceView over a buffered trace's span bytes."""

    __slots__ = ("_spans", "origins", "raw_spans", "raw_trace_id", "root_index")

    def __init__(
        self, trace_id: bytes, raw_spans: list[bytes], origins: list[Origin], root_index: int
    ) -> None:
        self.raw_trace_id = trace_id
        self.raw_spans = raw_spans
        self.origins = origins
        self.root_index = root_index
        self._spans: list[WireSpan] | None = None

    @property
    def trace_id(self) -> str:
        return self.raw_trace_id.hex()

    @property
    def spans(self) -> Sequence[WireSpan]:
        if self._spans is None:
            self._spans = list(map(WireSpan, self.raw_spans, self.origins))
        return self._spans

    @property
    def root(self) -> WireSpan | None:
        return self.spans[self.root_index] if self.root_index >= 0 else None
