"""Split an `ExportTraceServiceRequest` into per-span wire bytes keyed by trace ID.

The hot path of the whole pipeline. The request is validated once by the C protobuf parser (upb),
then scanned in Python without building a message object per span: for each span we slice its
bytes, read the trace ID and note whether it has a parent. Resources and scopes are interned, so a
span costs one bytes object plus two list slots until its trace is decided.
"""

from __future__ import annotations

from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from refinery_py.model import Origin, SpanBatch
from refinery_py.otlp.errors import MalformedPayload
from refinery_py.otlp.wire import LEN, iter_fields, read_varint, skip_field

_ZERO8 = bytes(8)
_ZERO16 = bytes(16)
_TRACE_ID_TAG = b"\x0a\x10"  # field 1 (trace_id), length 16
_SPAN_ID_TAG = b"\x12\x08"  # field 2 (span_id), length 8
_PARENT_ID_TAG = b"\x22\x08"  # field 4 (parent_span_id), length 8
_TRACE_STATE_TAG = 0x1A  # field 3 (trace_state)
_SPANS_TAG = 0x12  # ScopeSpans field 2 (spans), also ResourceSpans field 2 (scope_spans)


class OriginInterner:
    """Shares one `Origin` among all spans with byte-identical resource and scope.

    Bounded: past `limit` distinct origins the table starts over. Spans already buffered keep
    their Origin objects, so forgetting only costs some sharing, never correctness.
    """

    def __init__(self, limit: int = 4096) -> None:
        self._limit = limit
        self._table: dict[tuple[bytes, bytes], Origin] = {}

    def get(self, resource_fields: bytes, scope_fields: bytes) -> Origin:
        key = (resource_fields, scope_fields)
        origin = self._table.get(key)
        if origin is None:
            if len(self._table) >= self._limit:
                self._table.clear()
            origin = self._table[key] = Origin(resource_fields, scope_fields)
        return origin


def validate_request(body: bytes) -> None:
    """Raise MalformedPayload unless `body` parses as an ExportTraceServiceRequest.

    upb checks framing, wire types and UTF-8 of every string field in C, so anything that passes
    can be re-framed and forwarded without a backend rejecting it later.
    """
    try:
        ExportTraceServiceRequest.FromString(body)
    except DecodeError as exc:
        raise MalformedPayload(
            f"request body is not a valid OTLP ExportTraceServiceRequest: {exc}"
        ) from None


def split_request(body: bytes, origins: OriginInterner, *, validate: bool = True) -> SpanBatch:
    """Group the spans of a serialized ExportTraceServiceRequest by trace ID.

    Spans whose trace ID is not 16 bytes or is all zero, or whose span ID is not 8 bytes or is
    all zero, are left out and counted in `rejected` (the caller reports them as OTLP partial
    success). Raises MalformedPayload when the body is not valid protobuf.
    """
    if validate:
        validate_request(body)
    batch = SpanBatch()
    for field, wire_type, _, start, end in iter_fields(body, 0, len(body)):
        if field == 1 and wire_type == LEN:
            _split_resource_spans(body, start, end, origins, batch)
    if batch.rejected:
        batch.reject_message = (
            f"{batch.rejected} span(s) rejected: trace_id must be 16 bytes and span_id 8 bytes, "
            "neither all zero"
        )
    return batch


def _split_resource_spans(
    buf: bytes, start: int, end: int, origins: OriginInterner, batch: SpanBatch
) -> None:
    header: list[bytes] = []
    scopes: list[tuple[int, int]] = []
    for field, wire_type, field_start, value_start, value_end in iter_fields(buf, start, end):
        if field == 2 and wire_type == LEN:
            scopes.append((value_start, value_end))
        else:
            header.append(buf[field_start:value_end])
    resource_fields = b"".join(header)
    for scope_start, scope_end in scopes:
        _split_scope_spans(
            buf,
            scope_start,
            scope_end,
            resource_fields=resource_fields,
            origins=origins,
            batch=batch,
        )


def _split_scope_spans(
    buf: bytes,
    start: int,
    end: int,
    *,
    resource_fields: bytes,
    origins: OriginInterner,
    batch: SpanBatch,
) -> None:
    header: list[bytes] = []
    trace_ids = batch.trace_ids
    spans = batch.spans
    first = len(spans)
    roots = batch.root_positions
    add_trace_id = trace_ids.append
    add_span = spans.append
    startswith = buf.startswith
    pos = start
    while pos < end:
        if buf[pos] != _SPANS_TAG:
            key, value_pos = read_varint(buf, pos)
            field_end = skip_field(buf, value_pos, key & 7, end)
            header.append(buf[pos:field_end])
            pos = field_end
            continue
        # Inline the 1- and 2-byte length varints: every span under 16 KiB.
        length = buf[pos + 1]
        if length < 0x80:
            span_start = pos + 2
        else:
            high = buf[pos + 2]
            if high < 0x80:
                length = (length & 0x7F) | (high << 7)
                span_start = pos + 3
            else:
                length, span_start = read_varint(buf, pos + 1)
        span_end = span_start + length
        if span_end > end:
            raise MalformedPayload("span runs past the end of its ScopeSpans")
        pos = span_end
        # Serializers write fields in number order, so the IDs lead the span: trace_id, span_id,
        # optional trace_state, then parent_span_id. Anything else takes the general path.
        if startswith(_TRACE_ID_TAG, span_start) and startswith(_SPAN_ID_TAG, span_start + 18):
            if startswith(_ZERO16, span_start + 2) or startswith(_ZERO8, span_start + 20):
                batch.rejected += 1
                continue
            trace_id = buf[span_start + 2 : span_start + 18]
            cursor = span_start + 28
            if cursor < span_end and buf[cursor] == _TRACE_STATE_TAG:
                state_length, cursor = read_varint(buf, cursor + 1)
                cursor += state_length
            is_root = not startswith(_PARENT_ID_TAG, cursor, span_end) or startswith(
                _ZERO8, cursor + 2
            )
        else:
            ids = _read_ids(buf, span_start, span_end)
            if ids is None:
                batch.rejected += 1
                continue
            trace_id, is_root = ids
        if is_root:
            roots.add(len(spans))
        add_trace_id(trace_id)
        add_span(buf[span_start:span_end])
    added = len(spans) - first
    if added:
        batch.origins.extend([origins.get(resource_fields, b"".join(header))] * added)


def _read_ids(buf: bytes, start: int, end: int) -> tuple[bytes, bool] | None:
    """The general path: trace ID and root-ness in any field order; None for invalid IDs."""
    trace_id = span_id = b""
    parent = b""
    for field, wire_type, _, value_start, value_end in iter_fields(buf, start, end):
        if wire_type != LEN:
            continue
        if field == 1:
            trace_id = buf[value_start:value_end]
        elif field == 2:
            span_id = buf[value_start:value_end]
        elif field == 4:
            parent = buf[value_start:value_end]
    if len(trace_id) != 16 or trace_id == _ZERO16 or len(span_id) != 8 or span_id == _ZERO8:
        return None
    return trace_id, (not parent or parent == _ZERO8)
