"""The OTLP exporter: a bounded queue, a batcher, and a few requests in flight."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import time
from collections.abc import Mapping
from typing import Literal

from refinery_py.export.backoff import RetryPolicy
from refinery_py.export.batch import build_requests, count_spans
from refinery_py.export.delivery import Delivery, Unsettled
from refinery_py.export.grpc_transport import GrpcTransport
from refinery_py.export.http_transport import HttpTransport
from refinery_py.export.outcomes import ExportLedger, SpanOutcome
from refinery_py.export.spill import Spill, SpilledPayload
from refinery_py.export.trace_queue import TraceQueue
from refinery_py.export.transport import ClientTls, Transport
from refinery_py.model import EncodedSpans
from refinery_py.model.addresses import parse_endpoint
from refinery_py.telemetry import Metrics
from refinery_py.telemetry.throttled_log import ThrottledLog

logger = logging.getLogger(__name__)

ExportProtocol = Literal["grpc", "http"]
Compression = Literal["gzip", "none"]

MiB = 1024 * 1024

FAILING_BACKEND_GRACE = 5.0
"""At shutdown, seconds of nothing but failures after which the exporter stops waiting for the
backend and keeps (spills) or drops what is left."""


class OtlpExporter:
    """Sends kept traces to an OTLP backend over gRPC or HTTP (a `TraceExporter`).

    `offer` never waits: it appends to a queue bounded by `queue_max_bytes` of payload, or drops
    the trace and counts `dropped_queue_full`. A background batcher cuts a batch when the queue
    holds `batch_max_spans` spans or `batch_max_bytes` bytes, or `batch_timeout` seconds after the
    batch's first trace arrived. A trace is never divided between batches unless it alone is over
    `batch_max_bytes`, in which case it is split into several requests. Up to `concurrency`
    requests are in flight; while all are busy the queue absorbs the difference, then drops.
    Retries follow `RetryPolicy` (see there), bounded by `retry_max_elapsed` per request. A
    request of several traces that the backend refuses as invalid is sent again in halves, down
    to the traces it refuses (see `Delivery`).

    Every span offered ends counted under exactly one outcome of `refinery_export_spans`: `sent`,
    `rejected`, `dropped_queue_full`, `dropped_retries_exhausted`, `spilled` (kept on disk at
    shutdown for the next start, see `spill`) or `dropped_shutdown`.

    Defaults follow the OpenTelemetry Collector (8192-span batches, 5 s initial and 30 s maximum
    backoff, a 300 s retry budget) except the timeout: 0, because whatever is offered without an
    await in between (a decision tick's kept traces) is already queued when the batcher runs.
    `batch_max_bytes` stays under the 4 MiB gRPC servers accept by default. `rng` drives the
    jitter; seed it for reproducible waits.
    """

    def __init__(
        self,
        endpoint: str,
        *,
        metrics: Metrics,
        name: str = "otlp",
        protocol: ExportProtocol = "grpc",
        headers: Mapping[str, str] | None = None,
        compression: Compression = "gzip",
        timeout: float = 10.0,
        insecure: bool = False,
        batch_max_spans: int = 8192,
        batch_max_bytes: int = 3 * MiB,
        batch_timeout: float = 0.0,
        queue_max_bytes: int = 256 * MiB,
        concurrency: int = 4,
        retry_initial_interval: float = 5.0,
        retry_max_interval: float = 30.0,
        retry_max_elapsed: float = 300.0,
        rng: random.Random | None = None,
        spill: Spill | None = None,
        tls: ClientTls | None = None,
    ) -> None:
        if batch_max_spans <= 0 or batch_max_bytes <= 0:
            raise ValueError("batch_max_spans and batch_max_bytes must be positive")
        if batch_timeout < 0:
            raise ValueError("batch_timeout must not be negative")
        if concurrency <= 0:
            raise ValueError("concurrency must be at least 1")
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self.name = name
        self._transport = _make_transport(
            endpoint,
            protocol=protocol,
            headers=dict(headers or {}),
            compression=compression,
            timeout=timeout,
            insecure=insecure,
            tls=tls,
        )
        self._ledger = ExportLedger(metrics, name)
        policy = RetryPolicy(retry_initial_interval, retry_max_interval, retry_max_elapsed)
        self._delivery = Delivery(
            self._transport, policy, self._ledger, rng or random.Random(), name
        )
        self._queue = TraceQueue(queue_max_bytes)
        self._batch_max_spans = batch_max_spans
        self._batch_max_bytes = batch_max_bytes
        self._batch_timeout = batch_timeout
        self._slots = asyncio.Semaphore(concurrency)
        self._wakeup = asyncio.Event()
        self._in_flight: set[asyncio.Task[None]] = set()
        self._sending_spans = 0
        self._sending_bytes = 0
        """Spans and bytes of the batches being sent: still waiting as far as the metrics go (a
        worker killed now loses them, and its supervisor counts its loss from those gauges)."""
        self._batcher: asyncio.Task[None] | None = None
        self._closing = False
        self._closed = False
        self._dropped = 0
        self._log = ThrottledLog(logger, interval=10.0)
        self._spill = spill
        self._undelivered: list[EncodedSpans] = []
        """Batches a shutdown cut off before any of their spans were delivered."""

    @property
    def queued_bytes(self) -> int:
        """Payload bytes waiting in the queue."""
        return self._queue.bytes

    @property
    def max_bytes(self) -> int:
        """The queue's bound."""
        return self._queue.max_bytes

    def offer(self, trace: EncodedSpans) -> None:
        """Queue `trace` for export, or count it dropped (queue full, or after close())."""
        if self._closing:
            self._ledger.spans(SpanOutcome.DROPPED_SHUTDOWN, trace.span_count)
            return
        queue = self._queue
        if not queue.put(trace, time.monotonic()):
            self._ledger.spans(SpanOutcome.DROPPED_QUEUE_FULL, trace.span_count)
            self._dropped += trace.span_count
            self._log.report(
                "queue_full",
                "exporter %s: queue full (%d bytes); dropped a trace of %d spans "
                "(%d spans dropped so far)",
                self.name,
                queue.max_bytes,
                trace.span_count,
                self._dropped,
            )
            return
        self._publish_queue()
        # Wake the batcher only when its answer can change: a first trace starts a batch's
        # timer, a full batch is ready now. Waking it per trace would cost a task switch each.
        if len(queue) == 1 or self._batch_is_full():
            self._wakeup.set()

    async def start(self) -> None:
        """Open the transport and start the batcher."""
        if self._batcher is not None or self._closed:
            return
        await self._transport.open()
        self._restore()
        self._batcher = asyncio.create_task(self._run_batcher(), name=f"{self.name}-batcher")

    def _restore(self) -> None:
        """Queue what an earlier run spilled, first, as far as the queue has room."""
        if self._spill is None:
            return
        restored = 0
        for path in self._spill.claim():
            try:
                payload = path.read_bytes()
                item = SpilledPayload(payload, count_spans(payload), path)
            except (OSError, ValueError) as error:
                logger.error("exporter %s: unreadable spill file %s: %s", self.name, path, error)
                continue
            if not self._queue.put(item, time.monotonic()):
                self._spill.release(path)
                break
            restored += item.span_count
        if restored:
            self._publish_queue()
            logger.info(
                "exporter %s: sending %d spans kept from before the last shutdown (%s)",
                self.name,
                restored,
                self._spill.directory,
            )

    async def close(self, timeout: float) -> None:
        """Stop accepting, send what is queued and in flight, and release the transport.

        Waits at most `timeout` seconds; spans still queued or in flight then (including any in
        a retry backoff) are counted `dropped_shutdown`, as are spans queued by an exporter that
        was never started. A second call does nothing.
        """
        if self._closed:
            return
        self._closing = True
        self._wakeup.set()
        try:
            if self._batcher is not None:
                await self._drain_within(timeout)
        finally:
            self._keep_or_drop([*self._queue.pop_all(), *self._undelivered])
            self._undelivered = []
            self._ledger.queued(0, 0)
            self._closed = True
            if self._batcher is not None:
                await self._transport.close()

    def _keep_or_drop(self, left: list[EncodedSpans]) -> None:
        """What shutdown could not deliver: spilled to disk for the next start when there is a
        spill directory with room, else dropped; counted and logged either way."""
        spans = sum(t.span_count for t in left)
        if not spans:
            return
        spilled_spans = spilled_bytes = 0
        fresh = [t for t in left if not isinstance(t, SpilledPayload)]
        if self._spill is not None:
            for item in left:
                if isinstance(item, SpilledPayload):
                    self._spill.release(item.path)  # its file is still there: hand it back
                    spilled_spans += item.span_count
            try:
                written = self._spill.write((t.payload, t.span_count) for t in fresh)
            except OSError as error:
                logger.error("exporter %s: cannot spill to disk: %s", self.name, error)
                written = (0, 0)
            spilled_spans += written[0]
            spilled_bytes = written[1]
            self._ledger.spans(SpanOutcome.SPILLED, spilled_spans)
        self._ledger.spans(SpanOutcome.DROPPED_SHUTDOWN, spans - spilled_spans)
        logger.warning(
            "exporter %s: %d spans could not be delivered before shutdown: %d kept on disk "
            "for the next start%s, %d dropped (refinery_export_spans_total)",
            self.name,
            spans,
            spilled_spans,
            f" ({self._spill.directory}, {spilled_bytes} bytes)" if self._spill else "",
            spans - spilled_spans,
        )

    async def _drain_within(self, timeout: float) -> None:
        drain = asyncio.create_task(self._drain(), name=f"{self.name}-drain")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        why = f"after {timeout:.3g}s"
        try:
            while not drain.done() and loop.time() < deadline:
                await asyncio.wait({drain}, timeout=0.1)
                failing = self._delivery.failing_for()
                if failing is not None and failing > FAILING_BACKEND_GRACE:
                    # A backend that has failed every attempt for a while will not recover in
                    # the seconds a shutdown has: keep what is left rather than wait it out.
                    why = f"the backend has failed for {failing:.0f}s"
                    break
        finally:
            # Also reached if close() itself is cancelled: nothing may be left sending.
            if not drain.done():
                await self._abandon(drain)
                logger.warning("exporter %s: close gave up (%s)", self.name, why)

    async def _abandon(self, drain: asyncio.Task[None]) -> None:
        tasks = [drain, *self._in_flight]
        if self._batcher is not None:
            tasks.append(self._batcher)
        for task in tasks:
            task.cancel()
        # Sending tasks count their unsent spans as they unwind from the cancellation.
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _drain(self) -> None:
        if self._batcher is not None:
            await asyncio.wait({self._batcher})
        while self._in_flight:
            await asyncio.wait(set(self._in_flight))

    async def _run_batcher(self) -> None:
        """Cut batches and hand each to a sending task, holding a concurrency slot per task."""
        while True:
            await self._slots.acquire()
            if not await self._batch_ready():
                self._slots.release()
                return
            traces = self._queue.pop_batch(self._batch_max_spans, self._batch_max_bytes)
            total = sum(trace.span_count for trace in traces)
            size = sum(len(trace.payload) for trace in traces)
            self._sending_spans += total
            self._sending_bytes += size
            self._publish_queue()
            unsent = Unsettled(total, total)
            task = asyncio.create_task(self._send(traces, unsent), name=f"{self.name}-send")
            self._in_flight.add(task)
            task.add_done_callback(functools.partial(self._sent, traces, unsent, size))

    async def _batch_ready(self) -> bool:
        """Wait until a batch should be cut; False when closing with nothing left to send."""
        queue = self._queue
        while True:
            # Cleared before checking, with no await in between, so no wake-up is lost.
            self._wakeup.clear()
            if not queue:
                if self._closing:
                    return False
                await self._wakeup.wait()
                continue
            if self._closing or self._batch_is_full():
                return True
            remaining = queue.first_arrival() + self._batch_timeout - time.monotonic()
            if remaining <= 0:
                return True
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await self._wakeup.wait()

    def _batch_is_full(self) -> bool:
        queue = self._queue
        return queue.spans >= self._batch_max_spans or queue.bytes >= self._batch_max_bytes

    async def _send(self, traces: list[EncodedSpans], unsent: Unsettled) -> None:
        try:
            for request in build_requests(traces, self._batch_max_bytes):
                await self._delivery.deliver(request, unsent)
        except Exception:
            # Only a payload the codec cannot re-frame gets here; the backend would refuse it too.
            logger.exception("exporter %s: could not build a request", self.name)
            self._ledger.spans(SpanOutcome.REJECTED, unsent.spans)
            unsent.spans = 0
        if self._spill is not None:
            for trace in traces:
                if isinstance(trace, SpilledPayload):
                    self._spill.done(trace.path)

    def _sent(
        self, traces: list[EncodedSpans], unsent: Unsettled, size: int, task: asyncio.Task[None]
    ) -> None:
        # Counted here rather than in `_send`: a task cancelled before its first step never runs
        # its body, and its spans must still end in an outcome. A batch cut off before any of it
        # was delivered can still be kept whole (see close); a partly delivered one cannot.
        if unsent.spans:
            if unsent.spans == unsent.total:
                self._undelivered.extend(traces)
            else:
                self._ledger.spans(SpanOutcome.DROPPED_SHUTDOWN, unsent.spans)
            unsent.spans = 0
        self._in_flight.discard(task)
        self._sending_spans -= unsent.total
        self._sending_bytes -= size
        self._publish_queue()
        self._slots.release()

    def _publish_queue(self) -> None:
        """What waits to be delivered: the queue and the batches being sent."""
        self._ledger.queued(
            self._queue.spans + self._sending_spans, self._queue.bytes + self._sending_bytes
        )


def _make_transport(
    endpoint: str,
    *,
    protocol: ExportProtocol,
    headers: dict[str, str],
    compression: Compression,
    timeout: float,
    insecure: bool,
    tls: ClientTls | None = None,
) -> Transport:
    if compression not in ("gzip", "none"):
        raise ValueError(f"compression must be 'gzip' or 'none', not {compression!r}")
    target = parse_endpoint(endpoint)
    gzip = compression == "gzip"
    if protocol == "grpc":
        return GrpcTransport(
            target, headers=headers, gzip=gzip, timeout=timeout, insecure=insecure, tls=tls
        )
    if protocol == "http":
        return HttpTransport(target, headers=headers, gzip=gzip, timeout=timeout, tls=tls)
    raise ValueError(f"protocol must be 'grpc' or 'http', not {protocol!r}")
