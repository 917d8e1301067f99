"""Building exporters against the loopback backends, and reading their metrics back."""

from __future__ import annotations

import random
from typing import Any

from refinery_py.export import OtlpExporter, SpanOutcome
from refinery_py.telemetry import Metrics

from .backends import GrpcBackend, RecordingBackend

SHORT: dict[str, Any] = {
    "batch_timeout": 0.01,
    "retry_initial_interval": 0.01,
    "retry_max_interval": 0.02,
    "retry_max_elapsed": 5.0,
}
"""Intervals small enough that tests finish quickly; behaviour, not timing, is asserted."""


def protocol_of(backend: RecordingBackend) -> str:
    return "grpc" if isinstance(backend, GrpcBackend) else "http"


def exporter_for(backend: RecordingBackend, metrics: Metrics, **settings: Any) -> OtlpExporter:
    """An exporter aimed at `backend`, with short intervals unless `settings` override them."""
    options: dict[str, Any] = {
        **SHORT,
        "protocol": protocol_of(backend),
        "insecure": True,
        "rng": random.Random(7),
    }
    options.update(settings)
    return OtlpExporter(backend.endpoint, metrics=metrics, **options)


def span_outcomes(metrics: Metrics, exporter: str = "otlp") -> dict[str, float]:
    """`refinery_export_spans` by outcome for one exporter (every outcome present)."""
    return {
        outcome.value: counter(
            metrics, "refinery_export_spans", exporter=exporter, outcome=outcome.value
        )
        for outcome in SpanOutcome
    }


def counter(metrics: Metrics, name: str, **labels: str) -> float:
    """A counter's value; `exporter` defaults to "otlp"."""
    labels.setdefault("exporter", "otlp")
    return metrics.registry.get_sample_value(f"{name}_total", labels) or 0.0
