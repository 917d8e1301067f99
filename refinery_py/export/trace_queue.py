"""The exporter's waiting room: kept traces in arrival order, bounded by their encoded size."""

from __future__ import annotations

from collections import deque

from refinery_py.model import EncodedSpans


class TraceQueue:
    """A FIFO of kept traces holding at most `max_bytes` of payload.

    Bytes, not traces, bound it because traces range from one span to thousands; memory is what
    must stay bounded. Each entry remembers when it arrived so the batcher can honour its timeout
    from a batch's first trace.
    """

    __slots__ = ("_entries", "bytes", "max_bytes", "spans")

    def __init__(self, max_bytes: int) -> None:
        if max_bytes <= 0:
            raise ValueError("queue_max_bytes must be positive")
        self.max_bytes = max_bytes
        self._entries: deque[tuple[float, EncodedSpans]] = deque()
        self.spans = 0
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    def put(self, trace: EncodedSpans, arrived: float) -> bool:
        """Append `trace` unless that would exceed `max_bytes`; return whether it was taken."""
        size = len(trace.payload)
        if self.bytes + size > self.max_bytes:
            return False
        self._entries.append((arrived, trace))
        self.spans += trace.span_count
        self.bytes += size
        return True

    def first_arrival(self) -> float:
        """When the oldest waiting trace arrived (the queue must not be empty)."""
        return self._entries[0][0]

    def pop_batch(self, max_spans: int, max_bytes: int) -> list[EncodedSpans]:
        """Take the oldest traces that fit together in `max_spans` spans and `max_bytes` bytes.

        Traces are never cut here: the first trace is always taken, even when it alone is over a
        limit (the sender splits it by bytes if need be), and taking stops at the first trace
        that does not fit, which keeps arrival order.
        """
        entries = self._entries
        _, first = entries.popleft()
        batch = [first]
        spans = first.span_count
        size = len(first.payload)
        while entries:
            candidate = entries[0][1]
            if (
                spans + candidate.span_count > max_spans
                or size + len(candidate.payload) > max_bytes
            ):
                break
            entries.popleft()
            batch.append(candidate)
            spans += candidate.span_count
            size += len(candidate.payload)
        self.spans -= spans
        self.bytes -= size
        return batch

    def pop_all(self) -> list[EncodedSpans]:
        """Empty the queue, returning what was in it."""
        traces = [trace for _, trace in self._entries]
        self._entries.clear()
        self.spans = 0
        self.bytes = 0
        return traces
