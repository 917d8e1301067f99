"""Kept traces as the pipeline makes them: real OTLP spans, split and annotated by the codec."""

from __future__ import annotations

from dataclasses import dataclass, field

from refinery_py.model import Decision, KeptTrace, SendReason
from refinery_py.otlp.frame import encode_kept_trace
from refinery_py.otlp.ingest import OriginInterner, split_request
from tests.otlp_builders import Attr, request, span

BASE_NS = 1_790_000_000 * 10**9
"""A start time every test shares (2026-09-21); offsets are added to it."""


@dataclass
class TraceSpec:
    """One kept trace: a root span and `children` more, with what the queries look at."""

    number: int
    customer: str = "acme"
    service: str = "shop"
    route: str | None = "/api/orders"
    name: str = "GET /api/orders"
    start_ns: int = BASE_NS
    duration_ms: float = 25.0
    error: bool = False
    children: int = 2
    rate: int = 1
    reason: str = "rules/trace/sample the rest"
    send_reason: SendReason = SendReason.GOT_ROOT
    with_root: bool = True
    customer_attribute: bool = True
    extra: dict[str, Attr] = field(default_factory=dict)


def trace_id_of(number: int) -> bytes:
    return number.to_bytes(16, "big")


def kept_trace(spec: TraceSpec) -> KeptTrace:
    """Encode `spec` exactly as the pipeline would hand it to exporters."""
    duration_ns = int(spec.duration_ms * 1e6)
    attrs: dict[str, Attr] = dict(spec.extra)
    if spec.customer_attribute:
        attrs["customer.id"] = spec.customer
    if spec.route is not None:
        attrs["http.route"] = spec.route
    spans = []
    if spec.with_root:
        spans.append(
            span(
                spec.number,
                1,
                name=spec.name,
                attrs=attrs,
                start=spec.start_ns,
                duration_ns=duration_ns,
            )
        )
    spans.extend(
        span(
            spec.number,
            child + 2,
            1,
            name=f"db.query {child}",
            start=spec.start_ns + 1000 * (child + 1),
            duration_ns=duration_ns // 2,
            error=spec.error and child == spec.children - 1,
        )
        for child in range(spec.children)
    )
    body = request(*spans, service=spec.service).SerializeToString()
    batch = split_request(body, OriginInterner())
    root_index = 0 if spec.with_root else -1
    decision = Decision(True, spec.rate, spec.reason)
    payload = encode_kept_trace(
        batch.spans, batch.origins, root_index, decision, spec.send_reason.value
    )
    return KeptTrace(
        trace_id_of(spec.number),
        payload,
        len(batch.spans),
        decision,
        spec.send_reason,
        spec.customer,
    )


def late_spans(number: int, count: int, customer: str = "", rate: int = 1) -> KeptTrace:
    """Spans of trace `number` arriving after its decision (`trace_send_late_span`)."""
    spans = [
        span(number, 100 + i, 1, name=f"late {i}", start=BASE_NS + 10_000 + i) for i in range(count)
    ]
    body = request(*spans).SerializeToString()
    batch = split_request(body, OriginInterner())
    decision = Decision(True, rate, "rules/trace/sample the rest")
    payload = encode_kept_trace(
        batch.spans, batch.origins, -1, decision, SendReason.LATE_SPAN.value
    )
    return KeptTrace(trace_id_of(number), payload, count, decision, SendReason.LATE_SPAN, customer)
