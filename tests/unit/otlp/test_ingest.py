from __future__ import annotations

import functools

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from refinery_py.otlp import ingest
from refinery_py.otlp.errors import MalformedPayload
from refinery_py.otlp.ingest import OriginInterner
from refinery_py.otlp.wire import encode_varint
from tests.otlp_builders import kv, request, span, span_id, trace_id


@pytest.fixture(autouse=True, params=[True, False], ids=["walk", "upb"])
def split_request(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test here runs with both readers: the compiled walk and upb (see `ingest`)."""
    walk = request.param
    monkeypatch.setitem(
        globals(), "split_request", functools.partial(ingest.split_request, walk=walk)
    )


def split(message: ExportTraceServiceRequest) -> tuple[list[bytes], list[Span], set[int]]:
    batch = split_request(message.SerializeToString(), OriginInterner())
    return batch.trace_ids, [Span.FromString(s) for s in batch.spans], batch.root_positions


def test_spans_keep_their_bytes_trace_ids_and_root_flags() -> None:
    message = request(span(1, 10), span(1, 11, 10), span(2, 20, 99, attrs={"a": "b"}))
    trace_ids, spans, roots = split(message)
    assert trace_ids == [trace_id(1), trace_id(1), trace_id(2)]
    assert [s.span_id for s in spans] == [span_id(10), span_id(11), span_id(20)]
    assert list(spans[2].attributes) == [kv("a", "b")]
    assert roots == {0}


def test_trace_state_does_not_hide_the_parent() -> None:
    child = span(1, 2, 1)
    child.trace_state = "vendor=value"
    root = span(1, 1)
    root.trace_state = "k=v"
    _, _, roots = split(request(child, root))
    assert roots == {1}


def test_all_zero_parent_counts_as_root() -> None:
    _, _, roots = split(request(span(1, 2, bytes(8))))
    assert roots == {0}


def test_field_order_does_not_matter() -> None:
    # Hand-encode a span with fields in reverse order: name, parent, span_id, trace_id.
    body = (
        b"\x2a\x02op"
        + b"\x22\x08"
        + span_id(7)
        + b"\x12\x08"
        + span_id(8)
        + b"\x0a\x10"
        + trace_id(5)
    )
    scope = b"\x12" + bytes([len(body)]) + body
    resource = b"\x12" + bytes([len(scope)]) + scope
    raw = b"\x0a" + bytes([len(resource)]) + resource
    batch = split_request(raw, OriginInterner())
    assert batch.trace_ids == [trace_id(5)]
    assert batch.root_positions == set()
    assert Span.FromString(batch.spans[0]).name == "op"


@pytest.mark.parametrize(
    ("bad_trace_id", "bad_span_id"),
    [
        (bytes(16), span_id(1)),
        (b"\x01" * 8, span_id(1)),
        (trace_id(1), bytes(8)),
        (b"", span_id(1)),
    ],
)
def test_invalid_ids_are_rejected_and_the_rest_accepted(
    bad_trace_id: bytes, bad_span_id: bytes
) -> None:
    message = request(span(bad_trace_id, bad_span_id), span(3, 30))
    batch = split_request(message.SerializeToString(), OriginInterner())
    assert batch.trace_ids == [trace_id(3)]
    assert batch.rejected == 1
    assert "trace_id must be 16 bytes" in batch.reject_message


def test_resource_and_scope_are_interned_and_preserved() -> None:
    interner = OriginInterner()
    first = split_request(
        request(span(1, 1), span(2, 2), service="a").SerializeToString(), interner
    )
    second = split_request(request(span(3, 3), service="a").SerializeToString(), interner)
    other = split_request(request(span(4, 4), service="b").SerializeToString(), interner)
    assert first.origins[0] is first.origins[1] is second.origins[0]
    assert other.origins[0] is not first.origins[0]
    resource = ResourceSpans.FromString(first.origins[0].resource_fields).resource
    assert list(resource.attributes) == [kv("service.name", "a")]
    scope = ScopeSpans.FromString(first.origins[0].scope_fields).scope
    assert (scope.name, scope.version) == ("test.scope", "1.0")


def test_schema_urls_travel_with_the_origin() -> None:
    message = request(span(1, 1))
    message.resource_spans[0].schema_url = "https://opentelemetry.io/schemas/1.26.0"
    message.resource_spans[0].scope_spans[0].schema_url = "https://example.com/scope"
    batch = split_request(message.SerializeToString(), OriginInterner())
    origin = batch.origins[0]
    assert ResourceSpans.FromString(origin.resource_fields).schema_url.endswith("1.26.0")
    assert ScopeSpans.FromString(origin.scope_fields).schema_url == "https://example.com/scope"


def test_large_spans_with_multi_byte_lengths() -> None:
    big = span(1, 1, attrs={f"k{i}": "v" * 200 for i in range(100)})
    batch = split_request(request(big).SerializeToString(), OriginInterner())
    assert Span.FromString(batch.spans[0]) == big


@pytest.mark.parametrize(
    "body",
    [b"\x0a\x05abc", b"\xff\xff\xff", b"\x0a\x02\x12\x10", b"not protobuf at all, no"],
)
def test_malformed_bodies_raise(body: bytes) -> None:
    with pytest.raises(MalformedPayload):
        split_request(body, OriginInterner())


def test_empty_request_is_an_empty_batch() -> None:
    batch = split_request(b"", OriginInterner())
    assert batch.span_count == 0
    assert batch.rejected == 0


def test_invalid_utf8_in_a_string_is_malformed() -> None:
    good = span(1, 1, name="ok").SerializeToString()
    bad = good.replace(b"\x2a\x02ok", b"\x2a\x02\xff\xfe")
    scope = b"\x12" + bytes([len(bad)]) + bad
    resource = b"\x12" + bytes([len(scope)]) + scope
    with pytest.raises(MalformedPayload):
        split_request(b"\x0a" + bytes([len(resource)]) + resource, OriginInterner())


def test_a_parent_written_after_the_attributes_still_makes_a_child() -> None:
    # What the JSON codec used to produce for `{"attributes": [...], "parentSpanId": ...}`.
    canonical = span(1, 2, 1, attrs={"k": "v"}).SerializeToString()
    parent_field = b"\x22\x08" + (1).to_bytes(8, "big")
    reordered = canonical.replace(parent_field, b"") + parent_field
    body = _wrap(reordered)
    batch = split_request(body, OriginInterner())
    assert batch.root_positions == set()
    assert batch.spans == [reordered]


def test_the_last_of_repeated_ids_wins() -> None:
    # Protobuf merge: a singular field written twice means its last value.
    canonical = span(1, 2, 1).SerializeToString()
    decoys = b"\x0a\x10" + (9).to_bytes(16, "big") + b"\x12\x08" + (9).to_bytes(8, "big")
    child_then_root = decoys + canonical + b"\x22\x00"  # an empty parent at the end: a root
    batch = split_request(_wrap(decoys + canonical), OriginInterner())
    assert batch.trace_ids == [(1).to_bytes(16, "big")] and batch.root_positions == set()
    batch = split_request(_wrap(child_then_root), OriginInterner())
    assert batch.trace_ids == [(1).to_bytes(16, "big")] and batch.root_positions == {0}


def test_ids_are_read_the_same_with_and_without_validation() -> None:
    body = request(span(1, 2, 1), span(1, 1), span(2, 5, bytes(8))).SerializeToString()
    checked = split_request(body, OriginInterner())
    trusted = split_request(body, OriginInterner(), validate=False)
    assert (checked.trace_ids, checked.root_positions) == (
        trusted.trace_ids,
        trusted.root_positions,
    )
    assert checked.root_positions == {1, 2}


def _wrap(span_bytes: bytes) -> bytes:
    """A request holding one span given as raw bytes."""
    scope = b"\x12" + encode_varint(len(span_bytes)) + span_bytes
    resource = b"\x12" + encode_varint(len(scope)) + scope
    return b"\x0a" + encode_varint(len(resource)) + resource


def test_a_span_written_with_a_padded_tag_is_a_span() -> None:
    # upb reads a spans field written with a two-byte tag (and a padded length); so does the
    # scan, rather than take the span for another ScopeSpans field (and lose it).
    raw = span(1, 2, 1).SerializeToString()
    no_ids = b"\x30\x01"  # a span with only its kind: refused for its IDs, not lost
    scope = b"\x92\x00" + encode_varint(len(raw)) + raw + b"\x92\x80\x00\x82\x00" + no_ids
    resource = b"\x12" + encode_varint(len(scope)) + scope
    body = b"\x0a" + encode_varint(len(resource)) + resource
    parsed = ExportTraceServiceRequest.FromString(body).resource_spans[0].scope_spans[0]
    assert len(parsed.spans) == 2
    batch = split_request(body, OriginInterner())
    assert batch.spans == [raw] and batch.rejected == 1  # the second has no IDs
    assert batch.origins[0].scope_fields == b""
