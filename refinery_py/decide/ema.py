"""What the two EMA samplers share: per-key moving averages and burst detection.

At the end of each `AdjustmentInterval` every key's average moves toward the interval's count:
avg = Weight × count + (1 − Weight) × avg, for spans and for traces alike (a key not seen in the
interval counts 0). A key whose span average falls below `AgeOutValue` is forgotten. The
averages are the next interval's demand. An interval with no traffic at all leaves the averages
alone, as in dynsampler: it says nothing about the mix of keys. The first interval, when there
are no averages yet, becomes the averages as it is (dynsampler starts every key from 0, so its
first rates are computed for a fraction `Weight` of the traffic and overshoot a throughput goal
by 1 / Weight for an interval or more).

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

import math

from refinery_py.decide.allotment import Demand

DEFAULT_BURST_MULTIPLE = 2.0
DEFAULT_BURST_DELAY = 3


class MovingAverages:
    """Per-key exponential moving averages of spans and traces per interval."""

    __slots__ = ("_age_out", "_weight", "spans", "traces")

    def __init__(self, weight: float, age_out: float) -> None:
        self._weight = weight
        self._age_out = age_out or weight
        self.spans: dict[str, float] = {}
        self.traces: dict[str, float] = {}

    def update(self, counts: dict[str, list[int]], scale: float) -> None:
        """Fold one interval's counts (each multiplied by `scale`) into the averages."""
        if not self.spans:
            # Nothing to average with yet: the interval is the best estimate there is.
            for key, (span_count, trace_count) in counts.items():
                self.spans[key] = span_count * scale
                self.traces[key] = trace_count * scale
            return
        weight = self._weight
        keep = 1.0 - weight
        age_out = self._age_out
        spans, traces = self.spans, self.traces
        for key in list(spans):
            seen = counts.get(key)
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
        for key, (span_count, trace_count) in counts.items():
            if key not in spans:
                new_spans = weight * span_count * scale
                if new_spans >= age_out:
                    spans[key] = new_spans
                    traces[key] = weight * trace_count * scale

    def demands(self) -> dict[str, Demand]:
        traces = self.traces
        return {key: Demand(spans, traces[key]) for key, spans in self.spans.items()}


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
