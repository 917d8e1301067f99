"""Refinery's WindowedThroughputSampler: a throughput goal over a sliding lookback window.

Counts are kept per `UpdateFrequency` bucket (1s by default). At the end of each bucket the
buckets of the last `LookbackFrequency` (30 × UpdateFrequency by default, rounded down to a whole
number of buckets) are summed per key; that sum is the demand and the budget is
`GoalThroughputPerSec` × the time those buckets cover, split evenly among keys (see
`allotment`; the fairness options are in `throughput`). So rates move every second but are
computed from half a minute of traffic: quick to react, slow to wobble.

Two departures from Refinery, both so the goal is met from the start:
- the budget covers only the time since the oldest bucket with traffic, so the first lookback
  after start-up (or after a quiet spell) is not sampled as if the missing buckets were empty
  traffic (Refinery over-keeps for a whole lookback then);
- keys needing less than an even share hand the rest to the others (Refinery does not).

The floor (one trace per key kept at rate 1) is per lookback window: lookbacks follow each other
from the first call, and each key's first trace in each is kept. Before the first bucket ends
every trace is kept (rate 1), as in Refinery. `MaxKeys` bounds the keys of the current bucket and
those of the lookback. Spans that arrive after their trace was decided (`count_late`) count in
the bucket they arrive in.
"""

from __future__ import annotations

from collections import deque

from refinery_py.config.rules_spec import WindowedThroughputSpec
from refinery_py.decide.allotment import Demand
from refinery_py.decide.throughput import ThroughputSampler

_DEFAULT_LOOKBACK_BUCKETS = 30


class WindowedThroughputSampler(ThroughputSampler):
    """WindowedThroughputSampler over a WindowedThroughputSpec; `name` identifies it."""

    kind = "WindowedThroughputSampler"
    reason = "windowedthroughput"

    __slots__ = ("_buckets", "_lookback", "_sums")

    def __init__(self, spec: WindowedThroughputSpec, name: str) -> None:
        super().__init__(spec, name, interval=spec.update_frequency, initial_rate=1)
        if spec.lookback_frequency > 0:
            # The small epsilon keeps 0.3s / 0.1s from rounding down to 2 buckets.
            buckets = int(spec.lookback_frequency / spec.update_frequency + 1e-9)
        else:
            buckets = _DEFAULT_LOOKBACK_BUCKETS
        self._lookback = max(1, buckets)
        self._buckets: deque[dict[str, list[int]]] = deque()
        self._sums: dict[str, list[int]] = {}

    def _admit(self, key: str) -> bool:
        if len(self._counts) >= self._max_keys:
            return False
        return key in self._sums or len(self._sums) < self._max_keys

    def _floor_index(self) -> int:
        return self._window // self._lookback

    def _push(self, counts: dict[str, list[int]]) -> None:
        """Add a bucket to the lookback, dropping the one that falls out of it."""
        sums = self._sums
        self._buckets.append(counts)
        for key, (spans, traces) in counts.items():
            total = sums.get(key)
            if total is None:
                sums[key] = [spans, traces]
            else:
                total[0] += spans
                total[1] += traces
        if len(self._buckets) > self._lookback:
            for key, (spans, traces) in self._buckets.popleft().items():
                total = sums[key]
                total[0] -= spans
                total[1] -= traces
                if total[0] <= 0 and total[1] <= 0:
                    del sums[key]

    def _close(self, counts: dict[str, list[int]], elapsed: float, regular: bool) -> None:
        self._push(counts)
        if not self._sums:
            return
        covered = self._interval * self._covered_buckets()
        goal = self._goal
        self._plan(
            {key: Demand(spans, traces) for key, (spans, traces) in self._sums.items()},
            goal.budget(covered),
            log_weights=False,
            period=covered,
            min_per_key=goal.min_per_key(covered),
            max_share=goal.max_share,
        )

    def _covered_buckets(self) -> int:
        """Buckets from the oldest one with traffic to the newest."""
        buckets = self._buckets
        for index, bucket in enumerate(buckets):
            if bucket:
                return len(buckets) - index
        return len(buckets)  # pragma: no cover - only called when some bucket has traffic

    def _skip(self, windows: int) -> None:
        if windows >= self._lookback:
            self._buckets.clear()
            self._sums.clear()
            return
        for _ in range(windows):
            self._push({})
