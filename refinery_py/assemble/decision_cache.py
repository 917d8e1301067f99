"""Decisions remembered after a trace leaves the buffer, so its late spans follow the verdict.

Sized by time (at least twice the trace timeout, so any span that could still arrive finds its
trace's decision) with a memory bound on top; when the bound bites, the oldest decisions go first
and the eviction is counted.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from refinery_py.model import Decision, SendReason

ENTRY_BYTES = 128
"""Estimated memory per remembered decision: dict slot, trace-ID bytes object, bucket slot."""

_BUCKET_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class CachedDecision:
    """What was decided for a trace and why it was decided when it was."""

    decision: Decision
    send_reason: SendReason


class DecisionCache:
    """Trace ID → CachedDecision, expiring by age in one-second buckets."""

    def __init__(self, ttl: float, max_bytes: int) -> None:
        self.ttl = ttl
        self.max_entries = max(1, max_bytes // ENTRY_BYTES)
        self.evictions = 0
        self._entries: dict[bytes, CachedDecision] = {}
        self._buckets: deque[tuple[float, list[bytes]]] = deque()
        self._interned: dict[tuple[Decision, SendReason], CachedDecision] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, trace_id: bytes) -> CachedDecision | None:
        return self._entries.get(trace_id)

    def record(
        self, trace_id: bytes, decision: Decision, send_reason: SendReason, now: float
    ) -> None:
        """Remember a decision. Equal decisions share one object, so entries stay small."""
        self._entries[trace_id] = self._intern(decision, send_reason)
        buckets = self._buckets
        if not buckets or now - buckets[-1][0] >= _BUCKET_SECONDS:
            buckets.append((now, []))
        buckets[-1][1].append(trace_id)
        if len(self._entries) > self.max_entries:
            self._evict_oldest(len(self._entries) - self.max_entries)

    def replace(self, trace_id: bytes, decision: Decision, send_reason: SendReason) -> None:
        """Change a remembered decision (a dropped trace's late spans met a keep rule), keeping
        its age: it expires when the first one would have."""
        if trace_id in self._entries:
            self._entries[trace_id] = self._intern(decision, send_reason)

    def release(
        self, owned: Callable[[bytes], bool], now: float
    ) -> list[tuple[bytes, CachedDecision, float]]:
        """Forget every decision `owned` says is no longer ours; return them with their ages."""
        entries = self._entries
        released: list[tuple[bytes, CachedDecision, float]] = []
        for recorded, trace_ids in self._buckets:
            kept: list[bytes] = []
            for trace_id in trace_ids:
                if owned(trace_id):
                    kept.append(trace_id)
                    continue
                cached = entries.pop(trace_id, None)
                if cached is not None:
                    released.append((trace_id, cached, max(0.0, now - recorded)))
            trace_ids[:] = kept
        return released

    def _intern(self, decision: Decision, send_reason: SendReason) -> CachedDecision:
        key = (decision, send_reason)
        cached = self._interned.get(key)
        if cached is None:
            if len(self._interned) > 100_000:
                self._interned.clear()  # dynamic-sampler keys can be many; sharing is optional
            cached = self._interned[key] = CachedDecision(decision, send_reason)
        return cached

    def expire(self, now: float) -> None:
        """Forget decisions older than the TTL."""
        cutoff = now - self.ttl
        buckets = self._buckets
        entries = self._entries
        while buckets and buckets[0][0] < cutoff:
            for trace_id in buckets.popleft()[1]:
                entries.pop(trace_id, None)

    def _evict_oldest(self, count: int) -> None:
        buckets = self._buckets
        entries = self._entries
        while count > 0 and buckets:
            ids = buckets[0][1]
            take = min(count, len(ids))
            for trace_id in ids[:take]:
                if entries.pop(trace_id, None) is not None:
                    self.evictions += 1
            del ids[:take]
            count -= take
            if not ids:
                buckets.popleft()
