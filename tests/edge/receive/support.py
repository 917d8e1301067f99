"""Test doubles and builders shared by the receiver tests."""

from __future__ import annotations

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from refinery_py.model import ACCEPTED, Admission, SpanBatch
from refinery_py.telemetry import Metrics
from tests.otlp_builders import request, span

EXPORT_METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


class FakeSink:
    """Records accepted batches; refuses the next `refuse_next` batches with a retry hint."""

    def __init__(self) -> None:
        self.batches: list[tuple[SpanBatch, str]] = []
        self.refuse_next = 0
        self.retry_after = 0.05
        self.offered = 0
        self.overloaded = False
        """While set, every request is refused before it is decoded (`refusal`)."""

    def refusal(self) -> Admission | None:
        if self.overloaded:
            return Admission(False, self.retry_after, "decisions are running behind")
        return None

    def accept(self, batch: SpanBatch, protocol: str) -> Admission:
        self.offered += 1
        if self.refuse_next:
            self.refuse_next -= 1
            return Admission(False, self.retry_after, "span buffer is full")
        self.batches.append((batch, protocol))
        return ACCEPTED

    @property
    def trace_ids(self) -> list[bytes]:
        return [trace_id for batch, _ in self.batches for trace_id in batch.trace_ids]

    @property
    def span_count(self) -> int:
        return sum(batch.span_count for batch, _ in self.batches)


class FrozenClock:
    """A clock that only moves when told, so log throttling is deterministic."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    """A metric's current value (0 when the labelled series does not exist yet)."""
    value = metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def sdk_spans(traces: int = 2, children: int = 2) -> list[ReadableSpan]:
    """Finished spans from the real SDK: per trace a root with `children` child spans.

    Children end first, so each trace's root comes last, as an SDK exports them.
    """
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "checkout"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("tests.edge.receive")
    for _ in range(traces):
        with tracer.start_as_current_span("GET /orders"):
            for index in range(children):
                with tracer.start_as_current_span(f"SELECT orders {index}"):
                    pass
    spans = list(memory.get_finished_spans())
    provider.shutdown()
    return spans


def trace_ids_of(spans: list[ReadableSpan]) -> list[bytes]:
    return [s.context.trace_id.to_bytes(16, "big") for s in spans if s.context is not None]


def roots_of(spans: list[ReadableSpan]) -> set[int]:
    return {index for index, s in enumerate(spans) if s.parent is None}


def good_request() -> bytes:
    """A valid request: one trace of a root and a child."""
    return request(span(7, 1), span(7, 2, 1)).SerializeToString()


def mixed_request() -> ExportTraceServiceRequest:
    """Three valid spans of two traces, plus a span with an all-zero and one with an 8-byte trace
    ID."""
    return request(
        span(1, 10),
        span(bytes(16), 11),
        span(1, 12, 10),
        span(b"\x01" * 8, 13),
        span(2, 20),
    )
