"""What one cluster member hands another when a trace changes owner: buffered spans, decisions.

When the member list changes, the traces a member holds but no longer owns move to their new
owner instead of being decided early (which would split them), and so do the decisions it
remembers for traces it no longer owns (so their late spans still follow the verdict). Clocks
differ between machines, so times travel as ages: seconds before the moment of the handoff.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from refinery_py.model.batch import Origin
from refinery_py.model.decision import Decision, SendReason


@dataclass(slots=True)
class HandedOffTrace:
    """A buffered, undecided trace moving to its new owner.

    `age` is how long ago its first span arrived (at whichever member held it), `root_age` how
    long ago its root span arrived, or None if the root has not come yet; the new owner keeps the
    trace's deadlines where they were.
    """

    trace_id: bytes
    spans: list[bytes]
    origins: list[Origin]
    root_index: int
    age: float
    root_age: float | None


@dataclass(frozen=True, slots=True)
class HandedOffDecision:
    """A remembered decision moving to the trace's new owner; `age` is how old it is."""

    trace_id: bytes
    decision: Decision
    send_reason: SendReason
    age: float


@dataclass(slots=True)
class Handoff:
    """Traces and decisions for one new owner."""

    traces: list[HandedOffTrace] = field(default_factory=list)
    decisions: list[HandedOffDecision] = field(default_factory=list)

    @property
    def span_count(self) -> int:
        return sum(len(trace.spans) for trace in self.traces)

    def __bool__(self) -> bool:
        return bool(self.traces or self.decisions)
