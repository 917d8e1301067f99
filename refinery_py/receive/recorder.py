"""Record accepted traffic as OTLP JSON lines, the format `refinery-py rules test` replays.

Every accepted batch (the spans that passed validation, with their resources and scopes) is
re-framed into one `ExportTraceServiceRequest` and written as one line of OTLP JSON — the
OpenTelemetry Collector file exporter's format. The event loop only enqueues; a writer thread
frames, converts and writes, so recording never delays a response. Files rotate at
`max_file_size`; the oldest are deleted to stay under `max_total_size`. When the queue is full a
batch is not recorded and the drop is counted.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from pathlib import Path
from typing import BinaryIO

from refinery_py.model import SpanBatch
from refinery_py.otlp.frame import frame_spans
from refinery_py.otlp.json import request_to_json
from refinery_py.telemetry import Metrics

log = logging.getLogger(__name__)

FILE_PREFIX = "traces-"
FILE_SUFFIX = ".jsonl"


class Recorder:
    """A bounded, threaded writer of accepted batches to rotating JSON lines files."""

    def __init__(
        self,
        directory: Path,
        *,
        metrics: Metrics,
        max_file_bytes: int = 64 << 20,
        max_total_bytes: int = 1 << 30,
        queue_max_bytes: int = 64 << 20,
        file_prefix: str = FILE_PREFIX,
    ) -> None:
        self.directory = directory
        self.file_prefix = file_prefix
        self.max_file_bytes = max_file_bytes
        self.max_total_bytes = max_total_bytes
        self.queue_max_bytes = queue_max_bytes
        self._metrics = metrics
        self._queue: queue.SimpleQueue[SpanBatch | None] = queue.SimpleQueue()
        self._queued_bytes = 0
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._write_loop, name="recorder", daemon=True)
        self._file_number = 0
        self._closed = False

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._thread.start()

    def record(self, batch: SpanBatch) -> None:
        """Queue a batch for writing; drop and count it if the queue is full. Never blocks."""
        size = batch.byte_size
        with self._lock:
            full = self._closed or self._queued_bytes + size > self.queue_max_bytes
            if not full:
                self._queued_bytes += size
        if full:
            outcome = "dropped_shutdown" if self._closed else "dropped_queue_full"
            self._metrics.record_spans.labels(outcome).inc(batch.span_count)
            return
        self._queue.put(batch)

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued (up to `timeout` seconds), then stop the writer thread."""
        with self._lock:
            self._closed = True
        self._queue.put(None)
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _write_loop(self) -> None:
        output: BinaryIO | None = None
        written = 0
        try:
            while True:
                batch = self._queue.get()
                if batch is None:
                    return
                with self._lock:
                    self._queued_bytes -= batch.byte_size
                line = request_to_json(frame_spans(batch.spans, batch.origins)) + b"\n"
                try:
                    if output is None or (written + len(line) > self.max_file_bytes and written):
                        if output is not None:
                            output.close()
                        output, written = self._open_next(), 0
                        self._enforce_total()
                    output.write(line)
                    output.flush()
                except OSError as exc:
                    self._metrics.record_spans.labels("dropped_write_error").inc(batch.span_count)
                    log.warning("recording to %s failed: %s", self.directory, exc)
                    continue
                written += len(line)
                self._metrics.record_spans.labels("written").inc(batch.span_count)
                self._metrics.record_bytes.inc(len(line))
        finally:
            if output is not None:
                output.close()

    def _open_next(self) -> BinaryIO:
        self._file_number += 1
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        path = self.directory / f"{self.file_prefix}{stamp}-{self._file_number:04d}{FILE_SUFFIX}"
        return path.open("ab")

    def _enforce_total(self) -> None:
        """Delete the oldest recordings until the total is within `max_total_bytes`."""
        files = sorted(
            (p for p in self.directory.glob(f"{FILE_PREFIX}*{FILE_SUFFIX}") if p.is_file()),
            key=lambda p: (p.stat().st_mtime, p.name),
        )
        total = sum(p.stat().st_size for p in files)
        for path in files[:-1]:  # never the file just opened
            if total <= self.max_total_bytes:
                break
            total -= path.stat().st_size
            path.unlink(missing_ok=True)
