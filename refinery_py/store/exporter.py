"""The embedded store as a `TraceExporter`: a bounded queue in front of one writer thread.

SQLite calls block, so nothing touches the file on the event loop. `offer` only appends to a
queue under a lock that the writer holds for a few microseconds at a time; the writer thread
takes everything waiting (up to a batch's limits), writes it in one transaction and comes back
for more, so batches grow by themselves when traffic does and stay small when it is quiet.
Between batches, and at least every `retention_interval` seconds, it enforces retention.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

from refinery_py.model import KeptTrace
from refinery_py.store.ledger import StoreLedger
from refinery_py.store.schema import open_for_writing
from refinery_py.store.writer import StoreWriter
from refinery_py.telemetry import Metrics
from refinery_py.telemetry.throttled_log import ThrottledLog

log = logging.getLogger(__name__)

MiB = 1024 * 1024


class StoreExporter:
    """Writes kept traces to the SQLite store at `path` (see `refinery_py.store`).

    `offer` never blocks: the queue holds at most `queue_max_bytes` of payload, and a trace that
    does not fit is dropped and counted (`dropped_queue_full`). `close` writes what is queued
    within its timeout and counts the rest `dropped_shutdown`.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        metrics: Metrics,
        retention: float = 86400.0,
        max_size: int = 1024 * MiB,
        queue_max_bytes: int = 64 * MiB,
        batch_max_traces: int = 2000,
        batch_max_bytes: int = 16 * MiB,
        retention_interval: float = 1.0,
        clock: Callable[[], float] = time.time,
        reports_file: bool = True,
    ) -> None:
        if queue_max_bytes <= 0 or batch_max_traces <= 0 or batch_max_bytes <= 0:
            raise ValueError("queue and batch limits must be positive")
        self.path = Path(path)
        self.retention = retention
        self.max_size = max_size
        self.clock = clock
        self._ledger = StoreLedger(metrics)
        self._ledger.reports_file = reports_file
        self._queue: deque[KeptTrace] = deque()
        self._queued_bytes = 0
        self._queued_spans = 0
        self._queue_max_bytes = queue_max_bytes
        self._batch_max_traces = batch_max_traces
        self._batch_max_bytes = batch_max_bytes
        self._retention_interval = retention_interval
        self._ready = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closing = False
        self._abort = False
        self._closed = False
        self._warnings = ThrottledLog(log)

    @property
    def queued_bytes(self) -> int:
        """Payload bytes waiting to be written."""
        return self._queued_bytes

    def offer(self, trace: KeptTrace) -> None:
        """Queue `trace` for the writer, or count it dropped (queue full, or after close())."""
        if self._closing:
            self._ledger.dropped("shutdown", 1, trace.span_count)
            return
        size = len(trace.payload)
        with self._ready:
            full = self._queued_bytes + size > self._queue_max_bytes
            if not full:
                self._queue.append(trace)
                self._queued_bytes += size
                self._queued_spans += trace.span_count
                self._ready.notify()
        if full:
            self._ledger.dropped("queue_full", 1, trace.span_count)

    async def start(self) -> None:
        """Open (or create) the store file and start the writer thread.

        Raises `StoreUnavailable` (an OSError) when the file cannot be opened or used.
        """
        if self._thread is not None or self._closed:
            return
        conn = await asyncio.to_thread(open_for_writing, self.path)
        try:
            writer = await asyncio.to_thread(
                StoreWriter,
                conn,
                retention=self.retention,
                max_bytes=self.max_size,
                clock=self.clock,
            )
        except BaseException:
            conn.close()
            raise
        self._thread = threading.Thread(
            target=self._run, args=(writer,), name="store-writer", daemon=True
        )
        self._thread.start()

    async def close(self, timeout: float) -> None:
        """Stop accepting, write what is queued (for at most `timeout` seconds), close the file.

        Traces still queued when time is up (or queued by a store never started) are counted
        `dropped_shutdown`. A second call does nothing.
        """
        if self._closed:
            return
        self._closing = True
        thread = self._thread
        if thread is not None:
            with self._ready:
                self._ready.notify()
            await asyncio.to_thread(thread.join, timeout)
            if thread.is_alive():
                log.warning("store: close gave up writing after %.3gs", timeout)
                with self._ready:
                    self._abort = True
                    self._ready.notify()
                await asyncio.to_thread(thread.join)  # at most the batch being written
        with self._ready:
            left = list(self._queue)
            self._queue.clear()
            self._queued_bytes = self._queued_spans = 0
        self._ledger.dropped("shutdown", len(left), sum(t.span_count for t in left))
        self._ledger.queued(0, 0)
        self._closed = True

    # ---- the writer thread ------------------------------------------------------------------

    def _run(self, writer: StoreWriter) -> None:
        try:
            self._retain(writer)
            next_retention = time.monotonic() + self._retention_interval
            while True:
                batch = self._take_batch(next_retention)
                if batch is None:
                    return
                if batch:
                    self._write(writer, batch)
                if time.monotonic() >= next_retention:
                    self._retain(writer)
                    next_retention = time.monotonic() + self._retention_interval
        finally:
            writer.conn.close()

    def _take_batch(self, deadline: float) -> list[KeptTrace] | None:
        """The next batch; [] if `deadline` (monotonic) passes first; None: time to stop."""
        with self._ready:
            while not self._queue:
                if self._closing:
                    return None
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return []
                self._ready.wait(remaining)
            if self._abort:
                return None
            batch: list[KeptTrace] = []
            size = 0
            queue = self._queue
            while queue and len(batch) < self._batch_max_traces and size < self._batch_max_bytes:
                trace = queue.popleft()
                batch.append(trace)
                size += len(trace.payload)
                self._queued_spans -= trace.span_count
            self._queued_bytes -= size
            spans, queued = self._queued_spans, self._queued_bytes
        self._ledger.queued(spans, queued)
        return batch

    def _write(self, writer: StoreWriter, batch: list[KeptTrace]) -> None:
        started = time.perf_counter()
        try:
            outcome = writer.write(batch)
        except Exception:
            # A bug, not a database error (those are handled per trace inside write()).
            log.exception("store: writing a batch of %d traces failed", len(batch))
            self._ledger.dropped("write_error", len(batch), sum(t.span_count for t in batch))
            self._ledger.write_errors(1)
            return
        self._ledger.batch(outcome, time.perf_counter() - started, writer.rows)
        if outcome.failed_transactions:
            self._warnings.report(
                "write", "store: %d traces not written: %s", outcome.failed, outcome.last_error
            )
        if outcome.invalid:
            self._warnings.report(
                "invalid", "store: %d traces with unreadable payloads not written", outcome.invalid
            )

    def _retain(self, writer: StoreWriter) -> None:
        try:
            by_age, by_size = writer.enforce_retention()
            used = writer.used_bytes()
        except Exception as exc:
            self._ledger.write_errors(1)
            self._warnings.report("retention", "store: retention pass failed: %s", exc)
            return
        self._ledger.retention(by_age, by_size, writer.rows, used)
