"""Varied OTLP requests for tests that compare encodings: every field and value kind, seeded.

Each trace has a root (sometimes with an explicit all-zero parent ID) and children; spans carry
string, int, bool, double, bytes, array, map and empty attribute values, events and links whose
attributes repeat span-attribute keys (they must not be read as the span's), trace_state, flags,
statuses, incoming `SampleRate`/`sampleRate` attributes, earlier `meta.refinery.*` annotations,
and now and then an invalid span (refused through partial success). Resources name their service
and environment (the rules' target) and sometimes a resource-wide customer.
"""

from __future__ import annotations

import random

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import (
    AnyValue,
    ArrayValue,
    InstrumentationScope,
    KeyValue,
    KeyValueList,
)
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

from tests.otlp_builders import kv

ROUTES = ("/cart", "/checkout", "/api/v1/orders/{id}", "/healthz", "/login")
CUSTOMERS = ("acme", "globex", "initech", "umbrella")
TRACE_STATES = ("", "", "vendor=abc", "ot=th:8;rv:0123456789abcd,congo=t61rcWkgMzE", "ot=th:c")

RULES = r"""
RulesVersion: 2
Samplers:
  __default__:
    RulesBasedSampler:
      Rules:
        - Name: keep errors
          Conditions:
            - Field: error
              Operator: exists
          SampleRate: 1
        - Name: keep server errors
          Conditions:
            - Field: root.http.response.status_code
              Operator: ">="
              Value: 500
              Datatype: int
          SampleRate: 1
        - Name: keep flagged
          Conditions:
            - Field: app.flagged
              Operator: "="
              Value: true
              Datatype: bool
          SampleRate: 1
        - Name: drop health checks
          Drop: true
          Conditions:
            - Field: root.http.route
              Operator: matches
              Value: "^/health"
        - Name: slow spans of big customers
          Scope: span
          Conditions:
            - Field: customer.id
              Operator: in
              Value: [acme, globex]
            - Field: app.latency_ms
              Operator: ">"
              Value: 40.5
              Datatype: float
          SampleRate: 2
        - Name: carts
          Conditions:
            - Field: url.path
              Operator: contains
              Value: cart
            - Field: app.tags
              Operator: exists
          Sampler:
            EMADynamicSampler:
              GoalSampleRate: 3
              FieldList: [customer.id, http.route, app.plan]
              UseTraceLength: true
        - Name: the rest
          Sampler:
            DynamicSampler:
              SampleRate: 4
              FieldList: [root.customer.id, root.http.route, span.kind, name]
  staging:
    DeterministicSampler:
      SampleRate: 3
"""
"""Rules that read span attributes (span and trace scope, `root.`), intrinsic fields, resource
attributes (the target), and key fields, so every reader of span bytes takes part."""

FIELDS = (
    "customer.id",
    "http.route",
    "http.response.status_code",
    "app.flagged",
    "app.latency_ms",
    "app.tags",
    "app.settings",
    "app.blob",
    "app.empty",
    "app.plan",
    "url.path",
    "SampleRate",
    "sampleRate",
    "dup",
    "service.name",
    "deployment.environment.name",
    "library.name",
    "scope.attr",
    "event.only",
    "missing.field",
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
)
"""Every field a rule can name that these requests exercise, and some they do not carry."""


def varied_requests(seed: int, traces: int = 40, per_request: int = 12) -> list[bytes]:
    """Serialized requests carrying `traces` traces, spans of a trace spread over requests."""
    rng = random.Random(seed)
    spans: list[tuple[int, Span]] = []
    for _ in range(traces):
        spans.extend(_trace(rng))
    rng.shuffle(spans)
    resources = [_resource(rng, index) for index in range(3)]
    bodies = []
    for first in range(0, len(spans), per_request):
        chunk = spans[first : first + per_request]
        by_resource: dict[int, list[Span]] = {}
        for resource_index, span in chunk:
            by_resource.setdefault(resource_index, []).append(span)
        if rng.random() < 0.2:
            by_resource.setdefault(0, []).append(_invalid_span(rng))
        request = ExportTraceServiceRequest()
        for resource_index, members in by_resource.items():
            half = len(members) // 2
            request.resource_spans.append(
                ResourceSpans(
                    resource=resources[resource_index],
                    scope_spans=[
                        ScopeSpans(scope=_scope("app", 1), spans=members[:half]),
                        ScopeSpans(scope=_scope("db", 2), spans=members[half:]),
                    ],
                    schema_url="https://opentelemetry.io/schemas/1.26.0",
                )
            )
        bodies.append(request.SerializeToString())
    return bodies


def _resource(rng: random.Random, index: int) -> Resource:
    attributes = [
        kv("service.name", f"svc-{index}"),
        kv("deployment.environment.name", "staging" if index == 2 else "production"),
        kv("host.name", f"host-{rng.randrange(100)}"),
    ]
    if index == 1:
        attributes.append(kv("customer.id", "resource-wide"))
    return Resource(attributes=attributes)


def _scope(name: str, version: int) -> InstrumentationScope:
    return InstrumentationScope(
        name=name, version=str(version), attributes=[kv("scope.attr", name)]
    )


def _trace(rng: random.Random) -> list[tuple[int, Span]]:
    trace_id = rng.randbytes(16)
    count = rng.randint(1, 7)
    span_ids = [rng.randbytes(8) for _ in range(count)]
    resource_index = rng.randrange(3)
    route = rng.choice(ROUTES)
    customer = rng.choice(CUSTOMERS)
    customer_on = rng.choice(("root", "child", "all", "none"))
    out = []
    for index in range(count):
        parent = b"" if index == 0 else span_ids[rng.randrange(index)]
        if index == 0 and rng.random() < 0.3:
            parent = bytes(8)  # an explicit all-zero parent still means a root
        has_customer = (
            customer_on == "all"
            or (customer_on == "root" and index == 0)
            or (customer_on == "child" and index == count - 1 and index > 0)
        )
        span = _span(
            rng,
            (trace_id, span_ids[index], parent),
            route=route,
            customer=customer if has_customer else "",
        )
        out.append((resource_index if index == 0 else rng.randrange(3), span))
    return out


def _span(
    rng: random.Random, ids: tuple[bytes, bytes, bytes], *, route: str, customer: str
) -> Span:
    trace_id, span_id, parent = ids
    attributes = [
        kv("http.route", route),
        kv("url.path", route.replace("{id}", str(rng.randrange(1000)))),
        kv("http.response.status_code", rng.choice((200, 200, 404, 503))),
        kv("app.latency_ms", rng.uniform(0, 80)),
        kv("app.plan", rng.choice(("free", "team"))),
    ]
    if customer:
        attributes.insert(rng.randrange(len(attributes) + 1), kv("customer.id", customer))
    if rng.random() < 0.1:
        attributes.append(kv("app.flagged", rng.random() < 0.7))
    if rng.random() < 0.4:
        items = [AnyValue(string_value="x"), AnyValue(int_value=7), AnyValue(bool_value=True)]
        attributes.append(
            KeyValue(key="app.tags", value=AnyValue(array_value=ArrayValue(values=items)))
        )
    if rng.random() < 0.3:
        nested = KeyValueList(values=[kv("depth", 1), kv("customer.id", "nested-decoy")])
        attributes.append(KeyValue(key="app.settings", value=AnyValue(kvlist_value=nested)))
    if rng.random() < 0.2:
        attributes.append(KeyValue(key="app.blob", value=AnyValue(bytes_value=rng.randbytes(5))))
    if rng.random() < 0.2:
        attributes.append(KeyValue(key="app.empty"))
    if rng.random() < 0.2:
        attributes.extend([kv("dup", "first"), kv("dup", "second")])
    incoming = rng.random()
    if incoming < 0.1:
        attributes.append(kv("SampleRate", rng.choice((0, 5, 20))))
    elif incoming < 0.15:
        attributes.append(kv("sampleRate", rng.choice(("7", "2.5", "junk"))))
    elif incoming < 0.2:
        attributes.append(kv("SampleRate", 4.0))
    if rng.random() < 0.1:
        attributes.append(kv("meta.refinery.reason", "an earlier sampler"))
    span = Span(
        trace_id=trace_id,
        span_id=span_id,
        parent_span_id=parent,
        trace_state=rng.choice(TRACE_STATES),
        name=rng.choice(("GET", "SELECT", "render")) if parent.strip(b"\0") else route,
        kind=rng.choice((Span.SPAN_KIND_SERVER, Span.SPAN_KIND_INTERNAL, Span.SPAN_KIND_CLIENT)),
        start_time_unix_nano=1_700_000_000_000_000_000 + rng.randrange(10**9),
        attributes=attributes,
        dropped_attributes_count=rng.choice((0, 0, 3)),
        flags=rng.choice((0, 0x100, 0x301)),
    )
    span.end_time_unix_nano = span.start_time_unix_nano + rng.randrange(10**8)
    if rng.random() < 0.4:
        span.events.add(
            name="exception",
            time_unix_nano=span.start_time_unix_nano,
            attributes=[kv("customer.id", "event-decoy"), kv("event.only", "yes")],
        )
        span.dropped_events_count = rng.choice((0, 1))
    if rng.random() < 0.3:
        span.links.add(
            trace_id=rng.randbytes(16),
            span_id=rng.randbytes(8),
            trace_state="ot=th:f",
            attributes=[kv("http.route", "/link-decoy")],
        )
    roll = rng.random()
    if roll < 0.08:
        span.status.CopyFrom(Status(code=Status.STATUS_CODE_ERROR, message="boom"))
    elif roll < 0.3:
        span.status.CopyFrom(Status(code=Status.STATUS_CODE_OK, message="fine"))
    return span


def _invalid_span(rng: random.Random) -> Span:
    return Span(trace_id=bytes(16), span_id=rng.randbytes(8), name="invalid")
