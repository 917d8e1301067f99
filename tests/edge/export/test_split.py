"""One trace a backend refuses costs only itself, not the traces that shared its request.

The backend here is a real loopback OTLP server (gRPC or HTTP) whose parser stops at a nesting
depth, as upb-based backends stop at 100 levels: a span whose attribute value is nested deeper
than it accepts makes it refuse the whole request as invalid. (Its limit is 32 here, below
refinery_py's own door, which applies upb's 100, so such a span can reach it at all.)
"""

from __future__ import annotations

from google.protobuf.message import Message
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue

from refinery_py.model import KeptTrace
from refinery_py.telemetry import Metrics

from .backends import RecordingBackend
from .builders import kept_trace
from .harness import counter, exporter_for, span_outcomes

BACKEND_DEPTH_LIMIT = 32


def _depth(message: Message) -> int:
    """How many levels of messages nest below `message`."""
    deepest = 0
    for field, value in message.ListFields():
        if field.message_type is None:
            continue
        for item in value if field.is_repeated else (value,):
            deepest = max(deepest, 1 + _depth(item))
    return deepest


def _depth_limit(request: ExportTraceServiceRequest) -> str | None:
    depth = _depth(request)
    if depth > BACKEND_DEPTH_LIMIT:
        return f"message nesting {depth} exceeds the limit of {BACKEND_DEPTH_LIMIT}"
    return None


def _deeply_nested_trace(number: int, levels: int) -> KeptTrace:
    """A one-span trace whose span has an attribute value `levels` arrays deep."""
    trace = kept_trace(number, 1)
    request = ExportTraceServiceRequest.FromString(trace.payload)
    value = AnyValue(string_value="x")
    for _ in range(levels):
        value = AnyValue(array_value=ArrayValue(values=[value]))
    span = request.resource_spans[0].scope_spans[0].spans[0]
    span.attributes.append(KeyValue(key="deep", value=value))
    return KeptTrace(
        trace_id=trace.trace_id,
        payload=request.SerializeToString(),
        span_count=1,
        decision=trace.decision,
        send_reason=trace.send_reason,
        customer=trace.customer,
    )


async def test_only_the_trace_the_backend_refuses_is_rejected(
    backend: RecordingBackend, metrics: Metrics
) -> None:
    backend.check = _depth_limit
    good = [kept_trace(n, 12) for n in range(36)]
    bad = _deeply_nested_trace(36, levels=20)
    assert _depth_limit(ExportTraceServiceRequest.FromString(bad.payload)) is not None
    exporter = exporter_for(backend, metrics, batch_max_spans=100_000)
    await exporter.start()
    for trace in [*good[:20], bad, *good[20:]]:  # offered together: one batch, one request
        exporter.offer(trace)
    await exporter.close(timeout=10)

    outcomes = span_outcomes(metrics)
    assert outcomes["sent"] == 36 * 12
    assert outcomes["rejected"] == 1
    assert sum(outcomes.values()) == 36 * 12 + 1
    arrived = [(a.span.trace_id, a.span.span_id) for a in backend.arrived()]
    assert sorted(arrived) == sorted(
        (trace.trace_id, (index + 1).to_bytes(8, "big"))
        for trace in good
        for index in range(trace.span_count)
    )
    # Halving down to the bad one (the 21st of 37): refused with 37, 19, 9, 4, 2 and 1 traces;
    # the other half at each level went through.
    assert (backend.refused, backend.attempts) == (6, 11)
    assert counter(metrics, "refinery_export_requests", outcome="rejected") == 6
    assert counter(metrics, "refinery_export_requests", outcome="sent") == 5


async def test_a_backend_refusing_everything_is_asked_about_each_trace_once_at_most(
    backend: RecordingBackend, metrics: Metrics
) -> None:
    backend.check = lambda request: "refused"
    traces = [kept_trace(n, 2) for n in range(8)]
    exporter = exporter_for(backend, metrics, batch_max_spans=100_000)
    await exporter.start()
    for trace in traces:
        exporter.offer(trace)
    await exporter.close(timeout=10)

    assert span_outcomes(metrics)["rejected"] == 16
    assert sum(span_outcomes(metrics).values()) == 16
    assert backend.refused == 2 * len(traces) - 1  # every node of the halving tree


async def test_spans_of_parts_already_sent_are_not_counted_again_when_close_gives_up(
    backend: RecordingBackend, metrics: Metrics
) -> None:
    # The whole request is refused as invalid; its first half goes through; the second half
    # is still at the backend when close() gives up and cancels the sending task.
    invalid = "refused"
    backend.check = lambda request: invalid if backend.attempts == 1 else None
    backend.hold_after = 2
    exporter = exporter_for(backend, metrics, batch_max_spans=100_000)
    await exporter.start()
    for n in range(4):
        exporter.offer(kept_trace(n, 3))
    await backend.wait_for("spans", 6)
    await backend.wait_for("in_flight", 1)
    await exporter.close(timeout=0.05)

    outcomes = span_outcomes(metrics)
    assert (outcomes["sent"], outcomes["dropped_shutdown"]) == (6, 6)
    assert sum(outcomes.values()) == 12
