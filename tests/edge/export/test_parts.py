"""The exporter's pure parts: endpoints, retry hints, backoff, the queue, batching, log limits."""

from __future__ import annotations

import logging
import random
from datetime import UTC, datetime

import pytest
from google.protobuf.duration_pb2 import Duration
from google.rpc import error_details_pb2, status_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from refinery_py.export import parse_endpoint
from refinery_py.export.backoff import RetryPolicy
from refinery_py.export.batch import build_requests, count_spans
from refinery_py.export.response import delivered
from refinery_py.export.retry_hint import STATUS_DETAILS_KEY, grpc_retry_delay, http_retry_delay
from refinery_py.export.trace_queue import TraceQueue
from refinery_py.export.transport import Verdict
from refinery_py.telemetry.throttled_log import ThrottledLog

from .builders import expected_spans, kept_trace


@pytest.mark.parametrize(
    ("text", "host", "port", "tls", "path"),
    [
        ("collector:4317", "collector", 4317, None, ""),
        (" 10.0.0.5:4318 ", "10.0.0.5", 4318, None, ""),
        ("[::1]:4317", "::1", 4317, None, ""),
        ("http://collector", "collector", 80, False, ""),
        ("https://api.example.com/otlp/v1/traces", "api.example.com", 443, True, "/otlp/v1/traces"),
        ("https://[::1]:8443", "::1", 8443, True, ""),
    ],
)
def test_parse_endpoint(text: str, host: str, port: int, tls: bool | None, path: str) -> None:
    endpoint = parse_endpoint(text)
    assert (endpoint.host, endpoint.port, endpoint.tls, endpoint.path) == (host, port, tls, path)


@pytest.mark.parametrize(
    "text", ["collector", "collector:0", "collector:http", ":4317", "ftp://x:1", "http://:80"]
)
def test_parse_endpoint_refuses_what_it_cannot_use(text: str) -> None:
    with pytest.raises(ValueError, match=r"endpoint|host|port"):
        parse_endpoint(text)


def _status_details(*details: object) -> bytes:
    status = status_pb2.Status(code=14, message="unavailable")
    for detail in details:
        status.details.add().Pack(detail)
    encoded: bytes = status.SerializeToString()
    return encoded


def test_grpc_retry_delay_reads_retry_info_from_the_status_details_trailer() -> None:
    info = error_details_pb2.RetryInfo(retry_delay=Duration(seconds=2, nanos=500_000_000))
    other = error_details_pb2.DebugInfo(detail="stack")
    trailers: list[tuple[str, str | bytes]] = [
        ("other", "x"),
        (STATUS_DETAILS_KEY, _status_details(other, info)),
    ]
    assert grpc_retry_delay(trailers) == 2.5


@pytest.mark.parametrize(
    "trailers",
    [None, [], [(STATUS_DETAILS_KEY, _status_details())], [(STATUS_DETAILS_KEY, b"\xff\xff")]],
)
def test_grpc_retry_delay_is_none_without_retry_info(
    trailers: list[tuple[str, str | bytes]] | None,
) -> None:
    assert grpc_retry_delay(trailers) is None


NOW = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("120", 120.0),
        (" 0 ", 0.0),
        ("Thu, 02 Jan 2025 03:04:35 GMT", 30.0),
        ("Wed, 01 Jan 2025 00:00:00 GMT", 0.0),
        ("soon", None),
        ("-5", None),
        (None, None),
    ],
)
def test_http_retry_delay(header: str | None, seconds: float | None) -> None:
    assert http_retry_delay(header, now=NOW) == seconds


def test_backoff_grows_from_the_initial_interval_up_to_the_cap_with_jitter() -> None:
    policy = RetryPolicy(initial_interval=1.0, max_interval=8.0, max_elapsed=60.0)
    rng = random.Random(3)
    for retry in range(12):
        cap = min(8.0, 2.0**retry)
        delays = [policy.delay(retry, rng) for _ in range(50)]
        assert all(1.0 <= d <= cap for d in delays)
        if cap > 1.0:
            assert len(set(delays)) > 1
    assert policy.delay(10_000, rng) <= 8.0


def test_backoff_is_reproducible_from_the_seed() -> None:
    policy = RetryPolicy(0.5, 30.0, 300.0)
    first = [policy.delay(n, random.Random(42)) for n in range(8)]
    assert first == [policy.delay(n, random.Random(42)) for n in range(8)]


def test_a_server_hint_replaces_the_computed_wait_and_the_budget_bounds_it() -> None:
    policy = RetryPolicy(1.0, 2.0, max_elapsed=10.0)
    assert policy.delay(0, random.Random(1), hint=7.5) == 7.5
    assert policy.allows(elapsed=2.0, delay=7.5)
    assert not policy.allows(elapsed=3.0, delay=7.5)


def test_retry_policy_refuses_inconsistent_intervals() -> None:
    with pytest.raises(ValueError, match="max_interval"):
        RetryPolicy(5.0, 1.0, 10.0)
    with pytest.raises(ValueError, match="initial"):
        RetryPolicy(0.0, 1.0, 10.0)


def test_queue_is_bounded_by_payload_bytes() -> None:
    trace = kept_trace(0, 3)
    queue = TraceQueue(max_bytes=2 * len(trace.payload))
    assert queue.put(trace, 0.0)
    assert queue.put(kept_trace(1, 3), 1.0)
    assert not queue.put(kept_trace(2, 3), 2.0)
    assert (len(queue), queue.spans, queue.bytes) == (2, 6, 2 * len(trace.payload))
    assert queue.first_arrival() == 0.0


def test_pop_batch_keeps_traces_whole_and_in_order() -> None:
    queue = TraceQueue(max_bytes=1 << 20)
    for number, spans in enumerate([4, 4, 4, 50, 1]):
        queue.put(kept_trace(number, spans), float(number))
    assert [t.span_count for t in queue.pop_batch(max_spans=10, max_bytes=1 << 20)] == [4, 4]
    assert [t.span_count for t in queue.pop_batch(max_spans=10, max_bytes=1 << 20)] == [4]
    # A trace over the span limit still travels, alone.
    assert [t.span_count for t in queue.pop_batch(max_spans=10, max_bytes=1 << 20)] == [50]
    assert queue.first_arrival() == 4.0
    assert [t.span_count for t in queue.pop_all()] == [1]
    assert (queue.spans, queue.bytes) == (0, 0)


def test_pop_batch_respects_the_byte_limit() -> None:
    queue = TraceQueue(max_bytes=1 << 20)
    traces = [kept_trace(n, 2) for n in range(4)]
    for trace in traces:
        queue.put(trace, 0.0)
    size = len(traces[0].payload)
    assert len(queue.pop_batch(max_spans=100, max_bytes=2 * size + 1)) == 2


def test_batched_payloads_concatenate_into_one_valid_request() -> None:
    traces = [kept_trace(n, n + 1) for n in range(4)]
    (request,) = build_requests(traces, max_bytes=1 << 20)
    decoded = ExportTraceServiceRequest.FromString(request.payload)
    assert len(decoded.resource_spans) == 4
    assert request.span_count == count_spans(request.payload) == 10


def test_a_lone_oversized_trace_is_split_into_counted_requests() -> None:
    trace = kept_trace(0, 40, padding=100)
    requests = build_requests([trace], max_bytes=1500)
    assert len(requests) > 1
    assert sum(r.span_count for r in requests) == 40
    assert all(r.span_count == count_spans(r.payload) for r in requests)
    arrived = set()
    for request in requests:
        decoded = ExportTraceServiceRequest.FromString(request.payload)
        arrived |= {
            (s.trace_id, s.span_id)
            for rs in decoded.resource_spans
            for ss in rs.scope_spans
            for s in ss.spans
        }
    assert arrived == expected_spans([trace]).keys()


def test_delivered_reads_partial_success() -> None:
    assert delivered(b"").verdict is Verdict.DELIVERED
    assert delivered(b"\xff").rejected_spans == 0
    body = bytes.fromhex("0a0808031204") + b"oops"
    result = delivered(body)
    assert (result.verdict, result.rejected_spans, result.message) == (
        Verdict.DELIVERED,
        3,
        "oops",
    )


def test_rate_limited_log_holds_back_repeats_and_says_how_many(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [0.0]
    limited = ThrottledLog(logging.getLogger("tests.export"), interval=10.0, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING):
        for n in range(5):
            limited.report("partial", "rejected %d", n)
        limited.report("other", "different kind")
        now[0] = 10.0
        limited.report("partial", "rejected %d", 99)
    assert [r.getMessage() for r in caplog.records] == [
        "rejected 0",
        "different kind",
        "rejected 99 (4 more like it not logged)",
    ]
