"""The store's metrics, with their label children bound once (the writer updates them per batch).

Every span offered to the store ends counted under one outcome of `refinery_export_spans`
(exporter="store"): `sent` (committed), `dropped_queue_full`, `dropped_shutdown`,
`dropped_write_error` (the transaction failed) or `rejected` (the payload is not a readable
OTLP request). `refinery_store_dropped_traces` counts the same drops in traces, by reason.
"""

from __future__ import annotations

from refinery_py.store.writer import WriteOutcome
from refinery_py.telemetry import Metrics

EXPORTER = "store"
"""The `exporter` label value of the export metrics for the embedded store."""


class StoreLedger:
    """The store's view of the metrics."""

    def __init__(self, metrics: Metrics) -> None:
        spans = metrics.export_spans
        self._sent = spans.labels(exporter=EXPORTER, outcome="sent")
        self._rejected = spans.labels(exporter=EXPORTER, outcome="rejected")
        self._dropped_spans = {
            reason: spans.labels(exporter=EXPORTER, outcome=f"dropped_{reason}")
            for reason in ("queue_full", "shutdown", "write_error")
        }
        self._dropped_traces = {
            reason: metrics.store_dropped.labels(reason=reason)
            for reason in ("queue_full", "shutdown", "write_error", "invalid")
        }
        self._inserted = metrics.store_writes.labels(kind="insert")
        self._appended = metrics.store_writes.labels(kind="append")
        self._write_errors = metrics.store_write_errors
        self._batch_seconds = metrics.store_batch_seconds
        self.reports_file = True
        """Whether this process reports the file's rows and bytes (one worker of a node does:
        the file is shared, so two would make every sum across workers count it twice)."""
        self._rows = metrics.store_rows
        self._bytes = metrics.store_bytes
        self._deleted_age = metrics.store_retention_deletions.labels(reason="age")
        self._deleted_size = metrics.store_retention_deletions.labels(reason="size")
        self._queue_spans = metrics.export_queue_spans.labels(exporter=EXPORTER)
        self._queue_bytes = metrics.export_queue_bytes.labels(exporter=EXPORTER)

    def dropped(self, reason: str, traces: int, spans: int) -> None:
        """Count traces not written: `queue_full` or `shutdown`."""
        if traces:
            self._dropped_traces[reason].inc(traces)
            self._dropped_spans[reason].inc(spans)

    def batch(self, outcome: WriteOutcome, seconds: float, rows: int) -> None:
        """Record one written batch."""
        self._inserted.inc(outcome.inserted)
        self._appended.inc(outcome.appended)
        self._sent.inc(outcome.written_spans)
        if outcome.invalid:
            self._dropped_traces["invalid"].inc(outcome.invalid)
            self._rejected.inc(outcome.invalid_spans)
        self.dropped("write_error", outcome.failed, outcome.failed_spans)
        self.write_errors(outcome.failed_transactions)
        self._batch_seconds.observe(seconds)
        if self.reports_file:
            self._rows.set(rows)

    def write_errors(self, count: int) -> None:
        if count:
            self._write_errors.inc(count)

    def retention(self, by_age: int, by_size: int, rows: int, used_bytes: int) -> None:
        """Record a retention pass and the store's size after it."""
        if by_age:
            self._deleted_age.inc(by_age)
        if by_size:
            self._deleted_size.inc(by_size)
        if self.reports_file:
            self._rows.set(rows)
            self._bytes.set(used_bytes)

    def queued(self, spans: int, size: int) -> None:
        """Publish what is waiting in the store's queue."""
        self._queue_spans.set(spans)
        self._queue_bytes.set(size)
