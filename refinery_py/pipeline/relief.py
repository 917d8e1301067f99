"""Stress relief: under sustained overload, decide new traces on arrival instead of buffering.

A node in `relieve` mode that has been unable to keep up for a while (see `assemble.stress`)
decides each new trace as its first spans arrive, by the trace ID's hash at the relief rate —
the same hash every member and every replay uses, so they all agree. The decision is remembered
like any other, so the trace's later spans follow it (as late spans) whenever they come, relief
or not. Traces already buffered stay buffered and are decided by the rules as usual.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from refinery_py.assemble.stress import StressGauge
from refinery_py.decide.hashing import keep_for_rate
from refinery_py.model import Decision, SendReason, SpanBatch
from refinery_py.otlp.span_view import WireTrace

if TYPE_CHECKING:
    from refinery_py.pipeline.core import Pipeline

log = logging.getLogger("refinery_py.pipeline")

RELIEF_REASON = "stress_relief"
"""`meta.refinery.reason` of traces decided on arrival by stress relief."""

LATE_MEMORY = 5.0
"""Seconds a tick that ran over the lag limit still counts toward starting relief. A saturated
event loop does not run every tick late: at twice the sustained rate (bench/soak.py, 2 cores)
one tick in a dozen ran over a second late, 3-5 s apart, and the ones between were on time.
Late ticks that recur within this are one spell of not keeping up."""


@dataclass(frozen=True, slots=True)
class Relief:
    """Stress relief's settings: the rate (asked each time: rules reload) and its hysteresis."""

    rate: Callable[[], int]
    activate_after: float
    deactivate_after: float


class StressRelief:
    """The pipeline's stress relief: whether it is on, and deciding on arrival while it is."""

    def __init__(self, pipeline: Pipeline, relief: Relief) -> None:
        self._pipeline = pipeline
        self._relief = relief
        self.gauge = StressGauge(relief.activate_after, relief.deactivate_after)
        self.ejected = 0
        """Traces decided early for memory since the last observation."""
        self._late_at = -math.inf
        """When a tick last ran over the lag limit."""

    @property
    def active(self) -> bool:
        return self.gauge.active

    def relieve(self, batch: SpanBatch, now: float) -> None:
        """Decide the batch's new traces on arrival; buffer the spans of buffered ones."""
        pipeline = self._pipeline
        rate = max(1, self._relief.rate())
        decisions = pipeline.decisions
        traces = pipeline.buffer.traces
        relieved: set[bytes] = set()
        for trace_id in set(batch.trace_ids):
            if trace_id in traces or decisions.get(trace_id) is not None:
                continue
            keep = keep_for_rate(trace_id.hex(), rate)
            decisions.record(
                trace_id, Decision(keep, rate, RELIEF_REASON), SendReason.STRESS_RELIEF, now
            )
            relieved.add(trace_id)
        arrivals = pipeline.buffer.add(batch, now)
        metrics = pipeline.metrics
        for trace_id in relieved:
            late = arrivals.late.pop(trace_id)
            decision = late.decided.decision
            label = "kept" if decision.keep else "dropped"
            metrics.stress_relief_spans.labels(label).inc(len(late.spans))
            metrics.traces_decided.labels(label, SendReason.STRESS_RELIEF.value).inc()
            metrics.traces_decided_by_reason.labels(label, RELIEF_REASON).inc()
            metrics.spans_decided.labels(label).inc(len(late.spans))
            if decision.keep or pipeline.dry_run:
                trace = WireTrace(trace_id, late.spans, late.origins, -1, pipeline.field_plan)
                pipeline.export(trace, decision, SendReason.STRESS_RELIEF)
        pipeline.settle(arrivals, now)

    def observe(self, now: float) -> None:
        """Once per tick: note whether the node keeps up; start or stop relief."""
        pipeline = self._pipeline
        reason = ""
        if pipeline.lag > pipeline.max_lag:
            self._late_at = now
            reason = f"decisions are running {pipeline.lag:.1f}s behind"
        elif not self.active and now - self._late_at <= LATE_MEMORY:
            # Not yet relieving: on-time ticks between late ones do not mean it caught up.
            reason = f"decisions keep falling over {pipeline.max_lag:g}s behind"
        elif self.ejected:
            reason = (
                f"the buffer ran over its {pipeline.max_memory >> 20} MiB budget "
                f"({self.ejected} traces decided early to make room)"
            )
        self.ejected = 0
        calm = (
            pipeline.lag < pipeline.max_lag / 2 and pipeline.buffer.memory < pipeline.max_memory / 2
        )
        if not self.gauge.observe(reason, calm, now):
            return
        if not self.gauge.active:
            self._late_at = -math.inf  # late ticks before a calm spell do not start the next
        pipeline.metrics.stress_relief_active.set(1 if self.gauge.active else 0)
        if self.gauge.active:
            pipeline.metrics.stress_relief_activations.inc()
            log.warning(
                "stress relief on: %s; new traces are now decided on arrival at 1 in %d",
                self.gauge.reason,
                self._relief.rate(),
            )
        else:
            log.warning("stress relief off: the node keeps up again; buffering as usual")
