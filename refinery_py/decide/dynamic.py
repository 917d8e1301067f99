"""Refinery's DynamicSampler: per-key rates that average `SampleRate` over `ClearFrequency`.

Each window (`ClearFrequency`, 30s by default) counts spans and traces per key. When it ends,
those counts are taken as the next window's demand: the budget is the window's spans divided by
`SampleRate`, shared among keys by log-scaled allotment (see `allotment`), so rare keys keep
everything, every key keeps at least one trace, and heavy keys carry the high rates. Past
`MaxKeys` keys per window the lightest are planned as one group (see `keyed`). Until the first
window ends every trace gets `SampleRate`.

The goal is a ratio of spans (as in dynsampler, which counts every span of a trace), so spans
that arrive after their trace was decided count in the window they arrive in like any others.
"""

from __future__ import annotations

from refinery_py.config.rules_spec import DynamicSpec
from refinery_py.decide.allotment import Allotment
from refinery_py.decide.heavy_keys import WindowCounts
from refinery_py.decide.keyed import KeyedSampler
from refinery_py.decide.trace_key import TraceKey


class DynamicSampler(KeyedSampler):
    """DynamicSampler over a DynamicSpec; `name` identifies it in decisions and stats."""

    kind = "DynamicSampler"
    reason = "dynamic"

    __slots__ = ("_goal",)

    def __init__(self, spec: DynamicSpec, name: str) -> None:
        super().__init__(
            name=name,
            key=TraceKey(spec.field_list, spec.use_trace_length),
            interval=spec.clear_frequency,
            max_keys=spec.max_keys,
            initial_rate=spec.sample_rate,
        )
        self._goal = spec.sample_rate

    def _close(self, window: WindowCounts, elapsed: float, regular: bool) -> None:
        demands = window.demands()
        total = sum(demand.spans * demand.keys for demand in demands.values())
        if total <= 0:
            return
        self._plan(demands, total / self._goal, log_weights=True, period=self._interval)

    def _target(self, spans: int, elapsed: float) -> float:
        return spans / self._goal

    def _goal_text(self) -> str:
        return f"SampleRate {self._goal}"

    def _goal_numbers(self) -> tuple[float, float]:
        return float(self._goal), 0.0

    def _achievable(self, kept_spans: float, allotment: Allotment) -> str:
        return f"an average rate of {allotment.demand / kept_spans:.1f}"
