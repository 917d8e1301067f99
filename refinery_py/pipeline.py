"""The async driver: the one place that reads the clock and moves traces through the stages.

Receivers call `accept` synchronously on the event loop; a batch is buffered (or refused) before
the request is answered. A ticker decides the traces that are due, encodes the kept ones once and
offers them to every exporter. Everything runs on one event loop thread, so the buffer, the
decision cache and the samplers need no locks; each worker process has its own pipeline.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from refinery_py.assemble import BufferedTrace, DecisionCache, TraceBuffer
from refinery_py.assemble.buffer import LateSpans
from refinery_py.cluster.forwarding import Forwarder
from refinery_py.model import (
    ACCEPTED,
    Admission,
    Decision,
    KeptTrace,
    SendReason,
    SpanBatch,
    TraceExporter,
    TraceView,
)
from refinery_py.otlp.customer import customer_of
from refinery_py.otlp.frame import encode_kept_trace
from refinery_py.otlp.span_view import WireTrace
from refinery_py.receive.intake import PEER
from refinery_py.telemetry import Metrics

log = logging.getLogger(__name__)

DECIDE_ERROR_REASON = "decide_error"
"""Reason on traces kept because deciding them raised: refinery_py fails open, never drops."""


class Decider(Protocol):
    """The rules engine as the pipeline uses it."""

    def decide(self, trace: TraceView, now: float) -> Decision: ...

    def count_late(self, decision: Decision, span_count: int, now: float) -> None:
        """Let the sampler that made `decision` count spans that arrived after it."""
        ...

    def take_goal_reports(self) -> Sequence[GoalReport]:
        """Windows that ended with a sampler's goal out of reach, once each."""
        ...


class GoalReport(Protocol):
    @property
    def message(self) -> str: ...


class Pipeline:
    """Buffer → decide → export, driven by `accept` (receivers) and `run` (the ticker)."""

    def __init__(
        self,
        *,
        buffer: TraceBuffer,
        decider: Decider,
        exporters: Sequence[TraceExporter],
        metrics: Metrics,
        customer_fields: Sequence[str],
        max_memory: int,
        clock: Callable[[], float] = time.time,
        tick: float = 0.05,
        max_lag: float = 1.0,
        dry_run: bool = False,
        forwarder: Forwarder | None = None,
    ) -> None:
        self.buffer = buffer
        self.decider = decider
        self.exporters = list(exporters)
        self.metrics = metrics
        self.customer_fields = tuple(customer_fields)
        self.max_memory = max_memory
        metrics.buffer_budget_bytes.set(max_memory)
        self.clock = clock
        self.tick = tick
        self.max_lag = max_lag
        self.dry_run = dry_run
        """Export every trace, marked with what the rules decided, instead of dropping any."""
        self.forwarder = forwarder
        """Splits batches by owner when this process is one of several members (workers)."""
        self.lag = 0.0
        """How late the last tick ran: the sign of an event loop that cannot keep up."""
        self._stopping = asyncio.Event()
        self._last_error_log = 0.0

    @property
    def decisions(self) -> DecisionCache:
        return self.buffer.decisions

    # ---- intake -------------------------------------------------------------------------

    def accept(self, batch: SpanBatch, protocol: str) -> Admission:
        """Buffer a batch, or refuse all of it when the node is overloaded.

        With a forwarder, spans of traces another member owns are forwarded to it first (spans
        that came from a member, protocol `peer`, are ours by construction).
        """
        if self.lag > self.max_lag:
            return Admission(
                False,
                retry_after=max(1.0, self.lag),
                message=f"overloaded: decisions are running {self.lag:.1f}s behind",
            )
        if self.forwarder is not None and protocol != PEER:
            if self.forwarder.congested:
                return Admission(
                    False,
                    retry_after=1.0,
                    message="overloaded: spans for another worker or node are queueing up",
                )
            batch = self.forwarder.keep_local(batch)
            if not batch.spans:
                return ACCEPTED
        now = self.clock()
        arrivals = self.buffer.add(batch, now)
        for trace_id, late in arrivals.late.items():
            self._forward_late(trace_id, late, now)
        for trace in arrivals.over_limit:
            self._decide(trace, now)
        if self.buffer.memory > self.max_memory:
            # Decide the largest traces early rather than refuse: they are the likeliest to be
            # complete anyway, and ingest keeps flowing. Free a margin so this is not per-batch.
            for trace in self.buffer.eject(int(self.max_memory * 0.9)):
                self._decide(trace, now)
        return ACCEPTED

    def _forward_late(self, trace_id: bytes, late: LateSpans, now: float) -> None:
        decision = late.decided.decision
        # Throughput goals count what leaves, late spans included (Refinery #1567).
        self.decider.count_late(decision, len(late.spans), now)
        if not decision.keep and not self.dry_run:
            self.metrics.late_spans.labels("dropped").inc(len(late.spans))
            return
        self.metrics.late_spans.labels("kept" if decision.keep else "dropped").inc(len(late.spans))
        self._export(
            WireTrace(trace_id, late.spans, late.origins, -1), decision, SendReason.LATE_SPAN
        )

    # ---- decisions ----------------------------------------------------------------------

    def _decide(self, trace: BufferedTrace, now: float) -> None:
        view = WireTrace(trace.trace_id, trace.spans, trace.origins, trace.root_index)
        try:
            decision = self.decider.decide(view, now)
        except Exception:
            # A sampler bug must not lose data: keep the trace and say why.
            decision = Decision(True, 1, DECIDE_ERROR_REASON)
            if now - self._last_error_log > 10:
                self._last_error_log = now
                log.exception("deciding trace %s failed; keeping it", view.trace_id)
        reason = trace.reason
        self.decisions.record(trace.trace_id, decision, reason, now)
        label = "kept" if decision.keep else "dropped"
        self.metrics.traces_decided.labels(label, reason.value).inc()
        self.metrics.traces_decided_by_reason.labels(label, decision.reason).inc()
        self.metrics.spans_decided.labels(label).inc(len(trace.spans))
        if trace.root_index >= 0:
            self.metrics.decision_delay.observe(max(0.0, now - trace.root_seen))
        if decision.keep or self.dry_run:
            self._export(view, decision, reason)

    def _export(self, trace: WireTrace, decision: Decision, reason: SendReason) -> None:
        """Encode once and offer to every exporter (in dry-run mode, dropped traces too)."""
        if not self.exporters:
            return
        payload = encode_kept_trace(
            trace.raw_spans,
            trace.origins,
            trace.root_index,
            decision,
            reason.value,
            dry_run=self.dry_run,
        )
        if self.dry_run:
            # Everything leaves at its incoming rate, so stores and backends count it once.
            decision = Decision(True, 1, decision.reason, decision.key)
        kept = KeptTrace(
            trace.raw_trace_id,
            payload,
            len(trace.raw_spans),
            decision,
            reason,
            customer_of(trace, self.customer_fields),
        )
        for exporter in self.exporters:
            exporter.offer(kept)

    def decide_due(self) -> None:
        """Decide every trace whose deadline has passed, and expire old decisions."""
        now = self.clock()
        for trace in self.buffer.due(now):
            self._decide(trace, now)
        self.decisions.expire(now)
        for report in self.decider.take_goal_reports():
            log.warning("%s", report.message)
        self._publish_gauges()

    def _publish_gauges(self) -> None:
        metrics = self.metrics
        metrics.spans_waiting.set(self.buffer.span_count)
        metrics.traces_waiting.set(len(self.buffer.traces))
        metrics.buffer_bytes.set(self.buffer.memory)
        metrics.decision_cache_entries.set(len(self.decisions))

    # ---- lifecycle ----------------------------------------------------------------------

    async def run(self) -> None:
        """Decide due traces every `tick` seconds until `shutdown` is called."""
        loop = asyncio.get_running_loop()
        while not self._stopping.is_set():
            scheduled = loop.time() + self.tick
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.tick)
            self.lag = max(0.0, loop.time() - scheduled)
            self.metrics.decision_lag.set(self.lag)
            self.metrics.decision_tick_lag.observe(self.lag)
            self.decide_due()

    async def shutdown(self, flush_timeout: float) -> None:
        """Decide every buffered trace (`trace_send_shutdown`) and flush the exporters."""
        self._stopping.set()
        now = self.clock()
        for trace in self.buffer.drain(SendReason.SHUTDOWN):
            self._decide(trace, now)
        self._publish_gauges()
        await asyncio.gather(*(exporter.close(flush_timeout) for exporter in self.exporters))
