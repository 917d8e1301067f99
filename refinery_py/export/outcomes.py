"""How handed-over spans and export requests end, and the metrics that count them.

Every span offered to an exporter is counted exactly once, under one SpanOutcome; the sum over
outcomes equals the spans offered, which is what makes "never drops data silently" checkable.
"""

from __future__ import annotations

import enum

from refinery_py.telemetry import Metrics


class SpanOutcome(enum.StrEnum):
    """The `outcome` label of `refinery_export_spans`."""

    SENT = "sent"
    REJECTED = "rejected"
    """Refused by the backend: a non-retryable status, or partial success's rejected spans."""
    DROPPED_QUEUE_FULL = "dropped_queue_full"
    DROPPED_RETRIES_EXHAUSTED = "dropped_retries_exhausted"
    DROPPED_SHUTDOWN = "dropped_shutdown"
    """Still queued or in flight when close() ran out of time, or offered after close()."""
    SPILLED = "spilled"
    """Not delivered before shutdown, and written to the spill directory for the next start."""


class RequestOutcome(enum.StrEnum):
    """The `outcome` label of `refinery_export_requests` (one count per attempt)."""

    SENT = "sent"
    PARTIAL_SUCCESS = "partial_success"
    RETRYABLE_FAILURE = "retryable_failure"
    REJECTED = "rejected"


class ExportLedger:
    """One exporter's view of the export metrics, with its label children bound once.

    Binding up front keeps `labels()` lookups off the per-trace path.
    """

    def __init__(self, metrics: Metrics, exporter: str) -> None:
        self._spans = {
            outcome: metrics.export_spans.labels(exporter=exporter, outcome=outcome.value)
            for outcome in SpanOutcome
        }
        self._requests = {
            outcome: metrics.export_requests.labels(exporter=exporter, outcome=outcome.value)
            for outcome in RequestOutcome
        }
        self._retries = metrics.export_retries.labels(exporter=exporter)
        self._queue_spans = metrics.export_queue_spans.labels(exporter=exporter)
        self._queue_bytes = metrics.export_queue_bytes.labels(exporter=exporter)
        self._latency = metrics.export_latency.labels(exporter=exporter)

    def spans(self, outcome: SpanOutcome, count: int) -> None:
        """Record that `count` spans ended with `outcome`."""
        if count > 0:
            self._spans[outcome].inc(count)

    def request(self, outcome: RequestOutcome, seconds: float) -> None:
        """Record one finished attempt and how long it took."""
        self._requests[outcome].inc()
        self._latency.observe(seconds)

    def retry(self) -> None:
        """Record that a failed attempt will be made again."""
        self._retries.inc()

    def queued(self, spans: int, size: int) -> None:
        """Publish what is waiting in the queue now."""
        self._queue_spans.set(spans)
        self._queue_bytes.set(size)
