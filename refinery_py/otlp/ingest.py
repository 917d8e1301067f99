"""Split an `ExportTraceServiceRequest` into per-span wire bytes keyed by trace ID.

The hot path of the whole pipeline. The request is validated once, then scanned without
building a message object per span: for each span we slice its bytes, and take its trace ID and
whether it has a parent. Protobuf lets a writer put fields in any order and repeat them (the last
wins); both readers apply its rules. Resources and scopes are interned, so a span costs one bytes
object plus two list slots until its trace is decided.

Two ways to validate and read the IDs, with the same answers: compiled (see
refinery_py/compiled.py), a walk of the bytes against the schema (`checked`) and of each span's
top-level fields, about a third of the cost of the other way; interpreted, upb's parse of the
request, the cheaper of the two there.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from google.protobuf.message import DecodeError
from mypy_extensions import i64
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from refinery_py.model import Origin, SpanBatch
from refinery_py.otlp.checked import REQUEST, check_request
from refinery_py.otlp.errors import MalformedPayload
from refinery_py.otlp.lite import IdsRequest
from refinery_py.otlp.wire import LEN, iter_fields, read_varint, skip_field

_ZERO8: Final = bytes(8)
_ZERO16: Final = bytes(16)
_SPANS_KEY: Final = 0x12  # ScopeSpans field 2 (spans), also ResourceSpans field 2 (scope_spans)

WALKS: Final = not __file__.endswith(".py") and REQUEST is not None
"""Whether requests are checked and read by walking their bytes: when compiled (see above)."""


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


def split_request(
    body: bytes, origins: OriginInterner, *, validate: bool = True, walk: bool = WALKS
) -> SpanBatch:
    """Group the spans of a serialized ExportTraceServiceRequest by trace ID.

    Spans whose trace ID is not 16 bytes or is all zero, or whose span ID is not 8 bytes or is
    all zero, are left out and counted in `rejected` (the caller reports them as OTLP partial
    success). Raises MalformedPayload when the body is not valid protobuf. `validate=False`
    trusts the body (it was validated before): only the span IDs are read. `walk` chooses how
    (see the module).
    """
    resources: Any = None
    if walk:
        if validate:
            check_request(body)
    else:
        try:
            request = validate_request(body) if validate else IdsRequest.FromString(body)
        except DecodeError as exc:
            raise MalformedPayload(f"request body is not valid protobuf: {exc}") from None
        resources = request.resource_spans
    batch = SpanBatch()
    index = 0
    for field, wire_type, _, start, end in iter_fields(body, 0, len(body)):
        if field == 1 and wire_type == LEN:
            parsed = None
            if resources is not None:
                if index == len(resources):
                    raise MalformedPayload(_FRAMING)
                parsed = resources[index]
            _split_resource_spans(body, start, end, parsed, origins=origins, batch=batch)
            index += 1
    if resources is not None and index != len(resources):
        raise MalformedPayload(_FRAMING)
    if batch.rejected:
        batch.reject_message = (
            f"{batch.rejected} span(s) rejected: trace_id must be 16 bytes and span_id 8 bytes, "
            "neither all zero"
        )
    return batch


_FRAMING: Final = "request framing is not what protobuf reads"


def _split_resource_spans(
    buf: bytes,
    start: int,
    end: int,
    parsed: Any,
    *,
    origins: OriginInterner,
    batch: SpanBatch,
) -> None:
    """One ResourceSpans; `parsed` is upb's reading of it, or None when spans are walked."""
    header: list[bytes] = []
    scopes: list[tuple[int, int]] = []
    for field, wire_type, field_start, value_start, value_end in iter_fields(buf, start, end):
        if field == 2 and wire_type == LEN:
            scopes.append((value_start, value_end))
        else:
            header.append(buf[field_start:value_end])
    parsed_scopes = parsed.scope_spans if parsed is not None else None
    if parsed_scopes is not None and len(parsed_scopes) != len(scopes):
        raise MalformedPayload(_FRAMING)
    resource_fields = b"".join(header)
    for index, (scope_start, scope_end) in enumerate(scopes):
        _split_scope_spans(
            buf,
            scope_start,
            scope_end,
            parsed_scopes[index].spans if parsed_scopes is not None else None,
            resource_fields=resource_fields,
            origins=origins,
            batch=batch,
        )


def _split_scope_spans(
    buf: bytes,
    start: int,
    end: int,
    parsed_spans: Sequence[Any] | None,
    *,
    resource_fields: bytes,
    origins: OriginInterner,
    batch: SpanBatch,
) -> None:
    """Slice each span's bytes; take its IDs from upb's reading of the same span (the k-th span
    field of a ScopeSpans is the k-th element upb parsed there), or from a walk of its fields
    when `parsed_spans` is None. Either reads them right for any field order (the Collector
    writes a span's trace_id last) and by protobuf's merge rules (a repeated trace_id: the last
    one wins)."""
    header: list[bytes] = []
    raw_spans: list[bytes] = []
    add_raw = raw_spans.append
    pos: i64 = start
    stop: i64 = end
    while pos < stop:
        key: i64 = buf[pos]
        length: i64 = buf[pos + 1] if pos + 1 < stop else 0
        if key == _SPANS_KEY and length < 0x80:  # a span under 128 bytes or, below, longer
            span_start = pos + 2
        elif key == _SPANS_KEY and pos + 2 < stop and buf[pos + 2] < 0x80:
            length = (length & 0x7F) | (buf[pos + 2] << 7)
            span_start = pos + 3
        else:
            long_key, value_pos = read_varint(buf, pos)
            if long_key == _SPANS_KEY:  # a padded tag or a long length: the general path
                long_length, span_start = read_varint(buf, value_pos)
                length = long_length
            else:
                field_end = skip_field(buf, value_pos, long_key & 7, end)
                header.append(buf[pos:field_end])
                pos = field_end
                continue
        pos = span_start + length
        if pos > stop:
            raise MalformedPayload("span runs past the end of its ScopeSpans")
        add_raw(buf[span_start:pos])
    if parsed_spans is not None and len(raw_spans) != len(parsed_spans):
        raise MalformedPayload(_FRAMING)
    trace_ids = batch.trace_ids
    spans = batch.spans
    roots = batch.root_positions
    first = len(spans)
    rejected = 0
    for index, raw in enumerate(raw_spans):
        if parsed_spans is not None:
            parsed = parsed_spans[index]
            trace_id: bytes = parsed.trace_id
            span_id: bytes = parsed.span_id
            parent: bytes = parsed.parent_span_id
        else:
            trace_id, span_id, parent = _ids(raw)
        if len(trace_id) != 16 or trace_id == _ZERO16 or len(span_id) != 8 or span_id == _ZERO8:
            rejected += 1
            continue
        if not parent or parent == _ZERO8:
            roots.add(len(spans))
        trace_ids.append(trace_id)
        spans.append(raw)
    batch.rejected += rejected
    added = len(spans) - first
    if added:
        batch.origins.extend([origins.get(resource_fields, b"".join(header))] * added)


def _ids(raw: bytes) -> tuple[bytes, bytes, bytes]:
    """A span's trace_id, span_id and parent_span_id (b"" when absent; the last of repeated
    ones), from a walk of its top-level fields."""
    trace_id = span_id = parent = b""
    pos: i64 = 0
    end: i64 = len(raw)
    while pos < end:
        key: i64 = raw[pos]
        if key >= 0x80:
            long_key, after = read_varint(raw, pos)
            key, pos = long_key, after
        else:
            pos += 1
        wire_type = key & 7
        if wire_type == LEN:
            length: i64 = raw[pos]
            if length < 0x80:
                pos += 1
            else:
                long_length, after = read_varint(raw, pos)
                length, pos = long_length, after
            if key == 0x0A:
                trace_id = raw[pos : pos + length]
            elif key == 0x12:
                span_id = raw[pos : pos + length]
            elif key == 0x22:
                parent = raw[pos : pos + length]
            pos += length
        elif wire_type == 1:  # fixed64: the times
            pos += 8
        elif wire_type == 0:
            pos = read_varint(raw, pos)[1]
        else:
            pos = skip_field(raw, pos, wire_type, end)
    return trace_id, span_id, parent
