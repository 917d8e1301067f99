"""Realistic OTLP traffic, pre-built, for benchmarks and load tests.

The shape of an attribute-rich, auto-instrumented SaaS monolith: Zipf-distributed customers and
routes, 8-40 spans per trace in a tree (children end, and so arrive, before their parents), about
30 attributes per span, 1% error traces, 0.5% flagged high-value transactions, a trickle of health
checks. Requests group spans by service the way an SDK's batch processor does, so one trace's spans
are spread over several requests.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

SERVICES = ("web", "api", "billing", "search", "worker")
ROUTES = tuple(
    [
        "/api/v1/orders",
        "/api/v1/orders/{id}",
        "/api/v1/users/{id}",
        "/api/v1/search",
        "/api/v1/invoices",
        "/api/v1/invoices/{id}/pay",
        "/checkout",
        "/cart",
        "/login",
        "/dashboard",
    ]
    + [f"/api/v2/resource{i}/{{id}}" for i in range(40)]
)
HEALTH_ROUTE = "/healthz"
_OPS = ("SELECT orders", "SELECT users", "INSERT events", "GET cache", "HTTP GET", "render")


def _kv(key: str, value: str | int | float | bool) -> KeyValue:
    if isinstance(value, bool):
        return KeyValue(key=key, value=AnyValue(bool_value=value))
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    if isinstance(value, float):
        return KeyValue(key=key, value=AnyValue(double_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=value))


@dataclass
class TrafficShape:
    """Knobs of the generated traffic."""

    customers: int = 1000
    zipf_s: float = 1.2
    min_spans: int = 8
    max_spans: int = 40
    error_fraction: float = 0.01
    flagged_fraction: float = 0.005
    health_fraction: float = 0.02
    spans_per_request: int = 512
    seed: int = 1
    services: tuple[str, ...] = field(default=SERVICES)


def _zipf_weights(n: int, s: float) -> list[float]:
    return [1.0 / (rank**s) for rank in range(1, n + 1)]


def _resource(service: str, index: int) -> Resource:
    return Resource(
        attributes=[
            _kv("service.name", service),
            _kv("service.version", "2026.11.3"),
            _kv("service.instance.id", f"{service}-{index}-7f9c"),
            _kv("deployment.environment.name", "production"),
            _kv("host.name", f"ip-10-0-{index}-17.ec2.internal"),
            _kv("cloud.provider", "aws"),
            _kv("cloud.region", "us-east-1"),
            _kv("k8s.namespace.name", "prod"),
            _kv("k8s.pod.name", f"{service}-5d8f7b9c4-x{index}q"),
            _kv("telemetry.sdk.name", "opentelemetry"),
            _kv("telemetry.sdk.language", "python"),
            _kv("telemetry.sdk.version", "1.45.2"),
        ]
    )


class TraceFactory:
    """Builds traces as lists of (service, Span), children first, root last."""

    def __init__(self, shape: TrafficShape) -> None:
        self.shape = shape
        self.rng = random.Random(shape.seed)
        self.customer_ids = [f"cust-{i:05d}" for i in range(shape.customers)]
        self.customer_weights = _zipf_weights(shape.customers, shape.zipf_s)
        self.route_weights = _zipf_weights(len(ROUTES), 1.0)

    def trace(self, start_ns: int) -> tuple[list[tuple[str, Span]], dict[str, object]]:
        shape, rng = self.shape, self.rng
        customer = rng.choices(self.customer_ids, self.customer_weights)[0]
        health = rng.random() < shape.health_fraction
        route = HEALTH_ROUTE if health else rng.choices(ROUTES, self.route_weights)[0]
        error = not health and rng.random() < shape.error_fraction
        flagged = not health and rng.random() < shape.flagged_fraction
        count = 1 if health else rng.randint(shape.min_spans, shape.max_spans)
        trace_id = rng.randbytes(16)
        span_ids = [rng.randbytes(8) for _ in range(count)]
        duration = rng.randint(2_000_000, 400_000_000)
        error_at = rng.randrange(count) if error else -1
        spans: list[tuple[str, Span]] = []
        for i in range(count):
            parent = b"" if i == 0 else span_ids[rng.randrange(i)]
            service = shape.services[0] if i == 0 else rng.choice(shape.services)
            offset = 0 if i == 0 else rng.randint(0, duration // 2)
            length = duration if i == 0 else rng.randint(100_000, duration - offset)
            attrs = [
                _kv("customer.id", customer),
                _kv("http.route", route),
                _kv("http.request.method", "GET" if i % 3 else "POST"),
                _kv("url.path", route.replace("{id}", str(rng.randint(1, 99999)))),
                _kv("url.scheme", "https"),
                _kv("http.response.status_code", 500 if i == error_at else 200),
                _kv("server.address", "app.example.com"),
                _kv("server.port", 443),
                _kv("client.address", f"203.0.113.{rng.randint(1, 254)}"),
                _kv("user_agent.original", "Mozilla/5.0 (X11; Linux x86_64) Chrome/131.0"),
                _kv("network.protocol.version", "1.1"),
                _kv("thread.id", rng.randint(1, 64)),
                _kv("thread.name", "worker-thread"),
                _kv("code.function", "handle_request"),
                _kv("code.namespace", "app.handlers.orders"),
                _kv("code.lineno", rng.randint(10, 900)),
                _kv("db.system", "postgresql"),
                _kv("db.name", "app"),
                _kv("db.operation", rng.choice(_OPS)),
                _kv("db.statement", "SELECT id, total FROM orders WHERE customer_id = $1 LIMIT 50"),
                _kv("net.peer.name", "db-primary.internal"),
                _kv("app.user.id", f"user-{rng.randint(1, 10**6)}"),
                _kv("app.request.id", rng.randbytes(8).hex()),
                _kv("app.region", "us-east-1"),
                _kv("app.plan", rng.choice(("free", "team", "enterprise"))),
                _kv("app.feature_flags", "new-checkout,fast-search"),
                _kv("app.cache.hit", rng.random() < 0.8),
                _kv("app.items", rng.randint(0, 40)),
                _kv("app.latency_budget_ms", 250.0),
            ]
            if flagged and i == 0:
                attrs.append(_kv("app.flagged", True))
            span = Span(
                trace_id=trace_id,
                span_id=span_ids[i],
                parent_span_id=parent,
                name=route if i == 0 else rng.choice(_OPS),
                kind=Span.SPAN_KIND_SERVER if i == 0 else Span.SPAN_KIND_INTERNAL,
                start_time_unix_nano=start_ns + offset,
                end_time_unix_nano=start_ns + offset + length,
                attributes=attrs,
                status=Status(code=Status.STATUS_CODE_ERROR, message="boom")
                if i == error_at
                else Status(),
            )
            spans.append((service, span))
        spans.reverse()  # children end first, so they reach the sampler first
        meta = {"customer": customer, "error": error, "flagged": flagged, "health": health}
        return spans, meta


def generate_requests(
    traces: int, shape: TrafficShape | None = None, start_ns: int = 1_790_000_000 * 10**9
) -> Iterator[bytes]:
    """Yield serialized ExportTraceServiceRequests carrying `traces` traces.

    Spans are interleaved across traces (several traces in flight at once) and grouped per
    service into requests of about `spans_per_request` spans.
    """
    shape = shape or TrafficShape()
    factory = TraceFactory(shape)
    resources = {s: _resource(s, i) for i, s in enumerate(shape.services)}
    scope = InstrumentationScope(name="opentelemetry.instrumentation.app", version="0.49b0")
    pending: dict[str, list[Span]] = {s: [] for s in shape.services}
    in_flight: list[list[tuple[str, Span]]] = []
    made = 0

    def flush(service: str) -> bytes:
        request = ExportTraceServiceRequest(
            resource_spans=[
                ResourceSpans(
                    resource=resources[service],
                    scope_spans=[ScopeSpans(scope=scope, spans=pending[service])],
                )
            ]
        )
        pending[service] = []
        return request.SerializeToString()

    while made < traces or in_flight:
        while made < traces and len(in_flight) < 64:
            in_flight.append(factory.trace(start_ns + made * 1000)[0])
            made += 1
        trace = in_flight[factory.rng.randrange(len(in_flight))]
        for _ in range(min(len(trace), factory.rng.randint(1, 4))):
            service, span = trace.pop(0)
            pending[service].append(span)
            if len(pending[service]) >= shape.spans_per_request:
                yield flush(service)
        in_flight = [t for t in in_flight if t]
    for service in shape.services:
        if pending[service]:
            yield flush(service)
