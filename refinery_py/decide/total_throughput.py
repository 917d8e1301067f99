"""Refinery's TotalThroughputSampler: a fixed span budget per `ClearFrequency`, split evenly.

Each window counts spans and traces per key; when it ends, those counts are the next window's
demand and the budget is `GoalThroughputPerSec` × `ClearFrequency` spans, split evenly among
keys (see `allotment`): every key one trace first, then equal shares, keys that need less than
their share handing the rest to the others. Refinery splits the budget evenly with no hand-on,
so with a few heavy keys and many light ones it keeps far less than its goal. Until the first
window ends every trace is kept (rate 1), as in Refinery. The fairness options are in
`throughput`.

Spans that arrive after their trace was decided (`count_late`) count in the window they arrive
in, so the goal is met on the spans that actually leave the node (Refinery issue #1567).
"""

from __future__ import annotations

from refinery_py.config.rules_spec import TotalThroughputSpec
from refinery_py.decide.heavy_keys import WindowCounts
from refinery_py.decide.throughput import ThroughputSampler


class TotalThroughputSampler(ThroughputSampler):
    """TotalThroughputSampler over a TotalThroughputSpec; `name` identifies it."""

    kind = "TotalThroughputSampler"
    reason = "totalthroughput"

    __slots__ = ()

    def __init__(self, spec: TotalThroughputSpec, name: str) -> None:
        super().__init__(spec, name, interval=spec.clear_frequency, initial_rate=1)

    def _close(self, window: WindowCounts, elapsed: float, regular: bool) -> None:
        demands = window.demands()
        if not demands:
            return
        interval = self._interval
        goal = self._goal
        self._plan(
            demands,
            goal.budget(interval),
            log_weights=False,
            period=interval,
            min_per_key=goal.min_per_key(interval),
            max_share=goal.max_share,
        )
