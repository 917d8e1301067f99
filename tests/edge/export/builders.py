"""Kept traces for export tests, built from opentelemetry-proto messages, and read back."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from refinery_py.model import Decision, KeptTrace, SendReason

KEEP = Decision(keep=True, rate=10, reason="rules/trace/keep errors")


def _kv(key: str, value: str | int) -> KeyValue:
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=value))


def kept_trace(number: int, span_count: int, *, padding: int = 24) -> KeptTrace:
    """Trace `number` (from 0) with `span_count` attribute-rich spans, the first one the root.

    `padding` sizes one string attribute per span, to make payloads as large as a test needs.
    """
    trace_id = (number + 1).to_bytes(16, "big")
    customer = f"customer-{number}"
    spans = [
        Span(
            trace_id=trace_id,
            span_id=(index + 1).to_bytes(8, "big"),
            parent_span_id=b"" if index == 0 else (1).to_bytes(8, "big"),
            name=f"GET /orders/{index}",
            kind=Span.SPAN_KIND_SERVER if index == 0 else Span.SPAN_KIND_INTERNAL,
            start_time_unix_nano=1_700_000_000_000_000_000 + index,
            end_time_unix_nano=1_700_000_000_005_000_000 + index,
            attributes=[
                _kv("customer.id", customer),
                _kv("http.status_code", 200 + index),
                _kv("padding", "x" * padding),
                _kv("SampleRate", 10),
                _kv("meta.refinery.reason", KEEP.reason),
            ],
        )
        for index in range(span_count)
    ]
    request = ExportTraceServiceRequest(
        resource_spans=[
            ResourceSpans(
                resource=Resource(attributes=[_kv("service.name", "checkout")]),
                scope_spans=[
                    ScopeSpans(scope=InstrumentationScope(name="tests.export"), spans=spans)
                ],
            )
        ]
    )
    return KeptTrace(
        trace_id=trace_id,
        payload=request.SerializeToString(),
        span_count=span_count,
        decision=KEEP,
        send_reason=SendReason.GOT_ROOT,
        customer=customer,
    )


@dataclass(frozen=True)
class ArrivedSpan:
    """A span as a backend received it, with its context and the request that carried it."""

    span: Span
    resource: Resource
    scope: InstrumentationScope
    request_index: int


SpanKey = tuple[bytes, bytes]


def spans_of(requests: Iterable[ExportTraceServiceRequest]) -> list[ArrivedSpan]:
    """Every span in `requests`, in order, each tagged with the index of its request."""
    return [
        ArrivedSpan(span, resource_spans.resource, scope_spans.scope, index)
        for index, request in enumerate(requests)
        for resource_spans in request.resource_spans
        for scope_spans in resource_spans.scope_spans
        for span in scope_spans.spans
    ]


def expected_spans(traces: Iterable[KeptTrace]) -> dict[SpanKey, ArrivedSpan]:
    """What the backend should receive for `traces`, keyed by (trace ID, span ID)."""
    requests = [ExportTraceServiceRequest.FromString(trace.payload) for trace in traces]
    return {(s.span.trace_id, s.span.span_id): s for s in spans_of(requests)}
