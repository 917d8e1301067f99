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
every trace is kept (rate 1), as in Refinery. Spans that arrive after their trace was decided
(`count_late`) count in the bucket they arrive in.

Keys. Each bucket counts at most `MaxKeys` keys exactly, its tail the rest (see `heavy_keys`),
so the lookback holds at most lookback × `MaxKeys` key counts. When more than `MaxKeys` keys
have counts in the lookback, the heaviest `MaxKeys` are planned on their own and the others,
with the buckets' tails, as one group (not by size class, as the other samplers do: the floor
window and the lookback do not line up); the group stands for the keys of the lookback not
planned on their own, estimated from the distinct keys of the current and the last floor window.
"""

from __future__ import annotations

import heapq
from collections import deque

from refinery_py.config.rules_spec import WindowedThroughputSpec
from refinery_py.decide.allotment import Demand
from refinery_py.decide.heavy_keys import Group, WindowCounts, group
from refinery_py.decide.key_classes import TAIL_KEY
from refinery_py.decide.throughput import ThroughputSampler

_Bucket = tuple[dict[str, list[int]], list[int]]
"""A bucket's [spans, traces] per tracked key, and its tail's [spans, traces]."""

_DEFAULT_LOOKBACK_BUCKETS = 30


class WindowedThroughputSampler(ThroughputSampler):
    """WindowedThroughputSampler over a WindowedThroughputSpec; `name` identifies it."""

    kind = "WindowedThroughputSampler"
    reason = "windowedthroughput"

    __slots__ = ("_buckets", "_lookback", "_sums", "_tail")

    def __init__(self, spec: WindowedThroughputSpec, name: str) -> None:
        super().__init__(spec, name, interval=spec.update_frequency, initial_rate=1)
        if spec.lookback_frequency > 0:
            # The small epsilon keeps 0.3s / 0.1s from rounding down to 2 buckets.
            buckets = int(spec.lookback_frequency / spec.update_frequency + 1e-9)
        else:
            buckets = _DEFAULT_LOOKBACK_BUCKETS
        self._lookback = max(1, buckets)
        self._buckets: deque[_Bucket] = deque()
        self._sums: dict[str, list[int]] = {}
        self._tail = [0, 0]

    def _floor_index(self) -> int:
        return self._window // self._lookback

    def _groups(self, window: WindowCounts) -> dict[str, Group]:
        return {}  # the lookback is planned as a whole (`_demands`)

    def _push(self, counts: dict[str, list[int]], tail: list[int]) -> None:
        """Add a bucket to the lookback, dropping the one that falls out of it."""
        sums = self._sums
        self._buckets.append((counts, tail))
        self._tail[0] += tail[0]
        self._tail[1] += tail[1]
        for key, (spans, traces) in counts.items():
            total = sums.get(key)
            if total is None:
                sums[key] = [spans, traces]
            else:
                total[0] += spans
                total[1] += traces
        if len(self._buckets) > self._lookback:
            old, old_tail = self._buckets.popleft()
            self._tail[0] -= old_tail[0]
            self._tail[1] -= old_tail[1]
            for key, (spans, traces) in old.items():
                total = sums[key]
                total[0] -= spans
                total[1] -= traces
                if total[0] <= 0 and total[1] <= 0:
                    del sums[key]

    def _close(self, window: WindowCounts, elapsed: float, regular: bool) -> None:
        self._push(window.counts, window.tail)
        demands = self._demands()
        if not demands:
            return
        covered = self._interval * self._covered_buckets()
        goal = self._goal
        self._plan(
            demands,
            goal.budget(covered),
            log_weights=False,
            period=covered,
            min_per_key=goal.min_per_key(covered),
            max_share=goal.max_share,
        )

    def _demands(self) -> dict[str, Demand]:
        """The lookback's demand: its `MaxKeys` heaviest keys, and the rest as a group."""
        sums = self._sums
        heavy = sums if len(sums) <= self._max_keys else self._heaviest()
        demands = {key: Demand(*sums[key]) for key in heavy}
        tail_spans, tail_traces = self._tail
        if len(heavy) < len(sums):
            for key, (spans, traces) in sums.items():
                if key not in heavy:
                    tail_spans += spans
                    tail_traces += traces
        if tail_spans > 0 or tail_traces > 0:
            distinct = max(len(sums), len(self._seen), self._memory.window_keys)
            others = distinct - len(demands)
            demands[TAIL_KEY] = group(tail_spans, tail_traces, max(1, others))
        return demands

    def _heaviest(self) -> set[str]:
        sums = self._sums
        return set(heapq.nlargest(self._max_keys, sums, key=lambda key: sums[key][0]))

    def _covered_buckets(self) -> int:
        """Buckets from the oldest one with traffic to the newest."""
        buckets = self._buckets
        for index, (counts, tail) in enumerate(buckets):
            if counts or tail[0] or tail[1]:
                return len(buckets) - index
        return len(buckets)  # pragma: no cover - only called when some bucket has traffic

    def _skip(self, windows: int) -> None:
        if windows >= self._lookback:
            self._buckets.clear()
            self._sums.clear()
            self._tail = [0, 0]
            return
        for _ in range(windows):
            self._push({}, [0, 0])

    def sizes(self) -> dict[str, int]:
        buckets = sum(len(counts) for counts, _ in self._buckets)
        return {**super().sizes(), "lookback sums": len(self._sums), "buckets": buckets}
