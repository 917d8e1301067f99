"""Rendezvous (highest-random-weight) hashing of trace IDs over the members.

Each member gets a score per trace ID and the highest score owns the trace. When a member joins
or leaves, only the traces it wins or held move (1/n of them), and every member that knows the
same member list computes the same owner, with no coordination.
"""

from __future__ import annotations

from collections.abc import Sequence

import xxhash


class Ownership:
    """Which of `members` (stable names, e.g. `host:port`) owns a trace ID; `self_index` is us."""

    __slots__ = ("_seeds", "members", "self_index")

    def __init__(self, members: Sequence[str], self_index: int) -> None:
        if not members:
            raise ValueError("a cluster needs at least one member")
        if not 0 <= self_index < len(members):
            raise ValueError(f"self_index {self_index} is not one of {len(members)} members")
        if len(set(members)) != len(members):
            raise ValueError("member names must be unique")
        self.members = tuple(members)
        self.self_index = self_index
        # A member's seed is a hash of its name, so scores depend on who the member is, not on
        # its position in the list: reordering the list moves no trace.
        self._seeds = tuple(xxhash.xxh64_intdigest(name.encode()) for name in self.members)

    def owner_of(self, trace_id: bytes) -> int:
        """The index in `members` of the member that owns `trace_id`."""
        best_index = 0
        best_score = -1
        for index, seed in enumerate(self._seeds):
            score = xxhash.xxh64_intdigest(trace_id, seed)
            if score > best_score:
                best_index, best_score = index, score
        return best_index

    @property
    def alone(self) -> bool:
        return len(self.members) == 1
