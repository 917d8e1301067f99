"""What every sampler offers the pipeline, and the error for one that cannot be built."""

from __future__ import annotations

from typing import Protocol

from refinery_py.model import Decision, TraceView


class Sampler(Protocol):
    """Decides one trace at a time. Pure: the clock comes in as `now` (epoch seconds)."""

    def decide(self, trace: TraceView, now: float) -> Decision:
        """Keep or drop the trace, with the rate applied and the reason."""
        ...

    def fields_used(self) -> frozenset[str]:
        """Every span field name this sampler reads, so span views can decode only those."""
        ...


class UnsupportedSampler(Exception):
    """A rules file names a sampler type this build cannot run; raised when the rules load."""
