"""Kept traces reach a real backend whole and unaltered, over both protocols."""

from __future__ import annotations

from collections import defaultdict

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from refinery_py.model import TraceExporter
from refinery_py.telemetry import Metrics

from .backends import RecordingBackend
from .builders import ArrivedSpan, SpanKey, expected_spans, kept_trace
from .harness import counter, exporter_for, span_outcomes


def _by_key(arrived: list[ArrivedSpan]) -> dict[SpanKey, ArrivedSpan]:
    keyed = {(a.span.trace_id, a.span.span_id): a for a in arrived}
    assert len(keyed) == len(arrived), "a span arrived twice"
    return keyed


async def test_every_span_arrives_intact_and_each_trace_in_one_request(
    backend: RecordingBackend, metrics: Metrics
) -> None:
    traces = [kept_trace(n, 1 + n % 5) for n in range(40)]
    total = sum(t.span_count for t in traces)
    exporter: TraceExporter = exporter_for(backend, metrics, batch_max_spans=25)
    await exporter.start()
    for trace in traces:
        exporter.offer(trace)
    await exporter.close(timeout=10)

    arrived = _by_key(backend.arrived())
    expected = expected_spans(traces)
    assert arrived.keys() == expected.keys()
    for key, want in expected.items():
        got = arrived[key]
        assert got.span == want.span
        assert got.resource == want.resource
        assert got.scope == want.scope
    requests_per_trace: dict[bytes, set[int]] = defaultdict(set)
    for (trace_id, _), span in arrived.items():
        requests_per_trace[trace_id].add(span.request_index)
    assert all(len(indexes) == 1 for indexes in requests_per_trace.values())
    spans_per_request = [
        sum(len(ss.spans) for rs in r.request.resource_spans for ss in rs.scope_spans)
        for r in backend.accepted
    ]
    assert len(spans_per_request) > 1
    assert max(spans_per_request) <= 25
    assert span_outcomes(metrics) == {
        "sent": total,
        "rejected": 0,
        "dropped_queue_full": 0,
        "dropped_retries_exhausted": 0,
        "spilled": 0,
        "dropped_shutdown": 0,
    }
    assert counter(metrics, "refinery_export_requests", outcome="sent") == len(backend.accepted)


async def test_a_lone_trace_leaves_after_batch_timeout_without_close(
    backend: RecordingBackend, metrics: Metrics
) -> None:
    exporter = exporter_for(backend, metrics, batch_timeout=0.01, batch_max_spans=10_000)
    await exporter.start()
    try:
        exporter.offer(kept_trace(0, 3))
        await backend.wait_for("spans", 3)
    finally:
        await exporter.close(timeout=10)
    assert span_outcomes(metrics)["sent"] == 3


async def test_with_no_batch_timeout_traces_offered_together_leave_in_one_request(
    backend: RecordingBackend, metrics: Metrics
) -> None:
    # The pipeline offers a tick's kept traces without yielding to the event loop; a zero
    # timeout must still send them as one request, not one request per trace.
    exporter = exporter_for(backend, metrics, batch_timeout=0.0, batch_max_spans=10_000)
    await exporter.start()
    try:
        for n in range(30):
            exporter.offer(kept_trace(n, 2))
        await backend.wait_for("spans", 60)
    finally:
        await exporter.close(timeout=10)
    assert len(backend.accepted) == 1
    assert span_outcomes(metrics)["sent"] == 60


async def test_close_flushes_traces_the_batch_timeout_would_still_hold(
    backend: RecordingBackend, metrics: Metrics
) -> None:
    traces = [kept_trace(n, 4) for n in range(10)]
    exporter = exporter_for(backend, metrics, batch_timeout=3600.0)
    await exporter.start()
    for trace in traces:
        exporter.offer(trace)
    await exporter.close(timeout=10)
    assert _by_key(backend.arrived()).keys() == expected_spans(traces).keys()
    assert span_outcomes(metrics)["sent"] == 40


async def test_a_trace_larger_than_batch_max_bytes_is_split_and_arrives_whole(
    backend: RecordingBackend, metrics: Metrics
) -> None:
    big = kept_trace(0, 60, padding=200)
    small = kept_trace(1, 2)
    assert len(big.payload) > 4 * 4000
    exporter = exporter_for(backend, metrics, batch_max_bytes=4000, batch_timeout=3600.0)
    await exporter.start()
    exporter.offer(big)
    exporter.offer(small)
    await exporter.close(timeout=10)

    arrived = _by_key(backend.arrived())
    assert arrived.keys() == expected_spans([big, small]).keys()
    big_requests = {a.request_index for (tid, _), a in arrived.items() if tid == big.trace_id}
    assert len(big_requests) >= 4
    for index in big_requests:
        request = backend.accepted[index].request
        assert isinstance(request, ExportTraceServiceRequest)
        assert request.ByteSize() <= 4000
    assert span_outcomes(metrics)["sent"] == 62


async def test_requests_in_flight_never_exceed_concurrency(
    backend: RecordingBackend, metrics: Metrics
) -> None:
    backend.gate.clear()
    exporter = exporter_for(backend, metrics, concurrency=2, batch_max_spans=1)
    await exporter.start()
    for n in range(8):
        exporter.offer(kept_trace(n, 1))
    await backend.wait_for("in_flight", 2)
    backend.gate.set()
    await exporter.close(timeout=10)
    assert backend.max_in_flight == 2
    assert len(backend.accepted) == 8
    assert span_outcomes(metrics)["sent"] == 8


async def test_headers_travel_with_every_request(
    backend: RecordingBackend, metrics: Metrics
) -> None:
    exporter = exporter_for(backend, metrics, headers={"X-Api-Key": "s3cret"})
    await exporter.start()
    exporter.offer(kept_trace(0, 2))
    await exporter.close(timeout=10)
    (received,) = backend.accepted
    headers = {key.lower(): value for key, value in received.headers.items()}
    assert headers["x-api-key"] == "s3cret"


async def test_offers_after_close_are_counted_as_shutdown_drops(
    backend: RecordingBackend, metrics: Metrics
) -> None:
    exporter = exporter_for(backend, metrics)
    await exporter.start()
    await exporter.close(timeout=10)
    exporter.offer(kept_trace(0, 5))
    assert span_outcomes(metrics)["dropped_shutdown"] == 5
    assert backend.attempts == 0
