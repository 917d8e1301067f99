"""The pipeline's side of a cluster: spans from other members, handoffs, and owners changing.

A worker that shares the traces with other workers or nodes routes every batch through its
`Forwarder`. Here, what other members send is taken (spans forwarded to their owner, traces and
decisions handed over when owners change), and when the owners change this worker hands what it
no longer owns to the new owners: undecided traces with their ages, so they keep their deadlines,
and remembered decisions, so late spans still follow them.

Members that disagree about the owners for a moment may pass spans back and forth once; at the
hop limit spans are kept where they are and noted as misplaced, and handed to their owner once
this worker no longer owns them (checked every second).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from refinery_py.assemble import BufferedTrace
from refinery_py.assemble.buffer import LateSpans
from refinery_py.cluster.forwarding import MAX_HOPS, Forwarder
from refinery_py.cluster.ownership import Placement
from refinery_py.model import (
    ACCEPTED,
    Admission,
    HandedOffDecision,
    HandedOffTrace,
    Handoff,
    SpanBatch,
)

if TYPE_CHECKING:
    from refinery_py.pipeline.core import Pipeline

log = logging.getLogger("refinery_py.pipeline")

MISPLACED_CHECK_SECONDS = 1.0


def handed_off(trace: BufferedTrace, now: float) -> HandedOffTrace:
    """A buffered trace as it travels to its new owner: its times become ages."""
    return HandedOffTrace(
        trace.trace_id,
        trace.spans,
        trace.origins,
        trace.root_index,
        now - trace.first_seen,
        now - trace.root_seen if trace.root_index >= 0 else None,
    )


class Membership:
    """What the pipeline does as one member of many (workers of a node, or nodes)."""

    def __init__(self, pipeline: Pipeline, forwarder: Forwarder) -> None:
        self._pipeline = pipeline
        self.forwarder = forwarder
        forwarder.on_own_handoff = lambda handoff: self.adopt_here(handoff, pipeline.clock())
        self._misplaced: set[bytes] = set()
        """Traces kept at the hop limit although another member owns them (see Forwarder)."""
        self._last_check = 0.0

    def route(self, batch: SpanBatch, hops: int) -> SpanBatch | Admission:
        """Queue what others own; the part this worker owns, or a refusal (nothing taken)."""
        routed = self.forwarder.route(batch, hops)
        if routed.refused:
            return Admission(False, retry_after=1.0, message=routed.refused)
        if routed.misplaced:
            self._misplaced.update(routed.misplaced)
            self._pipeline.metrics.misplaced_spans.inc(
                sum(1 for t in routed.local.trace_ids if t in routed.misplaced)
            )
        return routed.local

    def adopt(self, handoff: Handoff, hops: int) -> Admission:
        """Traces and decisions another member handed over (whatever is not ours goes on)."""
        forwarder = self.forwarder
        forwarder.count_received_handoff(handoff)
        mine = forwarder.hand_off(handoff.traces, handoff.decisions, hops)
        if hops >= MAX_HOPS:
            self._misplaced.update(
                t.trace_id for t in mine.traces if not forwarder.owns(t.trace_id)
            )
        self.adopt_here(mine, self._pipeline.clock())
        return ACCEPTED

    def adopt_here(self, handoff: Handoff, now: float) -> None:
        """Take traces and decisions as this worker's own."""
        pipeline = self._pipeline
        decisions = pipeline.decisions
        for handed in handoff.decisions:
            if decisions.get(handed.trace_id) is None:
                decisions.record(handed.trace_id, handed.decision, handed.send_reason, now)
            # Spans that reached us before the decision did are late spans of a decided trace.
            early = pipeline.buffer.take(handed.trace_id)
            if early is not None:
                cached = decisions.get(handed.trace_id)
                assert cached is not None
                pipeline.forward_late(
                    handed.trace_id, LateSpans(cached, early.spans, early.origins), now
                )
        if handoff.traces:
            pipeline.settle(pipeline.buffer.adopt(handoff.traces, now), now)

    def set_placement(self, placement: Placement) -> None:
        """Owners changed: hand every trace and decision we no longer own to its new owner."""
        pipeline = self._pipeline
        forwarder = self.forwarder
        now = pipeline.clock()
        mine = forwarder.set_placement(placement)
        owns = forwarder.owns
        traces = [handed_off(trace, now) for trace in pipeline.buffer.release(owns)]
        decisions = [
            HandedOffDecision(trace_id, cached.decision, cached.send_reason, age)
            for trace_id, cached, age in pipeline.decisions.release(owns, now)
        ]
        local = forwarder.hand_off(traces, decisions)
        mine.traces.extend(local.traces)
        mine.decisions.extend(local.decisions)
        self.adopt_here(mine, now)
        self._misplaced.clear()
        if traces or decisions:
            log.info(
                "owners changed: handed %d traces (%d spans) and %d decisions to their new owners",
                len(traces),
                sum(len(t.spans) for t in traces),
                len(decisions),
            )

    def tick(self, now: float) -> None:
        """Misplaced traces go to their owner once this worker no longer owns them."""
        if not self._misplaced or now - self._last_check < MISPLACED_CHECK_SECONDS:
            return
        self._last_check = now
        pipeline = self._pipeline
        moving: list[HandedOffTrace] = []
        for trace_id in list(self._misplaced):
            self._misplaced.discard(trace_id)
            if self.forwarder.owns(trace_id):
                continue
            trace = pipeline.buffer.take(trace_id)
            if trace is not None:
                moving.append(handed_off(trace, now))
        if moving:
            self.adopt_here(self.forwarder.hand_off(moving, []), now)
