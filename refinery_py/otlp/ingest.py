"""Split an `ExportTraceServiceRequest` into per-span wire bytes keyed by trace ID.

The hot path of the whole pipeline. The request is validated once by the C protobuf parser (upb),
then scanned in Python without building a message object per span: for each span we slice its
bytes, and take its trace ID and whether it has a parent from upb's parse (protobuf lets a writer
put fields in any order; upb applies protobuf's rules whatever the order). Resources and scopes are
interned, so a span costs one bytes object plus two list slots until its trace is decided.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from refinery_py.model import Origin, SpanBatch
from refinery_py.otlp.errors import MalformedPayload
from refinery_py.otlp.lite import IdsRequest
from refinery_py.otlp.wire import LEN, iter_fields, read_varint, skip_field

_ZERO8: Final = bytes(8)
_ZERO16: Final = bytes(16)
_SPANS_TAG: Final = 0x12  # ScopeSpans field 2 (spans), also ResourceSpans field 2 (scope_spans)


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


def validate_request(body: bytes) -> ExportTraceServiceRequest:
    """`body` parsed by upb; MalformedPayload unless it is an ExportTraceServiceRequest.

    upb checks framing, wire types, nesting depth and UTF-8 of every string field in C, so
    anything that passes can be re-framed and forwarded without a backend rejecting it later.
    """
    try:
        return ExportTraceServiceRequest.FromString(body)
    except DecodeError as exc:
        raise MalformedPayload(
            f"request body is not a valid OTLP ExportTraceServiceRequest: {exc}"
        ) from None


def split_request(body: bytes, origins: OriginInterner, *, validate: bool = True) -> SpanBatch:
    """Group the spans of a serialized ExportTraceServiceRequest by trace ID.

    Spans whose trace ID is not 16 bytes or is all zero, or whose span ID is not 8 bytes or is
    all zero, are left out and counted in `rejected` (the caller reports them as OTLP partial
    success). Raises MalformedPayload when the body is not valid protobuf. `validate=False`
    trusts the body (it was validated before), and upb then reads only the span IDs.
    """
    try:
        request = validate_request(body) if validate else IdsRequest.FromString(body)
    except DecodeError as exc:
        raise MalformedPayload(f"request body is not valid protobuf: {exc}") from None
    batch = SpanBatch()
    resources = request.resource_spans
    index = 0
    for field, wire_type, _, start, end in iter_fields(body, 0, len(body)):
        if field == 1 and wire_type == LEN:
            if index == len(resources):
                raise MalformedPayload(_FRAMING)
            _split_resource_spans(body, start, end, resources[index], origins=origins, batch=batch)
            index += 1
    if index != len(resources):
        raise MalformedPayload(_FRAMING)
    if batch.rejected:
        batch.reject_message = (
            f"{batch.rejected} span(s) rejected: trace_id must be 16 bytes and span_id 8 bytes, "
            "neither all zero"
        )
    return batch


_FRAMING: Final = "request framing is not what protobuf reads (non-minimal tags?)"


def _split_resource_spans(
    buf: bytes, start: int, end: int, parsed: Any, *, origins: OriginInterner, batch: SpanBatch
) -> None:
    header: list[bytes] = []
    scopes: list[tuple[int, int]] = []
    for field, wire_type, field_start, value_start, value_end in iter_fields(buf, start, end):
        if field == 2 and wire_type == LEN:
            scopes.append((value_start, value_end))
        else:
            header.append(buf[field_start:value_end])
    parsed_scopes = parsed.scope_spans
    if len(parsed_scopes) != len(scopes):
        raise MalformedPayload(_FRAMING)
    resource_fields = b"".join(header)
    for (scope_start, scope_end), parsed_scope in zip(scopes, parsed_scopes, strict=True):
        _split_scope_spans(
            buf,
            scope_start,
            scope_end,
            parsed_scope.spans,
            resource_fields=resource_fields,
            origins=origins,
            batch=batch,
        )


def _split_scope_spans(
    buf: bytes,
    start: int,
    end: int,
    parsed_spans: Sequence[Any],
    *,
    resource_fields: bytes,
    origins: OriginInterner,
    batch: SpanBatch,
) -> None:
    """Slice each span's bytes; take its IDs from upb's reading of the same span.

    The k-th span field of a ScopeSpans is the k-th element upb parsed there, so the two are
    walked together. Reading the IDs from upb rather than from fixed offsets is what makes the
    answer right for any field order (the Collector writes a span's trace_id last) and for
    protobuf's merge rules (a repeated trace_id: the last one wins), and it costs no more than
    checking the offsets in Python did.
    """
    header: list[bytes] = []
    raw_spans: list[bytes] = []
    add_raw = raw_spans.append
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
        pos = span_start + length
        if pos > end:
            raise MalformedPayload("span runs past the end of its ScopeSpans")
        add_raw(buf[span_start:pos])
    if len(raw_spans) != len(parsed_spans):
        raise MalformedPayload(_FRAMING)
    trace_ids = batch.trace_ids
    spans = batch.spans
    roots = batch.root_positions
    first = len(spans)
    rejected = 0
    for raw, parsed in zip(raw_spans, parsed_spans, strict=True):
        trace_id = parsed.trace_id
        span_id = parsed.span_id
        if len(trace_id) != 16 or trace_id == _ZERO16 or len(span_id) != 8 or span_id == _ZERO8:
            rejected += 1
            continue
        parent = parsed.parent_span_id
        if not parent or parent == _ZERO8:
            roots.add(len(spans))
        trace_ids.append(trace_id)
        spans.append(raw)
    batch.rejected += rejected
    added = len(spans) - first
    if added:
        batch.origins.extend([origins.get(resource_fields, b"".join(header))] * added)
