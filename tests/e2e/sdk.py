"""The OpenTelemetry Python SDK as an application would use it, pointed at refinery_py."""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager

from opentelemetry import trace as trace_api
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
    OTLPSpanExporter as GrpcSpanExporter,
)
from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
    OTLPSpanExporter as HttpSpanExporter,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.id_generator import IdGenerator, RandomIdGenerator


def exporter_for(protocol: str, endpoint: str) -> SpanExporter:
    if protocol == "grpc":
        return GrpcSpanExporter(endpoint=endpoint, insecure=True, timeout=10)
    return HttpSpanExporter(endpoint=endpoint, timeout=10)


class SeededIdGenerator(IdGenerator):
    """Trace and span IDs from a seeded generator: the same IDs, so the same sampling, each run."""

    def __init__(self, seed: int) -> None:
        self._rng = random.Random(seed)

    def generate_span_id(self) -> int:
        return self._rng.getrandbits(64) or 1

    def generate_trace_id(self) -> int:
        return self._rng.getrandbits(128) or 1


@contextmanager
def tracer_provider(
    protocol: str, endpoint: str, service: str = "shop", seed: int | None = None
) -> Iterator[TracerProvider]:
    provider = TracerProvider(
        resource=Resource.create({"service.name": service, "deployment.environment.name": "test"}),
        id_generator=RandomIdGenerator() if seed is None else SeededIdGenerator(seed),
    )
    provider.add_span_processor(
        BatchSpanProcessor(exporter_for(protocol, endpoint), schedule_delay_millis=50)
    )
    try:
        yield provider
    finally:
        provider.shutdown()


def trace_id_of(span: trace_api.Span) -> str:
    return format(span.get_span_context().trace_id, "032x")
