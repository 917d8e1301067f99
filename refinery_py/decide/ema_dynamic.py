"""Refinery's EMADynamicSampler: per-key rates averaging `GoalSampleRate`, from moving averages.

Like DynamicSampler, but the demand is each key's exponential moving average of spans and traces
per `AdjustmentInterval` (see `ema`), so one odd interval moves rates only part of the way, and
a key that goes quiet fades out instead of vanishing. The budget is the averaged spans divided by
`GoalSampleRate`, shared out by log-scaled allotment (see `allotment`). Until the first interval
ends every trace gets `GoalSampleRate`.

The goal is a ratio of spans, so spans arriving after their trace was decided count in the
interval they arrive in like any others.
"""

from __future__ import annotations

from refinery_py.config.rules_spec import EMADynamicSpec
from refinery_py.decide.allotment import Allotment
from refinery_py.decide.ema import BurstDetector, MovingAverages
from refinery_py.decide.heavy_keys import WindowCounts
from refinery_py.decide.keyed import KeyedSampler
from refinery_py.decide.trace_key import TraceKey


class EMADynamicSampler(KeyedSampler):
    """EMADynamicSampler over an EMADynamicSpec; `name` identifies it in decisions and stats."""

    kind = "EMADynamicSampler"
    reason = "emadynamic"

    __slots__ = ("_averages", "_bursts_detector", "_goal")

    def __init__(self, spec: EMADynamicSpec, name: str) -> None:
        super().__init__(
            name=name,
            key=TraceKey(spec.field_list, spec.use_trace_length),
            interval=spec.adjustment_interval,
            max_keys=spec.max_keys,
            initial_rate=spec.goal_sample_rate,
        )
        self._goal = spec.goal_sample_rate
        self._averages = MovingAverages(spec.weight, spec.age_out_value, self._max_keys)
        self._bursts_detector = BurstDetector(spec.burst_multiple, spec.burst_detection_delay)

    def _close(self, window: WindowCounts, elapsed: float, regular: bool) -> None:
        averages = self._averages
        if regular:
            self._bursts_detector.intervals += 1
        if window.counts or window.groups:
            averages.update_window(window, self._interval / elapsed)
            demands = averages.demands()
            total = sum(demand.spans * demand.keys for demand in demands.values())
            if total > 0:
                self._plan(demands, total / self._goal, log_weights=True, period=self._interval)
        self._burst_at = self._bursts_detector.threshold(averages)

    def sizes(self) -> dict[str, int]:
        return {**super().sizes(), "averages": len(self._averages.spans)}

    def _skip(self, windows: int) -> None:
        self._bursts_detector.intervals += windows
        self._burst_at = self._bursts_detector.threshold(self._averages)

    def _target(self, spans: int, elapsed: float) -> float:
        return spans / self._goal

    def _goal_text(self) -> str:
        return f"GoalSampleRate {self._goal}"

    def _goal_numbers(self) -> tuple[float, float]:
        return float(self._goal), 0.0

    def _achievable(self, kept_spans: float, allotment: Allotment) -> str:
        return f"an average rate of {allotment.demand / kept_spans:.1f}"
