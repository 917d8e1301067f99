"""What a stored trace's row says about it, read once from the kept trace's OTLP payload.

The root span speaks for the trace: its service, name, route, start and duration, and the
`SampleRate` refinery_py put on it. A trace decided without its root (trace timeout, memory
pressure) is described by its earliest span instead, with the trace's whole extent as duration.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

MAX_INT64 = (1 << 63) - 1
"""SQLite integers are signed 64-bit; OTLP times are unsigned, so a bogus time is clamped."""

ROUTE_ATTRIBUTE = "http.route"
SERVICE_ATTRIBUTE = "service.name"
SAMPLE_RATE_ATTRIBUTE = "SampleRate"


@dataclass(frozen=True, slots=True)
class TraceFacts:
    """The columns of a trace's row that come from its spans.

    `route` is the root's `http.route` attribute, or its name when it has none (the grouping key
    of a summary's top routes). `error_name` / `error_message` describe the error span that ended
    first, usually where the failure began; both are "" for a trace without errors.
    `sample_rate` is the root's `SampleRate` attribute, None when absent.
    """

    service: str
    name: str
    route: str
    start_ns: int
    duration_ns: int
    error: bool
    error_name: str
    error_message: str
    span_count: int
    sample_rate: int | None


def facts_of(payload: bytes) -> TraceFacts:
    """Read a trace's facts from its serialized ExportTraceServiceRequest.

    Raises `google.protobuf.message.DecodeError` for bytes that are not a request, and
    ValueError for a request without spans.
    """
    request = ExportTraceServiceRequest.FromString(payload)
    root: Span | None = None
    root_service = ""
    earliest: Span | None = None
    earliest_service = ""
    first_error: Span | None = None
    min_start = MAX_INT64
    max_end = 0
    count = 0
    for resource_spans in request.resource_spans:
        service: str | None = None  # read once per resource, and only when a span needs it
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                count += 1
                start = span.start_time_unix_nano
                end = span.end_time_unix_nano
                max_end = max(max_end, end)
                is_new_root = root is None and not span.parent_span_id
                is_earliest = earliest is None or start < min_start
                if (is_new_root or is_earliest) and service is None:
                    service = _string_attribute(
                        resource_spans.resource.attributes, SERVICE_ATTRIBUTE
                    )
                if is_new_root:
                    root, root_service = span, service or ""
                if is_earliest:
                    earliest, earliest_service, min_start = span, service or "", start
                if span.status.code == Status.STATUS_CODE_ERROR and (
                    first_error is None or end < first_error.end_time_unix_nano
                ):
                    first_error = span
    if earliest is None:
        raise ValueError("the kept trace has no spans")
    if root is not None:
        head, service_name = root, root_service
        start_ns = root.start_time_unix_nano
        duration_ns = root.end_time_unix_nano - start_ns
    else:
        head, service_name = earliest, earliest_service
        start_ns = min_start
        duration_ns = max_end - min_start
    route = _string_attribute(head.attributes, ROUTE_ATTRIBUTE) or head.name
    rate = _int_attribute(root.attributes, SAMPLE_RATE_ATTRIBUTE) if root is not None else None
    return TraceFacts(
        service=service_name,
        name=head.name,
        route=route,
        start_ns=min(start_ns, MAX_INT64),
        duration_ns=max(0, min(duration_ns, MAX_INT64)),
        error=first_error is not None,
        error_name=first_error.name if first_error is not None else "",
        error_message=first_error.status.message if first_error is not None else "",
        span_count=count,
        sample_rate=rate,
    )


def _string_attribute(attributes: Iterable[KeyValue], key: str) -> str:
    for attribute in attributes:
        if attribute.key == key:
            value = attribute.value
            kind = value.WhichOneof("value")
            if kind == "string_value":
                return value.string_value
            if kind in ("int_value", "double_value", "bool_value"):
                return str(getattr(value, kind))
            return ""
    return ""


def _int_attribute(attributes: Iterable[KeyValue], key: str) -> int | None:
    for attribute in attributes:
        if attribute.key == key:
            value = attribute.value
            kind = value.WhichOneof("value")
            if kind == "int_value":
                return value.int_value if value.int_value > 0 else None
            if kind == "double_value" and value.double_value >= 1:
                return int(value.double_value)
            return None
    return None
