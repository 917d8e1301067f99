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
from dataclasses import dataclass
from typing import Protocol

from refinery_py.assemble import Arrivals, BufferedTrace, DecisionCache, TraceBuffer
from refinery_py.assemble.buffer import LateSpans
from refinery_py.assemble.stress import StressGauge
from refinery_py.cluster.forwarding import MAX_HOPS, Forwarder
from refinery_py.cluster.ownership import Placement
from refinery_py.decide.hashing import keep_for_rate
from refinery_py.model import (
    ACCEPTED,
    Admission,
    Decision,
    ExportBacklog,
    HandedOffDecision,
    HandedOffTrace,
    Handoff,
    KeptTrace,
    SendReason,
    SpanBatch,
    TraceExporter,
    TraceView,
)
from refinery_py.otlp.customer import customer_of
from refinery_py.otlp.frame import encode_kept_trace
from refinery_py.otlp.span_view import WireTrace
from refinery_py.telemetry import Metrics

log = logging.getLogger(__name__)

RELIEF_REASON = "stress_relief"
"""`meta.refinery.reason` of traces decided on arrival by stress relief."""


@dataclass(frozen=True, slots=True)
class Relief:
    """Stress relief's settings: the rate (asked each time: rules reload) and its hysteresis."""

    rate: Callable[[], int]
    activate_after: float
    deactivate_after: float


EXPORT_ROOM = 0.8
"""Admission keeps an export queue's expected use (queued + the buffer's kept share) below this
share of its bound, leaving room for estimates that fall short."""

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
        backlogs: Sequence[ExportBacklog] = (),
        relief: Relief | None = None,
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
        """Routes spans by owner when this process shares the traces with other workers or
        nodes; None for a node of one worker on its own."""
        if forwarder is not None:
            forwarder.on_own_handoff = lambda handoff: self._adopt(handoff, self.clock())
        self._misplaced: set[bytes] = set()
        """Traces kept at the hop limit although another member owns them (see Forwarder)."""
        self._last_misplaced_check = 0.0
        self.lag = 0.0
        """How late the last tick ran: the sign of an event loop that cannot keep up."""
        self.backlogs = tuple(backlogs)
        """Export queues that must not overflow: admission refuses before they would."""
        self.relief = relief
        """With a Relief, sustained overload is met by deciding on arrival (see `_relieve`)."""
        self.stress = (
            StressGauge(relief.activate_after, relief.deactivate_after) if relief else None
        )
        self.kept_share = 1.0
        """The share of decided bytes that is kept (a moving average; 1 until measured)."""
        self._tick_decided = 0
        self._tick_kept = 0
        self._tick_ejected = 0
        self._stopping = asyncio.Event()
        self._last_error_log = 0.0

    @property
    def decisions(self) -> DecisionCache:
        return self.buffer.decisions

    # ---- intake -------------------------------------------------------------------------

    def accept(self, batch: SpanBatch, protocol: str) -> Admission:
        """Buffer a batch from a front door, or refuse all of it when the node is overloaded.

        With a forwarder, spans of traces another worker or node owns are queued for it first;
        if its queue has no room the whole batch is refused (the sender retries).
        """
        refusal = self._overloaded()
        if refusal is not None:
            return refusal
        if self.forwarder is not None:
            routed = self.forwarder.route(batch)
            if routed.refused:
                return Admission(False, retry_after=1.0, message=routed.refused)
            batch = routed.local
        if batch.spans:
            self._buffer(batch, self.clock())
        return ACCEPTED

    def accept_owned(self, batch: SpanBatch, protocol: str) -> Admission:
        """Buffer a batch that a trace-ID-routing front sent to this very worker: it is ours
        whatever the placement says, so nothing is forwarded."""
        refusal = self._overloaded()
        if refusal is not None:
            return refusal
        if batch.spans:
            self._buffer(batch, self.clock())
        return ACCEPTED

    def accept_forwarded(self, batch: SpanBatch, hops: int) -> Admission:
        """Spans another member forwarded: ours are buffered, others passed on (see Forwarder)."""
        refusal = self._overloaded()
        if refusal is not None:
            return refusal
        if self.forwarder is not None:
            routed = self.forwarder.route(batch, hops)
            if routed.refused:
                return Admission(False, retry_after=1.0, message=routed.refused)
            batch = routed.local
            if routed.misplaced:
                self._misplaced.update(routed.misplaced)
                self.metrics.misplaced_spans.inc(
                    sum(1 for t in batch.trace_ids if t in routed.misplaced)
                )
        if batch.spans:
            self._buffer(batch, self.clock())
        return ACCEPTED

    def adopt(self, handoff: Handoff, hops: int) -> Admission:
        """Traces and decisions handed over by their previous owner. Never refused: the cluster
        already holds these spans, and refusing would only keep them where they do not belong."""
        if self.forwarder is not None:
            self.forwarder.count_received_handoff(handoff)
            mine = self.forwarder.hand_off(handoff.traces, handoff.decisions, hops)
            if hops >= MAX_HOPS:
                self._misplaced.update(
                    t.trace_id for t in mine.traces if not self.forwarder.owns(t.trace_id)
                )
            handoff = mine
        self._adopt(handoff, self.clock())
        return ACCEPTED

    def adopt_leftovers(self, handoff: Handoff) -> None:
        """Keep what could not reach its owner before shutdown: it is decided here."""
        if handoff:
            self._adopt(handoff, self.clock())

    def _overloaded(self) -> Admission | None:
        relieving = self.stress is not None and self.stress.active
        if self.lag > self.max_lag and not relieving:
            return Admission(
                False,
                retry_after=max(1.0, self.lag),
                message=f"overloaded: decisions are running {self.lag:.1f}s behind",
            )
        if self.backlogs:
            # What is buffered now will reach the export queues when it is decided: refuse while
            # the queue plus the buffer's likely kept share would not fit, so accepted spans are
            # never dropped at the queue for want of room.
            coming = self.buffer.memory * self.kept_share
            for backlog in self.backlogs:
                if backlog.queued_bytes + coming > EXPORT_ROOM * backlog.max_bytes:
                    return Admission(
                        False,
                        retry_after=2.0,
                        message=(
                            "overloaded: the export queue holds "
                            f"{backlog.queued_bytes / backlog.max_bytes:.0%} of its "
                            f"{backlog.max_bytes >> 20} MiB and the buffer ~{int(coming) >> 20} "
                            "MiB more to be kept; the backend is not keeping up"
                        ),
                    )
        return None

    def _buffer(self, batch: SpanBatch, now: float) -> None:
        if self.stress is not None and self.stress.active:
            self._relieve(batch, now)
            return
        arrivals = self.buffer.add(batch, now)
        self._settle(arrivals, now)

    # ---- stress relief ----------------------------------------------------------------------

    def _relieve(self, batch: SpanBatch, now: float) -> None:
        """Decide new traces on arrival by their trace ID's hash at the relief rate.

        The decision is remembered like any other, so the trace's later spans follow it (as late
        spans) whenever they come, relief or not, and every member reaches the same verdict.
        Traces already buffered stay buffered and are decided by the rules as usual.
        """
        assert self.relief is not None
        rate = max(1, self.relief.rate())
        decisions = self.decisions
        traces = self.buffer.traces
        relieved: set[bytes] = set()
        for trace_id in set(batch.trace_ids):
            if trace_id in traces or decisions.get(trace_id) is not None:
                continue
            keep = keep_for_rate(trace_id.hex(), rate)
            decisions.record(
                trace_id, Decision(keep, rate, RELIEF_REASON), SendReason.STRESS_RELIEF, now
            )
            relieved.add(trace_id)
        arrivals = self.buffer.add(batch, now)
        for trace_id in relieved:
            late = arrivals.late.pop(trace_id)
            decision = late.decided.decision
            label = "kept" if decision.keep else "dropped"
            self.metrics.stress_relief_spans.labels(label).inc(len(late.spans))
            self.metrics.traces_decided.labels(label, SendReason.STRESS_RELIEF.value).inc()
            self.metrics.spans_decided.labels(label).inc(len(late.spans))
            if decision.keep or self.dry_run:
                trace = WireTrace(trace_id, late.spans, late.origins, -1)
                self._export(trace, decision, SendReason.STRESS_RELIEF)
        self._settle(arrivals, now)

    def _observe_stress(self, now: float) -> None:
        stress = self.stress
        if stress is None:
            return
        reason = ""
        if self.lag > self.max_lag:
            reason = f"decisions are running {self.lag:.1f}s behind"
        elif self._tick_ejected:
            reason = (
                f"the buffer ran over its {self.max_memory >> 20} MiB budget "
                f"({self._tick_ejected} traces decided early to make room)"
            )
        self._tick_ejected = 0
        calm = self.lag < self.max_lag / 2 and self.buffer.memory < self.max_memory / 2
        if stress.observe(reason, calm, now):
            self.metrics.stress_relief_active.set(1 if stress.active else 0)
            if stress.active:
                self.metrics.stress_relief_activations.inc()
                log.warning(
                    "stress relief on: %s; new traces are now decided on arrival at 1 in %d",
                    stress.reason,
                    self.relief.rate() if self.relief else 0,
                )
            else:
                log.warning("stress relief off: the node keeps up again; buffering as usual")

    def _settle(self, arrivals: Arrivals, now: float) -> None:
        for trace_id, late in arrivals.late.items():
            self._forward_late(trace_id, late, now)
        for trace in arrivals.over_limit:
            self._decide(trace, now)
        if self.buffer.memory > self.max_memory:
            # Decide the largest traces early rather than refuse: they are the likeliest to be
            # complete anyway, and ingest keeps flowing. Free a margin so this is not per-batch.
            for trace in self.buffer.eject(int(self.max_memory * 0.9)):
                self._tick_ejected += 1
                self._decide(trace, now)

    def _adopt(self, handoff: Handoff, now: float) -> None:
        decisions = self.decisions
        for handed in handoff.decisions:
            if decisions.get(handed.trace_id) is None:
                decisions.record(handed.trace_id, handed.decision, handed.send_reason, now)
            # Spans that reached us before the decision did are late spans of a decided trace.
            early = self.buffer.take(handed.trace_id)
            if early is not None:
                cached = decisions.get(handed.trace_id)
                assert cached is not None
                self._forward_late(
                    handed.trace_id, LateSpans(cached, early.spans, early.origins), now
                )
        if handoff.traces:
            self._settle(self.buffer.adopt(handoff.traces, now), now)

    # ---- owners change ------------------------------------------------------------------

    def set_placement(self, placement: Placement) -> None:
        """Owners changed: hand every trace and decision we no longer own to its new owner.

        Undecided traces keep their deadlines (they travel with their ages); remembered decisions
        go along so late spans still follow them.
        """
        forwarder = self.forwarder
        if forwarder is None:
            return
        now = self.clock()
        mine = forwarder.set_placement(placement)
        owns = forwarder.owns
        traces = [
            HandedOffTrace(
                trace.trace_id,
                trace.spans,
                trace.origins,
                trace.root_index,
                now - trace.first_seen,
                now - trace.root_seen if trace.root_index >= 0 else None,
            )
            for trace in self.buffer.release(owns)
        ]
        decisions = [
            HandedOffDecision(trace_id, cached.decision, cached.send_reason, age)
            for trace_id, cached, age in self.decisions.release(owns, now)
        ]
        local = forwarder.hand_off(traces, decisions)
        mine.traces.extend(local.traces)
        mine.decisions.extend(local.decisions)
        self._adopt(mine, now)
        self._misplaced.clear()
        self._publish_gauges()
        if traces or decisions:
            log.info(
                "owners changed: handed %d traces (%d spans) and %d decisions to their new owners",
                len(traces),
                sum(len(t.spans) for t in traces),
                len(decisions),
            )

    def _hand_on_misplaced(self) -> None:
        """Traces kept at the hop limit go to their owner once this member no longer owns them."""
        forwarder = self.forwarder
        if forwarder is None or not self._misplaced:
            return
        now = self.clock()
        moving: list[HandedOffTrace] = []
        for trace_id in list(self._misplaced):
            if forwarder.owns(trace_id):
                self._misplaced.discard(trace_id)
                continue
            trace = self.buffer.take(trace_id)
            self._misplaced.discard(trace_id)
            if trace is not None:
                moving.append(
                    HandedOffTrace(
                        trace_id,
                        trace.spans,
                        trace.origins,
                        trace.root_index,
                        now - trace.first_seen,
                        now - trace.root_seen if trace.root_index >= 0 else None,
                    )
                )
        if moving:
            self._adopt(forwarder.hand_off(moving, []), now)

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
        size = sum(map(len, trace.spans))
        self._tick_decided += size
        if decision.keep or self.dry_run:
            self._tick_kept += size
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
        self._observe_stress(now)
        if self._tick_decided:
            share = self._tick_kept / self._tick_decided
            self.kept_share = 0.8 * self.kept_share + 0.2 * share
            self._tick_decided = self._tick_kept = 0
        self.decisions.expire(now)
        if self._misplaced and now - self._last_misplaced_check >= 1.0:
            self._last_misplaced_check = now
            self._hand_on_misplaced()
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
