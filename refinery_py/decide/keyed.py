"""What the five adaptive samplers share: keys, windows, counting, floors, rates and stats.

Per trace (`decide`): build the key from `FieldList`, count the trace's spans and the trace under
it in the current window, then keep or drop. The first trace of each key in a window is kept at
rate 1 while floors are on (see `allotment`), which is how "every key keeps at least one trace
per window" holds exactly rather than on average; every other trace is kept when
`keep_for_rate(trace_id, rate)` says so, with the key's current rate, so the choice stays a
function of the trace ID and the rate. Until the first window has ended every trace gets the
initial rate (no floors: nothing yet says the goal allows them); after that a key without a
learned rate gets rate 1 (Refinery's rule: a key not seen last time is rare), unless the goal
cannot afford one trace per key (see `allotment`).

Windows. There is no timer: a window ends when a call arrives with `now` at or past its end. The
sampler then hands the window's counts to its subclass (`_close`), which predicts the next
window's demand and calls `_plan` to get new rates. Windows are `interval` long and follow each
other from the first call; after a quiet spell the schedule resumes where it would have been
(`_skip` hears how many empty windows passed; they leave the learned rates alone, since an
empty window says nothing about the key mix, where Refinery's DynamicSampler and
TotalThroughputSampler would forget every rate and keep everything for a window).

Feedback. Rates come from a prediction (last window's counts, or moving averages), and the
prediction is biased in ways that do not average out: keys missing from it are kept at rate 1,
and a key that was busy by chance last window gets a high rate just as its traffic falls back,
while a quiet one gets rate 1 just as it picks up. So each window's kept spans are compared with
what the goal allowed for that window, and the budget of the next plans is scaled by a
correction that integrates the error (half of it per window, bounded to ×0.5..×2). It only
learns from windows whose plan had to sample (with everything kept there is nothing to correct).

Keys. At most `MaxKeys` keys are counted per window; traces of further keys share one overflow
slot and its rate (Refinery samples them at rate 1, so a cardinality explosion blows its goal).
"""

from __future__ import annotations

import heapq
import math
from typing import ClassVar

from refinery_py.decide.allotment import Allotment, Demand, allot, sample_rates
from refinery_py.decide.hashing import MAX_UINT32, trace_hash, upper_bound
from refinery_py.decide.shortfall import explain
from refinery_py.decide.stats import TOP_KEYS, GoalStatus, KeyRate, SamplerStats
from refinery_py.decide.trace_key import TraceKey
from refinery_py.model import Decision, TraceView

DEFAULT_MAX_KEYS = 500
"""Refinery's MaxKeys when the rules say 0."""

OVERFLOW_KEY = "<other keys>"
"""The slot keys beyond MaxKeys share (a built key always ends in `,` or a digit, or is empty)."""

_MAX_REPORTS = 32

_GAIN = 0.5
"""Share of a window's log-error the correction takes in per window (per budget period)."""
_MIN_CORRECTION = 0.5
_MAX_CORRECTION = 2.0


class _Rate:
    """A rate, its hash bound, and the decisions for the key it belongs to, built on first use."""

    __slots__ = ("bound", "drop", "keep", "rate")

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self.bound = upper_bound(rate)
        self.keep: Decision | None = None
        self.drop: Decision | None = None


class KeyedSampler:
    """Base of the adaptive samplers; subclasses implement `_close` (and maybe `_skip`)."""

    kind: ClassVar[str] = ""
    """The type name in the rules file."""
    reason: ClassVar[str] = ""
    """Refinery's reason word for this sampler (`emadynamic`, ...)."""

    __slots__ = (
        "_build_key",
        "_burst_at",
        "_bursts",
        "_correction",
        "_counts",
        "_default_rate",
        "_dropped",
        "_fields",
        "_floor_window",
        "_floored",
        "_floors",
        "_interval",
        "_kept",
        "_kept_spans",
        "_late_spans",
        "_max_keys",
        "_overflow",
        "_period",
        "_planned_keys",
        "_rates",
        "_regulated",
        "_reports",
        "_seen_spans",
        "_start",
        "_status",
        "_top",
        "_window",
        "_window_end",
        "_window_kept",
        "_window_spans",
        "name",
    )

    def __init__(
        self, *, name: str, key: TraceKey, interval: float, max_keys: int, initial_rate: int
    ) -> None:
        self.name = name
        self._build_key = key.build
        self._fields = key.fields
        self._interval = interval
        self._max_keys = max_keys or DEFAULT_MAX_KEYS
        self._counts: dict[str, list[int]] = {}
        self._window_spans = 0
        self._window_kept = 0
        self._correction = 1.0
        self._regulated = False
        self._burst_at = math.inf
        self._start = 0.0
        self._window_end = -math.inf  # not started: the first call starts the first window
        self._window = 0
        self._floor_window = 0
        self._rates: dict[str, _Rate] = {}
        self._default_rate = initial_rate
        self._floors = False  # no floors on the initial rate: nothing says the goal allows them
        self._floored: set[str] = set()
        self._period = interval
        self._planned_keys = 0
        self._top: tuple[KeyRate, ...] = ()
        self._status = GoalStatus(name, 0, True)
        self._reports: list[GoalStatus] = []
        self._kept = self._dropped = self._kept_spans = self._seen_spans = 0
        self._late_spans = self._overflow = self._bursts = 0

    # ---- per trace --------------------------------------------------------------------------

    def decide(self, trace: TraceView, now: float) -> Decision:
        if now >= self._window_end:
            self._advance(now)
        key = self._build_key(trace)
        spans = len(trace.spans)
        slot = self._count(key, spans, 1)
        if self._floors and slot not in self._floored:
            self._floored.add(slot)
            decision = Decision(True, 1, self.reason, key, self.name)
        else:
            entry = self._rates.get(slot)
            if entry is None:
                entry = self._rates[slot] = _Rate(self._default_rate)
            keep = entry.bound == MAX_UINT32 or trace_hash(trace.trace_id) <= entry.bound
            if slot is not key:  # an overflow key: its decisions are not worth caching
                decision = Decision(keep, entry.rate, self.reason, key, self.name)
            elif keep:
                decision = entry.keep or self._cache(entry, True, key)
            else:
                decision = entry.drop or self._cache(entry, False, key)
        self._seen_spans += spans
        if decision.keep:
            self._kept += 1
            self._kept_spans += spans
            self._window_kept += spans
        else:
            self._dropped += 1
        if self._window_spans >= self._burst_at:
            self._burst(now)
        return decision

    def _cache(self, entry: _Rate, keep: bool, key: str) -> Decision:
        decision = Decision(keep, entry.rate, self.reason, key, self.name)
        if keep:
            entry.keep = decision
        else:
            entry.drop = decision
        return decision

    def _count(self, key: str, spans: int, traces: int) -> str:
        """Add to the key's counts in this window; returns the slot counted (key or overflow)."""
        counts = self._counts
        entry = counts.get(key)
        slot = key
        if entry is None:
            if not self._admit(key):
                slot = OVERFLOW_KEY
                self._overflow += traces
                entry = counts.get(slot)
            if entry is None:
                entry = counts[slot] = [0, 0]
        entry[0] += spans
        entry[1] += traces
        self._window_spans += spans
        return slot

    def _admit(self, key: str) -> bool:
        """Whether a key not yet counted in this window may get its own slot."""
        return len(self._counts) < self._max_keys

    def count_late(self, key: str, spans: int, kept: bool, now: float) -> None:
        """Spans of a trace this sampler decided earlier (with key `key`) arrived late."""
        if now >= self._window_end:
            self._advance(now)
        self._count(key, spans, 0)
        self._late_spans += spans
        self._seen_spans += spans
        if kept:
            self._kept_spans += spans
            self._window_kept += spans
        if self._window_spans >= self._burst_at:
            self._burst(now)

    def fields_used(self) -> frozenset[str]:
        return self._fields

    # ---- windows ----------------------------------------------------------------------------

    def _advance(self, now: float) -> None:
        interval = self._interval
        if math.isinf(now):
            return  # no real clock says this; keep the window rather than skip forever
        if self._window_end == -math.inf:
            self._start = now
            self._window_end = now + interval
            return
        ended = self._window_end
        self._close_window(ended, regular=True)
        missed = int((now - ended) // interval)
        if missed > 0:
            self._window += missed
            self._skip(missed)
            self._roll_floors()
        self._start = ended + missed * interval
        self._window_end = self._start + interval

    def _burst(self, now: float) -> None:
        """Traffic jumped: recompute now and start a new window here."""
        self._bursts += 1
        self._close_window(now, regular=False)
        self._start = now
        self._window_end = now + self._interval

    def _close_window(self, end: float, *, regular: bool) -> None:
        counts = self._counts
        elapsed = max(end - self._start, 1e-9)
        if self._regulated and self._window_kept > 0:
            wanted = self._target(self._window_spans, elapsed)
            gain = _GAIN * min(1.0, elapsed / self._period)
            correction = self._correction * (wanted / self._window_kept) ** gain
            self._correction = min(_MAX_CORRECTION, max(_MIN_CORRECTION, correction))
        self._counts = {}
        self._window_spans = 0
        self._window_kept = 0
        self._window += 1
        self._close(counts, elapsed, regular)
        self._roll_floors()

    def _roll_floors(self) -> None:
        """Start a new floor window when one has ended, reporting the goal if it was missed."""
        index = self._floor_index()
        if index == self._floor_window:
            return
        self._floor_window = index
        self._floored = set()
        status = self._status
        # Report a window's status once, and only right after that window was planned (not
        # again for the empty windows of a quiet spell).
        fresh = status.window == self._window
        if fresh and not status.reachable and len(self._reports) < _MAX_REPORTS:
            self._reports.append(status)

    def _floor_index(self) -> int:
        """Which floor window the sampler is in; by default every window is one."""
        return self._window

    def _close(self, counts: dict[str, list[int]], elapsed: float, regular: bool) -> None:
        """A window of `elapsed` seconds ended with these counts (regular: not a burst)."""
        raise NotImplementedError

    def _skip(self, windows: int) -> None:
        """This many windows passed without a single call."""

    def _target(self, spans: int, elapsed: float) -> float:
        """Kept spans the goal allowed in a window of `elapsed` seconds that saw `spans`."""
        raise NotImplementedError

    # ---- planning ---------------------------------------------------------------------------

    def _plan(
        self,
        demands: dict[str, Demand],
        budget: float,
        *,
        log_weights: bool,
        period: float,
        min_per_key: float = 0.0,
        max_share: float = 1.0,
    ) -> None:
        """New rates from the demand expected per `period` seconds and the budget for it."""
        allotment = allot(
            demands,
            budget * self._correction,
            log_weights=log_weights,
            min_per_key=min_per_key,
            max_share=max_share,
        )
        old = self._rates
        rates: dict[str, _Rate] = {}
        for key, rate in sample_rates(demands, allotment).items():
            entry = old.get(key)
            rates[key] = entry if entry is not None and entry.rate == rate else _Rate(rate)
        self._rates = rates
        self._floors = allotment.floors
        self._regulated = allotment.usable > allotment.budget
        self._default_rate = allotment.new_key_rate
        self._period = period
        self._planned_keys = len(demands)
        heaviest = heapq.nlargest(TOP_KEYS, demands, key=lambda k: demands[k].spans)
        self._top = tuple(KeyRate(k, rates[k].rate, demands[k].spans) for k in heaviest)
        message = ""
        if allotment.shortfall:
            message = explain(
                sampler=self.name,
                window=self._window,
                goal=self._goal_text(),
                goal_budget=budget,
                period=period,
                allotment=allotment,
                achievable=lambda spans: self._achievable(spans, allotment),
            )
        self._status = GoalStatus(
            self.name,
            self._window,
            not allotment.shortfall,
            message,
            keys=len(demands),
            budget=budget,
            needed=allotment.minimum,
        )

    def _goal_text(self) -> str:
        """The goal as configured, e.g. `GoalSampleRate 10`."""
        raise NotImplementedError

    def _achievable(self, kept_spans: float, allotment: Allotment) -> str:
        """What keeping `kept_spans` per period means in the goal's own unit."""
        raise NotImplementedError

    def _goal_numbers(self) -> tuple[float, float]:
        """The goal as (average sample rate, kept spans/s); the one that does not apply is 0."""
        raise NotImplementedError

    # ---- reporting --------------------------------------------------------------------------

    def stats(self) -> SamplerStats:
        goal_sample_rate, goal_spans_per_sec = self._goal_numbers()
        return SamplerStats(
            sampler=self.name,
            kind=self.kind,
            kept_traces=self._kept,
            dropped_traces=self._dropped,
            kept_spans=self._kept_spans,
            seen_spans=self._seen_spans,
            late_spans=self._late_spans,
            keys=self._planned_keys,
            overflow_traces=self._overflow,
            bursts=self._bursts,
            correction=self._correction,
            top_keys=self._top,
            goal=self._status,
            goal_sample_rate=goal_sample_rate,
            goal_spans_per_sec=goal_spans_per_sec,
        )

    def take_goal_reports(self) -> list[GoalStatus]:
        reports = self._reports
        self._reports = []
        return reports

    def rate_of(self, key: str) -> int:
        """The rate a non-first trace with this key would get now (for tests and debugging)."""
        entry = self._rates.get(key)
        return self._default_rate if entry is None else entry.rate
