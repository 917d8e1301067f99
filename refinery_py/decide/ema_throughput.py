"""Refinery's EMAThroughputSampler: rates that keep about `GoalThroughputPerSec` spans per second.

The demand is each key's exponential moving average of spans and traces per
`AdjustmentInterval` (see `ema`, which also covers burst detection); the budget is the goal ×
the interval, shared out by log-scaled allotment (see `allotment`) with the fairness options of
`throughput`. Until the first interval ends every trace gets `InitialSampleRate`.

The goal counts spans that leave the node, so spans that arrive after their trace was decided
(`count_late`) count in the interval they arrive in: kept ones use the budget, and all of them
feed the averages (Refinery counts only the spans present at decision time, so traces that keep
growing after the decision overshoot its goal, Refinery issue #1567).
"""

from __future__ import annotations

from refinery_py.config.rules_spec import EMAThroughputSpec
from refinery_py.decide.ema import BurstDetector, MovingAverages
from refinery_py.decide.heavy_keys import WindowCounts
from refinery_py.decide.throughput import ThroughputSampler


class EMAThroughputSampler(ThroughputSampler):
    """EMAThroughputSampler over an EMAThroughputSpec; `name` identifies it."""

    kind = "EMAThroughputSampler"
    reason = "emathroughput"

    __slots__ = ("_averages", "_bursts_detector")

    def __init__(self, spec: EMAThroughputSpec, name: str) -> None:
        super().__init__(
            spec, name, interval=spec.adjustment_interval, initial_rate=spec.initial_sample_rate
        )
        self._averages = MovingAverages(spec.weight, spec.age_out_value, self._max_keys)
        self._bursts_detector = BurstDetector(spec.burst_multiple, spec.burst_detection_delay)

    def _close(self, window: WindowCounts, elapsed: float, regular: bool) -> None:
        averages = self._averages
        if regular:
            self._bursts_detector.intervals += 1
        if window.counts or window.groups:
            averages.update_window(window, self._interval / elapsed)
            interval = self._interval
            goal = self._goal
            self._plan(
                averages.demands(),
                goal.budget(interval),
                log_weights=True,
                period=interval,
                min_per_key=goal.min_per_key(interval),
                max_share=goal.max_share,
            )
        self._burst_at = self._bursts_detector.threshold(averages)

    def sizes(self) -> dict[str, int]:
        return {**super().sizes(), "averages": len(self._averages.spans)}

    def _skip(self, windows: int) -> None:
        self._bursts_detector.intervals += windows
        self._burst_at = self._bursts_detector.threshold(self._averages)
