"""One window's spans and traces per key in bounded memory: the heavy keys exactly, the rest
as one tail.

An adaptive sampler counts every key in a window to plan the next one, but a rules file cannot
know how many keys its traffic brings, so at most `MaxKeys` keys are counted one by one. When a
new key arrives and all slots are taken, the key with the fewest spans gives up its slot
(Space-Saving, Metwally et al. 2005): its counts move into the tail, and the newcomer inherits
its span count as a rank, so it is not the next to go unless it stays the smallest. This is the
classic guarantee: any key with more than 1/MaxKeys of the window's spans holds a slot when the
window ends. The counts planned from are exact all the same: a slot counts only what its key
brought since it took the slot (the inherited rank orders evictions, nothing else), everything
before that is in the tail, and slots + tail = the window's total, span for span.

When the window closes, a key that took its slot from another and has not since brought at least
the spans it inherited goes to the tail too: it is in the table because it arrived late, not
because it is heavy, and a rate planned from its few spans would be a guess (near 1, typically,
for what may be a mid-sized key: planned on its own, such keys over-kept by a third).

The smallest slot is found with a heap of (rank, key) built at the window's first eviction, so a
window whose keys fit (the common case) never pays for it. Ranks only grow, so the heap is kept
lazily: a popped entry whose key has grown since is pushed back with its current rank. Every
slot has exactly one entry, so the heap never holds more than `MaxKeys`.

The sampler plans the tail as groups of keys alike (see `key_classes`).
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping

from refinery_py.decide.allotment import Demand

Group = tuple[float, float, float]
"""A group of keys alike: their spans and traces together, and how many keys they are."""


class WindowCounts:
    """Spans and traces per key for one window: at most `limit` keys, the rest in `tail`."""

    __slots__ = ("_heap", "_limit", "_ranks", "counts", "groups", "moved_traces", "seen", "tail")

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self.counts: dict[str, list[int]] = {}
        """[spans, traces] of each tracked key since it took its slot."""
        self.tail = [0, 0]
        """[spans, traces] of the keys that lost their slot, before they lost it."""
        self.groups: dict[str, Group] = {}
        """The tail as groups of keys alike, by name; set by the sampler when the window ends."""
        self.seen: Mapping[str, int] = {}
        """Traces per key in the window, of every key the sampler remembers (set with
        `groups`)."""
        self.moved_traces = 0
        """Traces moved into the tail when their key lost its slot."""
        self._ranks: dict[str, int] = {}
        """Spans inherited by keys that took a slot from another (only those)."""
        self._heap: list[tuple[int, str]] | None = None

    def admit(self, key: str) -> list[int]:
        """The new [spans, traces] slot of a key not counted yet (the caller adds to it)."""
        counts = self.counts
        if len(counts) < self._limit:
            entry = counts[key] = [0, 0]
            return entry
        heap = self._heap
        ranks = self._ranks
        if heap is None:
            heap = self._heap = [(spans, slot) for slot, (spans, _) in counts.items()]
            heapq.heapify(heap)
        while True:
            rank, smallest = heap[0]
            current = counts[smallest][0] + ranks.get(smallest, 0)
            if current == rank:
                break
            heapq.heapreplace(heap, (current, smallest))
        heapq.heapreplace(heap, (rank, key))
        spans, traces = counts.pop(smallest)
        ranks.pop(smallest, None)
        tail = self.tail
        tail[0] += spans
        tail[1] += traces
        self.moved_traces += traces
        ranks[key] = rank
        entry = counts[key] = [0, 0]
        return entry

    def close(self) -> None:
        """The window ended: send keys whose counts are a guess to the tail, and drop what only
        counting needed."""
        counts = self.counts
        tail = self.tail
        for key, inherited in self._ranks.items():
            spans, traces = counts[key]
            if spans < inherited:
                del counts[key]
                tail[0] += spans
                tail[1] += traces
                self.moved_traces += traces
        self._heap = None
        self._ranks = {}

    def demands(self) -> dict[str, Demand]:
        """Each tracked key's counts, and each group's per key."""
        demands = {key: Demand(spans, traces) for key, (spans, traces) in self.counts.items()}
        for name, (spans, traces, keys) in self.groups.items():
            demands[name] = group(spans, traces, keys)
        return demands

    def sizes(self) -> dict[str, int]:
        """Entries per structure (memory checks)."""
        return {
            "counts": len(self.counts),
            "heap": len(self._heap or ()),
            "ranks": len(self._ranks),
        }


def group(spans: float, traces: float, keys: float) -> Demand:
    """The demand of `keys` keys alike that together bring `spans` and `traces`."""
    return Demand(spans / keys, traces / keys, keys)
