"""The trace buffer: spans wait here, as wire bytes grouped by trace ID, until their trace is due.

A trace is due `send_delay` after its root span arrives, `trace_timeout` after its first span if
no root comes, or at once when it passes `span_limit` spans. Spans of a trace that was already
decided are handed back as late arrivals.

Deadlines are kept with lazy deletion: moving a deadline adds a new entry and the stale one is
skipped when it surfaces. Nearly every deadline is "now + a fixed delay" with a clock that only
goes forward, so each kind (expiry, root) is a first-in-first-out queue, in deadline order at no
cost; a deadline that would break a queue's order (a handed-off trace's, one after the delays
were reloaded) goes to a heap instead. Each trace adds two deadlines, and with a heap of tens of
thousands of entries their comparisons were a few percent of a worker's CPU.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final

from refinery_py.assemble.decision_cache import CachedDecision, DecisionCache
from refinery_py.model import HandedOffTrace, Origin, SendReason, SpanBatch

SPAN_OVERHEAD_BYTES: Final = 64
"""Bookkeeping per buffered span beyond its wire bytes: bytes-object header, three list slots."""
TRACE_OVERHEAD_BYTES: Final = 480
"""Bookkeeping per buffered trace: the trace object, its lists, its dict and deadline entries."""


class BufferedTrace:
    """One trace's spans so far. `spans[i]` came from `origins[i]`; `span_bytes` is the sum of
    their lengths (kept by the buffer as spans arrive).

    `marks[i]` is span i's mark (`otlp.span_fields.span_marks`: its error status and which of
    the field plan's keys it has), exact for the bits of `covered`, which every span's mark
    covers; 0 when some span came without a mark (then `marks` is not used).
    """

    __slots__ = (
        "covered",
        "deadline",
        "first_seen",
        "marks",
        "origins",
        "reason",
        "root_index",
        "root_seen",
        "span_bytes",
        "spans",
        "trace_id",
    )

    def __init__(self, trace_id: bytes, now: float, deadline: float) -> None:
        self.trace_id = trace_id
        self.spans: list[bytes] = []
        self.origins: list[Origin] = []
        self.marks: list[int] = []
        self.covered = 0
        self.span_bytes = 0
        self.root_index = -1
        self.first_seen = now
        self.root_seen = 0.0
        self.deadline = deadline
        self.reason = SendReason.EXPIRED

    def memory(self) -> int:
        """Estimated bytes this trace holds in the buffer."""
        return self.span_bytes + SPAN_OVERHEAD_BYTES * len(self.spans)


@dataclass(slots=True)
class LateSpans:
    """Spans that arrived after their trace was decided."""

    decided: CachedDecision
    spans: list[bytes] = field(default_factory=list)
    origins: list[Origin] = field(default_factory=list)
    root_index: int = -1
    """The trace's root among `spans`, when the root itself came late; else -1."""


@dataclass(slots=True)
class Arrivals:
    """What adding a batch produced besides buffered spans."""

    late: dict[bytes, LateSpans] = field(default_factory=dict)
    """Spans of already-decided traces, by trace ID (kept and dropped alike)."""
    over_limit: list[BufferedTrace] = field(default_factory=list)
    """Traces that passed `span_limit` with this batch: out of the buffer, to be decided now."""


class TraceBuffer:
    """Spans by trace ID, with completion deadlines. Not thread-safe; one owner calls it."""

    def __init__(
        self,
        *,
        send_delay: float,
        trace_timeout: float,
        span_limit: int,
        decisions: DecisionCache,
    ) -> None:
        self.send_delay = send_delay
        self.trace_timeout = trace_timeout
        self.span_limit = span_limit
        self.decisions = decisions
        self.traces: dict[bytes, BufferedTrace] = {}
        self.span_count = 0
        self.memory = 0
        """Estimated bytes held: span bytes plus per-span and per-trace bookkeeping."""
        self._expiries: deque[tuple[float, bytes]] = deque()
        """now + trace_timeout of each new trace, in the order they came."""
        self._root_deadlines: deque[tuple[float, bytes]] = deque()
        """now + send_delay of each trace whose root came, in the order they came."""
        self._deadlines: list[tuple[float, bytes]] = []
        """A heap of the deadlines that fit neither queue's order."""

    def add(
        self,
        batch: SpanBatch,
        now: float,
        marks: list[int] | None = None,
        covered: int = 0,
    ) -> Arrivals:
        """Buffer a batch's spans; return late spans and traces now over the span limit.

        `marks` are the spans' marks, exact for the bits of `covered` (see BufferedTrace).
        """
        arrivals = Arrivals()
        if marks is None:
            covered = 0
        traces = self.traces
        decisions = self.decisions
        roots = batch.root_positions
        spans = batch.spans
        origins = batch.origins
        span_limit = self.span_limit
        expiry = now + self.trace_timeout
        new_traces = 0
        over_limit: list[bytes] = []
        late_count = 0
        for index, trace_id in enumerate(batch.trace_ids):
            trace = traces.get(trace_id)
            if trace is None:
                decided = decisions.get(trace_id)
                if decided is not None:
                    late = arrivals.late.get(trace_id)
                    if late is None:
                        late = arrivals.late[trace_id] = LateSpans(decided)
                    if roots and index in roots and late.root_index < 0:
                        late.root_index = len(late.spans)
                    late.spans.append(spans[index])
                    late.origins.append(origins[index])
                    late_count += 1
                    continue
                trace = traces[trace_id] = BufferedTrace(trace_id, now, expiry)
                trace.covered = covered
                self._schedule(self._expiries, expiry, trace_id)
                new_traces += 1
            else:
                trace.covered &= covered
            if marks is not None:
                trace.marks.append(marks[index])
            span = spans[index]
            trace.spans.append(span)
            trace.span_bytes += len(span)
            trace.origins.append(origins[index])
            if roots and index in roots and trace.root_index < 0:
                self._root_arrived(trace, now)
            if len(trace.spans) == span_limit + 1:
                over_limit.append(trace_id)
        added = len(spans) - late_count
        self.span_count += added
        self.memory += (
            batch.byte_size
            - sum(len(s) for late in arrivals.late.values() for s in late.spans)
            + SPAN_OVERHEAD_BYTES * added
            + TRACE_OVERHEAD_BYTES * new_traces
        )
        for trace_id in over_limit:
            trace = self._remove(trace_id)
            trace.reason = SendReason.SPAN_LIMIT
            arrivals.over_limit.append(trace)
        return arrivals

    def adopt(self, handed: Sequence[HandedOffTrace], now: float) -> Arrivals:
        """Take traces another member held until they became ours, keeping their deadlines.

        A trace already buffered here (its later spans came straight to us) is merged with its
        earlier part; one already decided here gets its spans back as late arrivals. A trace
        whose deadline passed on the way is due at once.
        """
        arrivals = Arrivals()
        decisions = self.decisions
        for incoming in handed:
            trace_id = incoming.trace_id
            decided = decisions.get(trace_id)
            if decided is not None and trace_id not in self.traces:
                late = arrivals.late.setdefault(trace_id, LateSpans(decided))
                if incoming.root_index >= 0 and late.root_index < 0:
                    late.root_index = len(late.spans) + incoming.root_index
                late.spans.extend(incoming.spans)
                late.origins.extend(incoming.origins)
                continue
            first_seen = now - max(0.0, incoming.age)
            trace = self.traces.get(trace_id)
            created = trace is None
            if trace is None:
                trace = self.traces[trace_id] = BufferedTrace(
                    trace_id, first_seen, first_seen + self.trace_timeout
                )
                self.memory += TRACE_OVERHEAD_BYTES
            offset = len(trace.spans)
            trace.covered = 0  # handed-off spans come without marks
            incoming_bytes = sum(map(len, incoming.spans))
            trace.spans.extend(incoming.spans)
            trace.span_bytes += incoming_bytes
            trace.origins.extend(incoming.origins)
            self.span_count += len(incoming.spans)
            self.memory += incoming_bytes + SPAN_OVERHEAD_BYTES * len(incoming.spans)
            trace.first_seen = min(trace.first_seen, first_seen)
            deadline = trace.first_seen + self.trace_timeout
            reason = SendReason.EXPIRED
            if trace.root_index < 0 and incoming.root_index >= 0:
                trace.root_index = offset + incoming.root_index
                trace.root_seen = now - max(0.0, incoming.root_age or 0.0)
            if trace.root_index >= 0 and trace.root_seen + self.send_delay < deadline:
                deadline = trace.root_seen + self.send_delay
                reason = SendReason.GOT_ROOT
            if created or deadline != trace.deadline:
                trace.deadline = deadline
                trace.reason = reason
                heapq.heappush(self._deadlines, (deadline, trace_id))
            if len(trace.spans) > self.span_limit:
                removed = self._remove(trace_id)
                removed.reason = SendReason.SPAN_LIMIT
                arrivals.over_limit.append(removed)
        return arrivals

    def release(self, owned: Callable[[bytes], bool]) -> list[BufferedTrace]:
        """Remove and return every buffered trace that `owned` says is no longer ours."""
        leaving = [trace_id for trace_id in self.traces if not owned(trace_id)]
        return [self._remove(trace_id) for trace_id in leaving]

    def take(self, trace_id: bytes) -> BufferedTrace | None:
        """Remove and return one buffered trace, if it is here."""
        return self._remove(trace_id) if trace_id in self.traces else None

    def _root_arrived(self, trace: BufferedTrace, now: float) -> None:
        trace.root_index = len(trace.spans) - 1
        trace.root_seen = now
        deadline = now + self.send_delay
        if deadline < trace.deadline:
            trace.deadline = deadline
            trace.reason = SendReason.GOT_ROOT
            self._schedule(self._root_deadlines, deadline, trace.trace_id)

    def _schedule(
        self, queue: deque[tuple[float, bytes]], deadline: float, trace_id: bytes
    ) -> None:
        """Add a deadline to `queue`, or to the heap if it is earlier than the queue's last."""
        if queue and queue[-1][0] > deadline:
            heapq.heappush(self._deadlines, (deadline, trace_id))
        else:
            queue.append((deadline, trace_id))

    def _remove(self, trace_id: bytes) -> BufferedTrace:
        trace = self.traces.pop(trace_id)
        self.span_count -= len(trace.spans)
        self.memory -= trace.memory() + TRACE_OVERHEAD_BYTES
        return trace

    def due(self, now: float) -> list[BufferedTrace]:
        """Remove and return every trace whose deadline has passed; `reason` says which one."""
        ready: list[BufferedTrace] = []
        for queue in (self._root_deadlines, self._expiries):
            while queue and queue[0][0] <= now:
                self._take_if_current(queue.popleft(), ready)
        heap = self._deadlines
        while heap and heap[0][0] <= now:
            self._take_if_current(heapq.heappop(heap), ready)
        return ready

    def _take_if_current(self, entry: tuple[float, bytes], ready: list[BufferedTrace]) -> None:
        """Move the entry's trace to `ready` unless the entry is stale (the trace was decided
        or its deadline moved)."""
        deadline, trace_id = entry
        trace = self.traces.get(trace_id)
        if trace is not None and trace.deadline == deadline:
            ready.append(self._remove(trace_id))

    def next_deadline(self) -> float | None:
        """The earliest deadline kept (possibly stale, so possibly early), or None."""
        heads = [
            entries[0][0]
            for entries in (self._root_deadlines, self._expiries, self._deadlines)
            if entries
        ]
        return min(heads) if heads else None

    def drain(self, reason: SendReason) -> list[BufferedTrace]:
        """Remove and return every buffered trace (shutdown), each marked with `reason`."""
        ready = [self._remove(trace_id) for trace_id in list(self.traces)]
        for trace in ready:
            trace.reason = reason
        self._expiries.clear()
        self._root_deadlines.clear()
        self._deadlines.clear()
        return ready

    def eject(self, target_memory: int) -> list[BufferedTrace]:
        """Remove the largest traces until memory is at or below `target_memory`.

        Called under memory pressure; the returned traces are decided early with
        `trace_send_ejected_memsize`. Largest first frees the most with the fewest decisions.
        """
        if self.memory <= target_memory:
            return []
        by_size = sorted(
            ((trace.memory(), trace_id) for trace_id, trace in self.traces.items()), reverse=True
        )
        ejected: list[BufferedTrace] = []
        for _, trace_id in by_size:
            if self.memory <= target_memory:
                break
            trace = self._remove(trace_id)
            trace.reason = SendReason.EJECTED_MEMSIZE
            ejected.append(trace)
        return ejected
