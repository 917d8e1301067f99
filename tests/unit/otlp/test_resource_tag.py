"""A customer written into the resources of a request on the wire: resources that lack the
attribute get it, the others stay byte for byte as sent, and spans are never re-encoded."""

from __future__ import annotations

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans

from refinery_py.otlp.customer import customer_of
from refinery_py.otlp.frame import frame_spans
from refinery_py.otlp.ingest import OriginInterner, split_request
from refinery_py.otlp.resource_tag import (
    has_attribute,
    string_attribute,
    tag_resources,
    with_attribute,
)
from refinery_py.otlp.span_view import WireTrace, origin_fields
from refinery_py.otlp.wire import encode_varint
from tests.otlp_builders import kv, request, span


def resources_after(body: bytes, key: str = "customer.id", value: str = "acme") -> list[dict]:
    origins = OriginInterner()
    batch = split_request(body, origins)
    spans_before = list(batch.spans)
    tag_resources(batch, key, value, origins)
    assert batch.spans == spans_before  # the span bytes are the very same objects
    framed = ExportTraceServiceRequest.FromString(frame_spans(batch.spans, batch.origins))
    return [
        {a.key: a.value.string_value for a in rs.resource.attributes}
        for rs in framed.resource_spans
    ]


def test_a_resource_without_the_attribute_gets_it_and_keeps_its_own() -> None:
    body = request(span(1, 1), service="checkout").SerializeToString()
    assert resources_after(body) == [{"service.name": "checkout", "customer.id": "acme"}]


def test_a_resource_that_has_the_attribute_is_left_as_sent() -> None:
    body = request(span(1, 1), resource_attrs={"customer.id": "globex"}).SerializeToString()
    origins = OriginInterner()
    batch = split_request(body, origins)
    before = [origin.resource_fields for origin in batch.origins]
    tag_resources(batch, "customer.id", "acme", origins)
    assert [origin.resource_fields for origin in batch.origins] == before
    assert resources_after(body) == [{"service.name": "svc", "customer.id": "globex"}]


def test_only_the_resources_that_lack_it_are_tagged() -> None:
    tagged = request(span(1, 1), span(1, 2, 1), service="a")
    own = request(span(2, 1), service="b", resource_attrs={"customer.id": "initech"})
    body = ExportTraceServiceRequest(
        resource_spans=[*tagged.resource_spans, *own.resource_spans]
    ).SerializeToString()
    assert resources_after(body) == [
        {"service.name": "a", "customer.id": "acme"},
        {"service.name": "b", "customer.id": "initech"},
    ]


def test_a_request_without_any_resource_gets_one() -> None:
    body = ExportTraceServiceRequest(
        resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=[span(1, 1)])])]
    ).SerializeToString()
    assert resources_after(body) == [{"customer.id": "acme"}]


def test_collector_field_order_and_a_repeated_resource_field() -> None:
    # The Collector writes fields in descending order (schema_url before the resource, a
    # KeyValue's value before its key), and protobuf merges repeated message fields: the
    # attribute must be found, and added, in either.
    value_first_kv = b"\x12\x07\x0a\x05acme1" + b"\x0a\x0bcustomer.id"
    resource_with_it = b"\x0a" + encode_varint(len(value_first_kv)) + value_first_kv
    schema = b"\x1a\x0bhttps://x/1"
    fields = schema + b"\x0a" + encode_varint(len(resource_with_it)) + resource_with_it
    assert has_attribute(fields, "customer.id")
    plain = Resource(attributes=[kv("service.name", "svc")]).SerializeToString()
    other = Resource(attributes=[kv("host.name", "h1")]).SerializeToString()
    repeated = schema + b"\x0a" + encode_varint(len(plain)) + plain
    repeated += b"\x0a" + encode_varint(len(other)) + other
    assert not has_attribute(repeated, "customer.id")
    tagged = with_attribute(repeated, string_attribute("customer.id", "acme"))
    parsed = ResourceSpans.FromString(tagged)
    assert parsed.schema_url == "https://x/1"
    assert [a.key for a in parsed.resource.attributes] == [
        "service.name",
        "host.name",
        "customer.id",
    ]


def test_rules_and_the_store_see_the_customer_from_the_resource() -> None:
    body = request(span(7, 1), span(7, 2, 1)).SerializeToString()
    origins = OriginInterner()
    batch = split_request(body, origins)
    tag_resources(batch, "customer.id", "acme", origins)
    trace = WireTrace(batch.trace_ids[0], batch.spans, batch.origins, 0)
    assert customer_of(trace, ["customer.id"]) == "acme"
    assert trace.spans[1].get("customer.id") == "acme"  # what a rule's condition reads
    assert origin_fields(batch.origins[0])["customer.id"] == "acme"


def test_a_span_attribute_still_wins_over_the_tag() -> None:
    body = request(span(7, 1, attrs={"customer.id": "own"})).SerializeToString()
    origins = OriginInterner()
    batch = split_request(body, origins)
    tag_resources(batch, "customer.id", "acme", origins)
    trace = WireTrace(batch.trace_ids[0], batch.spans, batch.origins, 0)
    assert customer_of(trace, ["customer.id"]) == "own"


def test_tagged_origins_are_shared_like_any_other() -> None:
    origins = OriginInterner()
    first = split_request(request(span(1, 1)).SerializeToString(), origins)
    second = split_request(request(span(2, 1)).SerializeToString(), origins)
    tag_resources(first, "customer.id", "acme", origins)
    tag_resources(second, "customer.id", "acme", origins)
    assert first.origins[0] is second.origins[0]
