from __future__ import annotations

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from refinery_py.model import Decision
from refinery_py.otlp.frame import encode_kept_trace, split_payload
from refinery_py.otlp.ingest import OriginInterner, split_request
from refinery_py.otlp.wire import iter_fields
from tests.otlp_builders import kv, request, span

KEEP = Decision(True, 10, "rules/trace/keep errors")


def attributes(message_span: Span) -> dict[str, object]:
    out: dict[str, object] = {}
    for attribute in message_span.attributes:
        value = attribute.value
        kind = value.WhichOneof("value")
        out.setdefault(attribute.key, getattr(value, kind) if kind else None)
    return out


def all_spans(payload: bytes) -> list[tuple[str, str, Span]]:
    decoded = ExportTraceServiceRequest.FromString(payload)
    return [
        (rs.resource.attributes[0].value.string_value, ss.scope.name, s)
        for rs in decoded.resource_spans
        for ss in rs.scope_spans
        for s in ss.spans
    ]


def encode(*spans: Span, root_index: int = 0, decision: Decision = KEEP) -> bytes:
    interner = OriginInterner()
    batch = split_request(request(*spans).SerializeToString(), interner)
    return encode_kept_trace(
        batch.spans, batch.origins, root_index, decision, "trace_send_got_root"
    )


def test_kept_spans_carry_rate_reason_and_send_reason() -> None:
    payload = encode(span(1, 1, attrs={"a": 1}), span(1, 2, 1))
    spans = [s for _, _, s in all_spans(payload)]
    root, child = attributes(spans[0]), attributes(spans[1])
    for attrs in (root, child):
        assert attrs["SampleRate"] == 10
        assert attrs["meta.refinery.reason"] == "rules/trace/keep errors"
        assert attrs["meta.refinery.send_reason"] == "trace_send_got_root"
    assert root["meta.span_count"] == 2
    assert "meta.span_count" not in child
    assert root["a"] == 1


def test_incoming_sample_rate_is_multiplied_and_kept_as_original() -> None:
    payload = encode(
        span(1, 1, attrs={"SampleRate": 4}),
        span(1, 2, 1, attrs={"sampleRate": 0}),
        span(1, 3, 1, attrs={"SampleRate": "5"}),
    )
    spans = [attributes(s) for _, _, s in all_spans(payload)]
    assert spans[0]["SampleRate"] == 40
    assert spans[0]["meta.refinery.original_sample_rate"] == 4
    assert spans[1]["SampleRate"] == 10  # 0 means 1
    assert "sampleRate" not in spans[1]
    assert spans[2]["SampleRate"] == 50
    for message_span in (s for _, _, s in all_spans(payload)):
        keys = [a.key for a in message_span.attributes]
        assert keys.count("SampleRate") == 1


@pytest.mark.parametrize(
    ("incoming", "original"),
    [
        (float("inf"), 1),
        ("-Infinity", 1),
        ("inf", 1),
        (float("nan"), 1),
        (1e300, 1 << 56),
        ("1e300", 1 << 56),
        (2**63 - 1, 1 << 56),
    ],
)
def test_incoming_rates_out_of_range_leave_as_a_valid_int64(
    incoming: object, original: int
) -> None:
    """Found by the fault tests: `SampleRate: +Inf` raised OverflowError in the decision tick,
    which stopped every later decision of the node without a word, and rates past int64
    were written as varints protobuf cannot read (the backend refused the trace). A rate that
    is not finite counts as 1, like one that is not a number; a larger one as OpenTelemetry's
    largest, 2^56; and the product with the trace's rate stops at int64's largest."""
    decision = Decision(True, 1 << 20, "rules/trace/big")
    payload = encode(span(1, 1, attrs={"SampleRate": incoming}), decision=decision)  # type: ignore[dict-item]
    (kept,) = [attributes(s) for _, _, s in all_spans(payload)]
    assert kept["SampleRate"] == min(original << 20, 2**63 - 1)
    assert kept["meta.refinery.original_sample_rate"] == original


def test_earlier_annotations_are_replaced() -> None:
    payload = encode(span(1, 1, attrs={"meta.refinery.reason": "old", "meta.span_count": 99}))
    (_, _, only) = all_spans(payload)[0]
    keys = [a.key for a in only.attributes]
    assert keys.count("meta.refinery.reason") == 1
    assert attributes(only)["meta.refinery.reason"] == KEEP.reason
    assert attributes(only)["meta.span_count"] == 1


def test_resources_and_scopes_are_preserved_per_span() -> None:
    interner = OriginInterner()
    first = split_request(
        request(span(1, 1), service="a", scope="s1").SerializeToString(), interner
    )
    second = split_request(
        request(span(1, 2, 1), service="b", scope="s2").SerializeToString(), interner
    )
    third = split_request(
        request(span(1, 3, 1), service="a", scope="s3").SerializeToString(), interner
    )
    payload = encode_kept_trace(
        first.spans + second.spans + third.spans,
        first.origins + second.origins + third.origins,
        0,
        KEEP,
        "trace_send_expired",
    )
    placed = [(service, scope, s.span_id[-1]) for service, scope, s in all_spans(payload)]
    assert sorted(placed) == [("a", "s1", 1), ("a", "s3", 3), ("b", "s2", 2)]
    assert len(ExportTraceServiceRequest.FromString(payload).resource_spans) == 2


def test_payloads_concatenate_into_one_valid_request() -> None:
    joined = encode(span(1, 1)) + encode(span(2, 1))
    assert len(all_spans(joined)) == 2


def test_split_payload_keeps_every_span_and_respects_the_size() -> None:
    spans = [span(1, i, None if i == 1 else 1, attrs={"pad": "x" * 500}) for i in range(1, 41)]
    payload = encode(*spans)
    chunks = list(split_payload(payload, 4000))
    assert len(chunks) > 1
    assert all(len(chunk) <= 4000 for chunk in chunks)
    ids = sorted(s.span_id for chunk in chunks for _, _, s in all_spans(chunk))
    assert ids == sorted(s.span_id for _, _, s in all_spans(payload))
    assert list(split_payload(payload, len(payload))) == [payload]


def test_attribute_values_survive_byte_for_byte() -> None:
    original = span(1, 1, attrs={"k": "v", "n": 3, "ok": False})
    original.events.add(name="e", attributes=[kv("x", 1)])
    (_, _, out) = all_spans(encode(original))[0]
    del out.attributes[3:]
    assert out.trace_state == "ot=th:e6666666666666"  # kept at rate 10
    out.trace_state = ""
    assert out == original


def _kept_span(message: Span, decision: Decision = KEEP, *, dry_run: bool = False) -> Span:
    batch = split_request(request(message).SerializeToString(), OriginInterner())
    payload = encode_kept_trace(
        batch.spans, batch.origins, 0, decision, "trace_send_got_root", dry_run=dry_run
    )
    return all_spans(payload)[0][2]


@pytest.mark.parametrize(
    ("rate", "incoming", "th"),
    [
        (1, None, "0"),
        (2, None, "8"),
        (4, None, "c"),
        (10, None, "e6666666666666"),
        (100, None, "fd70a3d70a3d71"),
        (5, 2, "e6666666666666"),  # 5 × 2 = 10
        (1, 16, "f"),
    ],
)
def test_the_outgoing_rate_is_written_as_an_ot_threshold(
    rate: int, incoming: int | None, th: str
) -> None:
    attrs = {} if incoming is None else {"SampleRate": incoming}
    kept = _kept_span(span(1, 1, attrs=attrs), Decision(True, rate, "r"))
    assert kept.trace_state == f"ot=th:{th}"
    assert attributes(kept)["SampleRate"] == rate * (incoming or 1)


def test_other_tracestate_members_and_ot_sub_keys_are_kept() -> None:
    message = span(1, 1)
    message.trace_state = "congo=t61rcWkgMzE, ot=rv:0123456789abcd;th:c;xy:z ,rojo=00f067aa0ba902b7"
    kept = _kept_span(message, Decision(True, 2, "r"))
    # The rate 4 of th:c came in; 2 more makes 8. `ot` moves to the front (W3C: modified).
    assert (
        kept.trace_state == "ot=th:e;rv:0123456789abcd;xy:z,congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"
    )
    assert attributes(kept)["SampleRate"] == 8
    assert attributes(kept)["meta.refinery.original_sample_rate"] == 4


def test_an_incoming_sample_rate_attribute_wins_over_an_incoming_threshold() -> None:
    message = span(1, 1, attrs={"SampleRate": 3})
    message.trace_state = "ot=th:8"
    kept = _kept_span(message, Decision(True, 1, "r"))
    assert attributes(kept)["SampleRate"] == 3
    assert attributes(kept)["meta.refinery.original_sample_rate"] == 3
    assert kept.trace_state == "ot=th:aaaaaaaaaaaaab"  # 1 in 3


def test_in_dry_run_the_threshold_is_the_incoming_rate() -> None:
    message = span(1, 1)
    message.trace_state = "ot=th:c"
    kept = _kept_span(message, Decision(False, 10, "r"), dry_run=True)
    assert attributes(kept)["SampleRate"] == 4
    assert kept.trace_state == "ot=th:c"


def test_trace_state_is_replaced_not_repeated_in_any_field_order() -> None:
    message = span(1, 1, 2, attrs={"k": "v"})
    message.trace_state = "vendor=a"
    raw = message.SerializeToString()
    state = b"\x1a\x08vendor=a"
    # trace_state written twice (the last one counts), the second time after the attributes
    raw = raw.replace(state, b"\x1a\x07vendor=") + state
    body = request(span(9, 9)).SerializeToString()
    batch = split_request(body, OriginInterner())
    payload = encode_kept_trace([raw], batch.origins, -1, Decision(True, 2, "r"), "x")
    (kept_raw,) = split_request(payload, OriginInterner()).spans
    assert kept_raw.count(b"\x1a") >= 1
    kept = Span.FromString(kept_raw)
    assert kept.trace_state == "ot=th:8,vendor=a"
    assert kept_raw.count(b"vendor=") == 1
    kept.trace_state = message.trace_state
    del kept.attributes[1:]
    assert kept == message


_PLAIN = span(1, 1, 2, attrs={"k": "v", "state": "\x1a\x08vendor=a"}).SerializeToString()


@pytest.mark.parametrize(
    ("raw", "incoming_state"),
    [
        # No trace_state: bytes that look like one inside an attribute value do not count.
        (_PLAIN, ""),
        (_PLAIN + b"\x1a\x00", ""),  # present and empty
        (b"\x1a\x08vendor=a" + _PLAIN, "vendor=a"),  # first, as a descending writer puts it
        (_PLAIN + b"\x9a\x00\x08vendor=a", "vendor=a"),  # its tag in two bytes
        (_PLAIN + b"\x1a\x03a=b" + b"\x1a\x08vendor=a", "vendor=a"),  # twice: the last counts
    ],
    ids=["none", "empty", "first", "long-tag", "twice"],
)
def test_kept_spans_leave_with_one_trace_state_whatever_came_in(
    raw: bytes, incoming_state: str
) -> None:
    body = request(span(9, 9)).SerializeToString()
    batch = split_request(body, OriginInterner())
    payload = encode_kept_trace([raw], batch.origins, -1, Decision(True, 2, "r"), "x")
    (kept_raw,) = split_request(payload, OriginInterner()).spans

    kept = Span.FromString(kept_raw)
    assert kept.trace_state == ",".join(filter(None, ["ot=th:8", incoming_state]))
    states = [f for f in _top_level_fields(kept_raw) if f == 3]
    assert len(states) == 1
    assert {kv.key for kv in kept.attributes} >= {"k", "state", "SampleRate"}


def _top_level_fields(raw: bytes) -> list[int]:
    """The field numbers of a span's top-level fields, in order."""
    return [number for number, *_ in iter_fields(raw, 0, len(raw))]
