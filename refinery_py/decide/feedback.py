"""The correction an adaptive sampler applies to its budget, learned from what it kept.

Rates come from a prediction (last window's counts, or moving averages), and the prediction is
biased in ways that do not average out: keys missing from it are kept at rate 1, and a key that
was busy by chance last window gets a high rate just as its traffic falls back, while a quiet
one gets rate 1 just as it picks up. So the spans kept are compared with what the goal allowed,
and the budget of the next plans is scaled by a correction that integrates the error (half of
it per budget period, bounded to ×0.5..×2). It only learns from windows whose plan had to
sample (with everything kept there is nothing to correct).

The error is measured over at least one budget period (the lookback of the windowed sampler,
whose windows are its 1s buckets). The log of a handful of kept traces is biased low (Jensen),
so an integrator fed one small bucket at a time settles where each bucket keeps more than its
share: 16% over a goal of 10 spans/s with 1-3-span traces, where over a whole period the bias
is a fraction of a percent. A period that kept nothing counts as the largest error, not as none.
"""

from __future__ import annotations

GAIN = 0.5
"""Share of a budget period's log-error the correction takes in."""
MIN_CORRECTION = 0.5
MAX_CORRECTION = 2.0


class Feedback:
    """The budget correction, and the kept and allowed spans of the period being measured."""

    __slots__ = ("_allowed", "_elapsed", "_kept", "correction")

    def __init__(self) -> None:
        self.correction = 1.0
        self._kept = self._allowed = self._elapsed = 0.0

    def learn(self, kept: float, allowed: float, elapsed: float, period: float) -> None:
        """A window of `elapsed` seconds kept `kept` spans where the goal allowed `allowed`;
        correct once the windows measured cover a budget `period`."""
        self._kept += kept
        self._allowed += allowed
        self._elapsed += elapsed
        if self._elapsed < period * (1 - 1e-9):
            return
        error = self._allowed / self._kept if self._kept > 0 else MAX_CORRECTION
        self.reset()
        correction = self.correction * error**GAIN
        self.correction = min(MAX_CORRECTION, max(MIN_CORRECTION, correction))

    def reset(self) -> None:
        """Forget the period being measured (its windows did not all sample, or had a gap)."""
        self._kept = self._allowed = self._elapsed = 0.0
