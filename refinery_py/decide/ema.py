"""What the two EMA samplers share: per-key moving averages and burst detection.

At the end of each `AdjustmentInterval` every key's average moves toward the interval's count:
avg = Weight × count + (1 − Weight) × avg, for spans and for traces alike (a key not seen in the
interval counts 0). A key whose span average falls below `AgeOutValue` is forgotten. The
averages are the next interval's demand. An interval with no traffic at all leaves the averages
alone, as in dynsampler: it says nothing about the mix of keys. The first interval, when there
are no averages yet, becomes the averages as it is (dynsampler starts every key from 0, so its
first rates are computed for a fraction `Weight` of the traffic and overshoot a throughput goal
by 1 / Weight for an interval or more).

The groups of an interval (its keys not among the `MaxKeys` counted exactly, by size class, see
`key_classes`) are averaged like keys, and so is the number of keys each stands for. At most
`MaxKeys` keys keep averages of their own: past that, the smallest are folded into the group of
their size (by trace average), each adding its share of an interval's keys (its trace average,
at most 1), so memory stays bounded even when the heavy keys change from one interval to the
next. A key with an average of its own that the next interval saw but did not count exactly
(its traffic is in a group now) is folded into that group at once rather than decayed as if
absent, so its traffic is not counted twice.

Burst detection: once `BurstDetectionDelay` regular intervals have passed, an interval whose
span count reaches `BurstMultiple` × (the sum of the span averages, each at least 1) ends at
once and rates are recomputed; the next interval starts there. A partial interval's counts are
scaled up to a whole interval before they enter the averages, so a burst is weighed at the rate
it arrived at (dynsampler feeds the partial counts in as they are, which under-weighs exactly the
bursts it was meant to catch).

Defaults follow dynsampler where the rules file cannot express "unset": `AgeOutValue` 0 means
`Weight`, `BurstMultiple` 0 means 2, `BurstDetectionDelay` 0 means 3.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Mapping, Sequence

from refinery_py.decide.allotment import Demand
from refinery_py.decide.heavy_keys import Group, WindowCounts, group
from refinery_py.decide.key_classes import CLASS_KEYS, size_class

DEFAULT_BURST_MULTIPLE = 2.0
DEFAULT_BURST_DELAY = 3


class MovingAverages:
    """Per-key exponential moving averages of spans and traces per interval, for at most
    `limit` keys and for groups of keys alike (with the average number of keys in each)."""

    __slots__ = ("_age_out", "_limit", "_weight", "members", "spans", "traces")

    def __init__(self, weight: float, age_out: float, limit: int | None = None) -> None:
        self._weight = weight
        self._age_out = age_out or weight
        self._limit = limit
        self.spans: dict[str, float] = {}
        self.traces: dict[str, float] = {}
        self.members: dict[str, float] = {}
        """The average number of keys of each group (groups only)."""

    def update_window(self, window: WindowCounts, scale: float) -> None:
        """Fold one interval's counts, groups included, into the averages (see `update`)."""
        if window.groups:
            self._join_groups(window.counts, window.seen)
        self.update(window.counts, scale, window.groups)

    def _join_groups(self, counts: Mapping[str, Sequence[int]], seen: Mapping[str, int]) -> None:
        """Fold keys that the interval saw without counting them exactly into their groups."""
        members = self.members
        for key in [key for key in self.spans if key not in members and key not in counts]:
            traces = seen.get(key)
            if traces:
                self._fold(key, CLASS_KEYS[size_class(traces)])

    def update(
        self,
        counts: Mapping[str, Sequence[int]],
        scale: float,
        groups: Mapping[str, Group] | None = None,
    ) -> None:
        """Fold one interval's counts and groups, each multiplied by `scale`, into the
        averages."""
        window: dict[str, Sequence[float]] = dict(counts)
        groups = groups or {}
        for name, (group_spans, group_traces, _) in groups.items():
            window[name] = (group_spans, group_traces)
        spans, traces, members = self.spans, self.traces, self.members
        if not spans:
            # Nothing to average with yet: the interval is the best estimate there is.
            for key, (span_count, trace_count) in window.items():
                spans[key] = span_count * scale
                traces[key] = trace_count * scale
            for name, (_, _, keys) in groups.items():
                members[name] = keys * scale
            self._bound()
            return
        weight = self._weight
        keep = 1.0 - weight
        age_out = self._age_out
        for name in members:
            members[name] *= keep
        for name, (_, _, keys) in groups.items():
            members[name] = members.get(name, 0.0) + weight * keys * scale
        for key in list(spans):
            seen = window.get(key)
            new_spans = keep * spans[key]
            new_traces = keep * traces[key]
            if seen is not None:
                new_spans += weight * seen[0] * scale
                new_traces += weight * seen[1] * scale
            if new_spans < age_out:
                del spans[key], traces[key]
            else:
                spans[key] = new_spans
                traces[key] = new_traces
        for key, (span_count, trace_count) in window.items():
            if key not in spans:
                new_spans = weight * span_count * scale
                if new_spans >= age_out:
                    spans[key] = new_spans
                    traces[key] = weight * trace_count * scale
        for name in [name for name in members if name not in spans]:
            del members[name]
        self._bound()

    def _bound(self) -> None:
        """Fold the smallest keys into the group of their size while more than `limit` keys
        have averages of their own."""
        spans, traces, members = self.spans, self.traces, self.members
        excess = len(spans) - len(members) - (self._limit or len(spans))
        if excess <= 0:
            return
        own = (key for key in spans if key not in members)
        for key in heapq.nsmallest(excess, own, key=spans.__getitem__):
            self._fold(key, CLASS_KEYS[size_class(max(1, round(traces[key])))])

    def _fold(self, key: str, name: str) -> None:
        """Move a key's averages into group `name`'s, as its share of a key (at most 1)."""
        spans, traces, members = self.spans, self.traces, self.members
        folded_traces = traces.pop(key)
        spans[name] = spans.get(name, 0.0) + spans.pop(key)
        traces[name] = traces.get(name, 0.0) + folded_traces
        members[name] = members.get(name, 0.0) + min(1.0, folded_traces)

    def demands(self) -> dict[str, Demand]:
        traces, members = self.traces, self.members
        demands = {}
        for key, spans in self.spans.items():
            keys = members.get(key)
            if keys is None:
                demands[key] = Demand(spans, traces[key])
            else:
                demands[key] = group(spans, traces[key], keys or 1.0)
        return demands


class BurstDetector:
    """When an interval's span count means a burst, given the averages and the intervals so far."""

    __slots__ = ("_delay", "_multiple", "intervals")

    def __init__(self, multiple: float, delay: int) -> None:
        self._multiple = multiple or DEFAULT_BURST_MULTIPLE
        self._delay = delay or DEFAULT_BURST_DELAY
        self.intervals = 0
        """Regular (not burst-triggered) intervals ended so far."""

    def threshold(self, averages: MovingAverages) -> float:
        """The span count that triggers a recomputation; infinite while detection is off."""
        if self._multiple < 0 or self.intervals < self._delay or not averages.spans:
            return math.inf
        return self._multiple * sum(max(1.0, spans) for spans in averages.spans.values())
