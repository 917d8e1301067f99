"""Refinery's DeterministicSampler: keep one trace in N, chosen by a hash of the trace ID."""

from __future__ import annotations

from refinery_py.config.rules_spec import DeterministicSpec
from refinery_py.decide.hashing import trace_hash, upper_bound
from refinery_py.model import Decision, TraceView

_ALWAYS = Decision(keep=True, rate=1, reason="deterministic/always")
_NO_FIELDS: frozenset[str] = frozenset()


class DeterministicSampler:
    """Keeps a trace when its ID hashes at or below 2**32 / SampleRate (rate ≤ 1 keeps all)."""

    __slots__ = ("_bound", "_drop", "_keep", "_rate")

    def __init__(self, spec: DeterministicSpec) -> None:
        self._rate = spec.sample_rate
        self._bound = upper_bound(self._rate)
        self._keep = Decision(keep=True, rate=self._rate, reason="deterministic/chance")
        self._drop = Decision(keep=False, rate=self._rate, reason="deterministic/chance")

    def decide(self, trace: TraceView, now: float) -> Decision:
        if self._rate <= 1:
            return _ALWAYS
        return self._keep if trace_hash(trace.trace_id) <= self._bound else self._drop

    def fields_used(self) -> frozenset[str]:
        return _NO_FIELDS
