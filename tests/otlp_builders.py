"""Small builders for OTLP protobuf messages, shared by tests."""

from __future__ import annotations

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

Attr = str | int | float | bool


def kv(key: str, value: Attr) -> KeyValue:
    if isinstance(value, bool):
        return KeyValue(key=key, value=AnyValue(bool_value=value))
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    if isinstance(value, float):
        return KeyValue(key=key, value=AnyValue(double_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=value))


def trace_id(n: int) -> bytes:
    return n.to_bytes(16, "big")


def span_id(n: int) -> bytes:
    return n.to_bytes(8, "big")


def span(
    tid: int | bytes,
    sid: int | bytes,
    parent: int | bytes | None = None,
    *,
    name: str = "op",
    attrs: dict[str, Attr] | None = None,
    error: bool = False,
    start: int = 1_000_000_000,
    duration_ns: int = 5_000_000,
    kind: int = Span.SPAN_KIND_INTERNAL,
) -> Span:
    return Span(
        trace_id=trace_id(tid) if isinstance(tid, int) else tid,
        span_id=span_id(sid) if isinstance(sid, int) else sid,
        parent_span_id=(span_id(parent) if isinstance(parent, int) else parent) or b"",
        name=name,
        kind=kind,
        start_time_unix_nano=start,
        end_time_unix_nano=start + duration_ns,
        attributes=[kv(k, v) for k, v in (attrs or {}).items()],
        status=Status(code=Status.STATUS_CODE_ERROR, message="failed") if error else Status(),
    )


def request(
    *spans: Span,
    service: str = "svc",
    resource_attrs: dict[str, Attr] | None = None,
    scope: str = "test.scope",
) -> ExportTraceServiceRequest:
    attrs = {"service.name": service, **(resource_attrs or {})}
    return ExportTraceServiceRequest(
        resource_spans=[
            ResourceSpans(
                resource=Resource(attributes=[kv(k, v) for k, v in attrs.items()]),
                scope_spans=[
                    ScopeSpans(scope=InstrumentationScope(name=scope, version="1.0"), spans=spans)
                ],
            )
        ]
    )
