"""The pipeline proper: intake, decisions, export, the ticker and shutdown (see the package)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from refinery_py.assemble import Arrivals, BufferedTrace, DecisionCache, TraceBuffer
from refinery_py.assemble.buffer import LateSpans
from refinery_py.cluster.forwarding import Forwarder
from refinery_py.cluster.ownership import Placement
from refinery_py.model import (
    ACCEPTED,
    Admission,
    Decision,
    ExportBacklog,
    Handoff,
    KeptTrace,
    SendReason,
    SpanBatch,
    TraceExporter,
    TraceView,
)
from refinery_py.otlp.customer import customer_of
from refinery_py.otlp.frame import encode_kept_trace
from refinery_py.otlp.span_fields import INTRINSIC_FIELDS, FieldPlan
from refinery_py.otlp.span_view import WireTrace
from refinery_py.pipeline.admission import backlog_refusal, lag_refusal
from refinery_py.pipeline.hold import HOLD_MEMORY_SHARE, MAX_HOLD, RefusalHold
from refinery_py.pipeline.marking import Marking
from refinery_py.pipeline.membership import Membership
from refinery_py.pipeline.relief import Relief, StressRelief
from refinery_py.telemetry import Metrics

log = logging.getLogger("refinery_py.pipeline")

DECIDE_ERROR_REASON = "decide_error"
"""Reason on traces kept because deciding them raised: refinery_py fails open, never drops."""

OUTBOX_MAX_BYTES = 1 << 20
"""Kept traces waiting for the tick are offered at once past this much: when ticks are late
(stress relief keeps traces on arrival just then) the outbox must not grow with the lag."""


class TraceDecider(Protocol):
    """The rules engine as the pipeline asks it about one trace."""

    def decide(self, trace: TraceView, now: float) -> Decision: ...

    def count_late(self, decision: Decision, span_count: int, now: float) -> None:
        """Let the sampler that made `decision` count spans that arrived after it."""
        ...

    def redecide(self, late: TraceView, decision: Decision, now: float) -> Decision | None:
        """The decision the trace would have had with its late spans in time, if certain."""
        ...


class RulesOutlook(Protocol):
    """What the pipeline learns from the rules engine apart from any one trace."""

    def take_goal_reports(self) -> Sequence[GoalReport]:
        """Windows that ended with a sampler's goal out of reach, once each."""
        ...

    def fields_used(self) -> frozenset[str]:
        """The span fields the rules read (without a `root.` prefix)."""
        ...


class Decider(TraceDecider, RulesOutlook, Protocol):
    """The rules engine as the pipeline holds it: both seams are one object, replaced whole when
    the rules are reloaded."""


class _Counting(Protocol):
    def inc(self, amount: float = 1) -> None: ...


_DecidedCounters = tuple[_Counting, _Counting, _Counting]


class GoalReport(Protocol):
    @property
    def message(self) -> str: ...


class Pipeline:
    """Buffer → decide → export, driven by `accept` (receivers) and `run` (the ticker).

    With a `forwarder` the process is one of several members (workers of a node, nodes of a
    cluster) and routes spans by owner (`membership`); with `backlogs` admission refuses before
    an export queue would overflow (`admission`); with a `relief`, sustained overload is met by
    deciding on arrival (`relief`).
    """

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
        refusal_wait: float = MAX_HOLD,
    ) -> None:
        self.buffer = buffer
        self.field_plan = FieldPlan()
        """The span attributes the rules read: every span is walked once, for all of them."""
        self.marking = Marking(self.field_plan)
        self.decider = decider
        self.exporters = list(exporters)
        self._outbox: list[KeptTrace] = []
        """Kept traces waiting for the end of the tick (see `flush_exports`)."""
        self._outbox_bytes = 0
        # Looked up once: `labels()` cost more than the rest of a late span's bookkeeping.
        self._late_counters: dict[str, _Counting] = {
            outcome: metrics.late_spans.labels(outcome)
            for outcome in ("kept", "dropped", "rescued")
        }
        self.metrics = metrics
        self.customer_fields = tuple(customer_fields)
        self.max_memory = max_memory
        metrics.buffer_budget_bytes.set(max_memory)
        self.clock = clock
        self.tick = tick
        self.max_lag = max_lag
        self.dry_run = dry_run
        """Export every trace, marked with what the rules decided, instead of dropping any."""
        self.hold = RefusalHold(refusal_wait)
        """How long decisions wait for spans this member refused (see `hold`)."""
        self.membership = Membership(self, forwarder) if forwarder is not None else None
        """Routing by owner when this process shares the traces with other workers or nodes."""
        self.backlogs = tuple(backlogs)
        """Export queues that must not overflow: admission refuses before they would."""
        self.relief = StressRelief(self, relief) if relief is not None else None
        self.lag = 0.0
        """How late the last tick ran: the sign of an event loop that cannot keep up."""
        self.kept_share = 1.0
        """The share of decided bytes that is kept (a moving average; 1 until measured)."""
        self._tick_decided = 0
        self._tick_kept = 0
        self._stopping = asyncio.Event()
        self._last_error_log = 0.0
        self._counters: dict[tuple[bool, str, str], _DecidedCounters] = {}

    @property
    def decider(self) -> Decider:
        return self._decider

    @decider.setter
    def decider(self, decider: Decider) -> None:
        """Decide with `decider` from now on (rules reloaded: a new engine)."""
        self._decider = decider
        # Planned before spans arrive, the attributes the rules read get marks from the first
        # span on (see buffer_batch); a field a sampler asks for later is planned then.
        for field in sorted(decider.fields_used()):
            if field not in INTRINSIC_FIELDS:
                self.field_plan.slot(field)

    @property
    def decisions(self) -> DecisionCache:
        return self.buffer.decisions

    @property
    def forwarder(self) -> Forwarder | None:
        return self.membership.forwarder if self.membership is not None else None

    # ---- intake -------------------------------------------------------------------------

    def accept(self, batch: SpanBatch, protocol: str) -> Admission:
        """Buffer a batch from a front door, or refuse all of it when the node is overloaded.

        With a forwarder, spans of traces another worker or node owns are queued for it first;
        if its queue has no room the whole batch is refused (the sender retries).
        """
        return self._take(batch, hops=0)

    def refusal(self) -> Admission | None:
        """The refusal any front-door request would get now (see `SpanSink.refusal`)."""
        return self._refusal()

    def accept_owned(self, batch: SpanBatch, protocol: str) -> Admission:
        """Buffer a batch that a trace-ID-routing front sent to this very worker: it is ours
        whatever the placement says, so nothing is forwarded."""
        refusal = self._refusal()
        if refusal is not None:
            return refusal
        if batch.spans:
            self.buffer_batch(batch, self.clock())
        return ACCEPTED

    def accept_forwarded(self, batch: SpanBatch, hops: int) -> Admission:
        """Spans another member forwarded: ours are buffered, others passed on (see Forwarder)."""
        return self._take(batch, hops)

    def _take(self, batch: SpanBatch, hops: int) -> Admission:
        refusal = self._refusal()
        if refusal is not None:
            return refusal
        if self.membership is not None:
            routed = self.membership.route(batch, hops)
            if isinstance(routed, Admission):
                if not routed.accepted:
                    self.hold.refused(routed.retry_after, self.clock())
                return routed
            batch = routed
        if batch.spans:
            self.buffer_batch(batch, self.clock())
        return ACCEPTED

    def adopt(self, handoff: Handoff, hops: int) -> Admission:
        """Traces and decisions handed over by their previous owner. Never refused: the cluster
        already holds these spans, and refusing would only keep them where they do not belong."""
        if self.membership is not None:
            return self.membership.adopt(handoff, hops)
        return ACCEPTED

    def adopt_leftovers(self, handoff: Handoff) -> None:
        """Keep what could not reach its owner before shutdown: it is decided here."""
        if handoff and self.membership is not None:
            self.membership.adopt_here(handoff, self.clock())

    def set_placement(self, placement: Placement) -> None:
        """Owners changed: hand what this worker no longer owns to the new owners."""
        if self.membership is not None:
            self.membership.set_placement(placement)
            self._publish_gauges()

    def _refusal(self) -> Admission | None:
        if self.relief is None or not self.relief.active:
            refusal = lag_refusal(self.lag, self.max_lag)
            if refusal is not None:
                self.hold.refused(refusal.retry_after, self.clock())
                return refusal
        if self.backlogs:
            # Not held for: the buffered bytes count as bound for the export queue, so waiting
            # would prolong the very refusals it waits out.
            return backlog_refusal(self.backlogs, self.buffer.memory, self.kept_share)
        return None

    def buffer_batch(self, batch: SpanBatch, now: float) -> None:
        """Buffer a batch this worker owns (or, under stress relief, decide it on arrival)."""
        if self.relief is not None and self.relief.active:
            self.relief.relieve(batch, now)
            return
        # Marked now (when it pays), while the spans are in the cache: deciding then walks
        # only the spans that have what the rules read in every span.
        marks = self.marking.marks(batch.spans)
        self.settle(self.buffer.add(batch, now, marks, self.marking.covered), now)

    def settle(self, arrivals: Arrivals, now: float) -> None:
        """What adding spans produced: late spans follow their decision, traces over the span
        limit are decided now, and memory over the budget decides the largest traces early."""
        if arrivals.late:
            # Counted once per outcome: a counter's inc costs more than the rest of a late
            # trace's bookkeeping, and a request of late spans holds a dozen traces or more.
            tally = dict.fromkeys(self._late_counters, 0)
            try:
                for trace_id, late in arrivals.late.items():
                    tally[self._follow_decision(trace_id, late, now)] += len(late.spans)
            finally:
                for outcome, spans in tally.items():
                    if spans:
                        self._late_counters[outcome].inc(spans)
        for trace in arrivals.over_limit:
            self._decide(trace, now)
        if self.buffer.memory > self.max_memory:
            # Decide the largest traces early rather than refuse: they are the likeliest to be
            # complete anyway, and ingest keeps flowing. Free a margin so this is not per-batch.
            for trace in self.buffer.eject(int(self.max_memory * 0.9)):
                if self.relief is not None:
                    self.relief.ejected += 1
                self._decide(trace, now)

    def forward_late(self, trace_id: bytes, late: LateSpans, now: float) -> None:
        """Spans of a decided trace: exported with its decision if it was kept.

        Late spans of a dropped trace are first put to the rules: when they settle an earlier
        rule that keeps (an error arriving after its trace timed out, or retried after a
        refusal), the trace is kept from here on — what already went cannot come back, but
        the error and every later span of its trace do (`rescued`).
        """
        self._late_counters[self._follow_decision(trace_id, late, now)].inc(len(late.spans))

    def _follow_decision(self, trace_id: bytes, late: LateSpans, now: float) -> str:
        """`forward_late` without the counting: returns the outcome (a `late_spans` label)."""
        decided = late.decided
        decision = decided.decision
        if not decision.keep:
            rooted = WireTrace(trace_id, late.spans, late.origins, late.root_index, self.field_plan)
            rescued = self._redecide(rooted, decision, now)
            if rescued is not None and rescued.keep:
                self.decisions.replace(trace_id, rescued, decided.send_reason)
                self.export(self._late_view(trace_id, late), rescued, SendReason.LATE_SPAN)
                return "rescued"
        # Throughput goals count what leaves, late spans included (Refinery #1567).
        self.decider.count_late(decision, len(late.spans), now)
        if decision.keep or self.dry_run:
            self.export(self._late_view(trace_id, late), decision, SendReason.LATE_SPAN)
        return "kept" if decision.keep else "dropped"

    def _late_view(self, trace_id: bytes, late: LateSpans) -> WireTrace:
        # Exported without a root: `meta.span_count` on a late root would count only these.
        return WireTrace(trace_id, late.spans, late.origins, -1, self.field_plan)

    def _redecide(self, late: WireTrace, decision: Decision, now: float) -> Decision | None:
        try:
            return self.decider.redecide(late, decision, now)
        except Exception:
            # A bug here must not fail the request that brought the spans (already buffered
            # with it): the late spans follow the decision made, as they would without rescues.
            self.metrics.decision_failures.inc()
            self._log_failure(now, "redeciding trace %s for its late spans failed", late.trace_id)
            return None

    def _log_failure(self, now: float, message: str, *args: object) -> None:
        """Log the exception being handled, with its traceback, at most once per 10 s: a bug
        that hits every trace must not flood the log."""
        if now - self._last_error_log > 10:
            self._last_error_log = now
            log.exception(message, *args)

    # ---- decisions ----------------------------------------------------------------------

    def _decide(self, trace: BufferedTrace, now: float) -> None:
        try:
            self._decide_and_export(trace, now)
        except Exception:
            # A bug past the decider (encoding the kept trace) must cost this trace only: raised
            # further, it would end the ticker or fail a front-door request already buffered.
            self.metrics.decision_failures.inc()
            self.metrics.decision_failed_spans.inc(len(trace.spans))
            self._log_failure(
                now, "deciding or exporting trace %s failed; it is lost", trace.trace_id.hex()
            )

    def _decide_and_export(self, trace: BufferedTrace, now: float) -> None:
        view = WireTrace(
            trace.trace_id,
            trace.spans,
            trace.origins,
            trace.root_index,
            self.field_plan,
            marks=trace.marks,
            covered=trace.covered,
        )
        try:
            decision = self.decider.decide(view, now)
        except Exception:
            # A sampler bug must not lose data: keep the trace and say why.
            decision = Decision(True, 1, DECIDE_ERROR_REASON)
            self._log_failure(now, "deciding trace %s failed; keeping it", view.trace_id)
        self.marking.decided(view.asked)
        reason = trace.reason
        size = trace.span_bytes
        self._tick_decided += size
        if decision.keep or self.dry_run:
            self._tick_kept += size
        self.decisions.record(trace.trace_id, decision, reason, now)
        by_send_reason, by_reason, spans = self._decided_counters(
            decision.keep, reason.value, decision.reason
        )
        by_send_reason.inc()
        by_reason.inc()
        spans.inc(len(trace.spans))
        if trace.root_index >= 0:
            self.metrics.decision_delay.observe(max(0.0, now - trace.root_seen))
        if decision.keep or self.dry_run:
            self.export(view, decision, reason)

    def _decided_counters(self, keep: bool, send_reason: str, reason: str) -> _DecidedCounters:
        """The counters one decision moves, looked up once per distinct outcome (a metric's
        `labels()` costs more than the rest of counting)."""
        key = (keep, send_reason, reason)
        counters = self._counters.get(key)
        if counters is None:
            if len(self._counters) >= 4096:  # reasons are few; bound the table all the same
                self._counters.clear()
            label = "kept" if keep else "dropped"
            metrics = self.metrics
            counters = self._counters[key] = (
                metrics.traces_decided.labels(label, send_reason),
                metrics.traces_decided_by_reason.labels(label, reason),
                metrics.spans_decided.labels(label),
            )
        return counters

    def export(self, trace: WireTrace, decision: Decision, reason: SendReason) -> None:
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
        self._outbox.append(kept)
        self._outbox_bytes += len(payload)
        if self._outbox_bytes >= OUTBOX_MAX_BYTES:
            self.flush_exports()

    def flush_exports(self) -> None:
        """Offer the exporters what was kept since the last flush.

        Kept traces leave at the end of each decision tick, together: a tick's decisions, and
        what requests brought in between (late spans of kept traces, traces decided on arrival
        under stress relief or over the span limit). Offered one request at a time, those made
        an export request each: a gRPC call costs a worker about 0.4 ms of CPU.
        Past OUTBOX_MAX_BYTES they are offered at once, whatever the tick.
        """
        outbox, self._outbox = self._outbox, []
        self._outbox_bytes = 0
        for kept in outbox:
            for exporter in self.exporters:
                try:
                    exporter.offer(kept)
                except Exception:
                    # An exporter's bug costs it this trace, never the rest of the tick's.
                    self.metrics.decision_failures.inc()
                    self.metrics.decision_failed_spans.inc(kept.span_count)
                    self._log_failure(
                        self.clock(), "exporting trace %s failed; it is lost", kept.trace_id.hex()
                    )

    def decide_due(self) -> None:
        """Decide every trace whose deadline has passed, expire old decisions, and send what was
        kept (`flush_exports`)."""
        try:
            self._decide_due()
        finally:
            self.flush_exports()

    def _decide_due(self) -> None:
        now = self.clock()
        cutoff = now
        if self.buffer.memory < HOLD_MEMORY_SHARE * self.max_memory:
            cutoff = self.hold.cutoff(now)
        self.metrics.decision_hold.set(now - cutoff)
        for trace in self.buffer.due(cutoff):
            self._decide(trace, now)
        if self.relief is not None:
            self.relief.observe(now)
        if self._tick_decided:
            share = self._tick_kept / self._tick_decided
            self.kept_share = 0.8 * self.kept_share + 0.2 * share
            self._tick_decided = self._tick_kept = 0
        self.decisions.expire(now)
        if self.membership is not None:
            self.membership.tick(now)
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
            # asyncio.timeout, not wait_for: wait_for wraps the wait in a new task every tick.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.tick):
                    await self._stopping.wait()
            self.lag = max(0.0, loop.time() - scheduled)
            self.metrics.decision_lag.set(self.lag)
            self.metrics.decision_tick_lag.observe(self.lag)
            try:
                self.decide_due()
            except Exception:
                # Whatever fails must not end the ticker: a node that answers 200 and decides
                # nothing more would hold every trace until it runs out of memory.
                self.metrics.decision_failures.inc()
                log.exception("a decision tick failed; the next one carries on")

    async def shutdown(self, flush_timeout: float) -> None:
        """Decide every buffered trace (`trace_send_shutdown`) and flush the exporters."""
        self._stopping.set()
        now = self.clock()
        for trace in self.buffer.drain(SendReason.SHUTDOWN):
            self._decide(trace, now)
        self.flush_exports()
        self._publish_gauges()
        await asyncio.gather(*(exporter.close(flush_timeout) for exporter in self.exporters))
