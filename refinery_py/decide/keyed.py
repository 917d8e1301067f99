"""What the five adaptive samplers share: keys, windows, counting, floors, rates and stats.

Per trace (`decide`): build the key from `FieldList`, count the trace's spans and the trace under
it in the current window, then keep or drop. The first trace of each key in a window is kept at
rate 1 while floors are on (see `allotment`), which is how "every key keeps at least one trace
per window" holds exactly rather than on average; every other trace is kept when
`keep_for_rate(trace_id, rate)` says so, with the key's current rate, so the choice stays a
function of the trace ID and the rate. Until the first window has ended every trace gets the
initial rate (no floors: nothing yet says the goal allows them); after that a key without a
rate of its own gets the rate of keys of its size (see Keys, below).

Windows. There is no timer: a window ends when a call arrives with `now` at or past its end. The
sampler then hands the window's counts to its subclass (`_close`), which predicts the next
window's demand and calls `_plan` to get new rates. Windows are `interval` long and follow each
other from the first call; after a quiet spell the schedule resumes where it would have been
(`_skip` hears how many empty windows passed; they leave the learned rates alone, since an
empty window says nothing about the key mix, where Refinery's DynamicSampler and
TotalThroughputSampler would forget every rate and keep everything for a window).

Feedback. The budget of each plan is scaled by a correction learned from what the sampler
actually kept against what the goal allowed (see `feedback`).

Keys. Memory stays bounded however many keys the traffic brings, and rare keys still get rates
that fit their own rarity:
- per window at most `MaxKeys` keys are counted exactly, the heaviest (Space-Saving, see
  `heavy_keys`), and planned one by one; the others' traffic is the window's tail;
- the window's distinct keys are remembered, up to `SEEN_KEYS_PER_MAX_KEYS` × `MaxKeys` of them,
  with their trace counts and whether one was kept: that floors each key's first trace, sorts
  the tail's keys into size classes (1 trace, 2-3, 4-7, ...) that are planned as groups of keys
  alike (see `key_classes`, `allotment`), and measures the share of active keys that kept a
  trace (`SamplerStats.window_keys_kept`; see `key_memory`);
- a key planned in a group gets its size class's rate, so a key seen once or twice gets the rate
  a key of that size gets (a floor, and a low rate after it), and the goal holds, since the
  groups' floors and rates are paid for from the same budget.
Past the cap of remembered keys a window's new keys get no floor and are sampled at the tail's
overall rate; how many there were is estimated, so the share of keys kept shows it. The cap
leaves room for twice the 10 × `MaxKeys` keys per window at which every key is promised its
floor. (Refinery samples keys past `MaxKeys` at rate 1 and blows its goal; sampling them at one
shared rate, as refinery_py did before, met the goal by all but dropping the rarest customers.)

The first window applies the initial rate to every trace; after it, a key that no plan has
seen (not in the last floor window) gets the plan's rate for new keys: 1 while floors are on, as
in Refinery, or, when the plan has groups, the rate of the size its traces so far reach.
"""

from __future__ import annotations

import heapq
import math
from typing import ClassVar

from refinery_py.decide.allotment import Allotment, Demand, allot, sample_rates
from refinery_py.decide.feedback import Feedback
from refinery_py.decide.hashing import MAX_UINT32, trace_hash
from refinery_py.decide.heavy_keys import Group, WindowCounts
from refinery_py.decide.key_classes import MAX_CLASS, is_group
from refinery_py.decide.key_memory import KeyMemory
from refinery_py.decide.rate import Rate
from refinery_py.decide.shortfall import explain
from refinery_py.decide.stats import TOP_KEYS, GoalStatus, KeyRate, SamplerStats
from refinery_py.decide.trace_key import TraceKey
from refinery_py.model import Decision, TraceView

DEFAULT_MAX_KEYS = 500
"""Refinery's MaxKeys when the rules say 0."""

SEEN_KEYS_PER_MAX_KEYS = 20
"""A window remembers this many distinct keys per MaxKeys (floors, coverage, the tail's size)."""

_MAX_REPORTS = 32


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
        "_counts",
        "_dropped",
        "_feedback",
        "_fields",
        "_floor_window",
        "_floors",
        "_interval",
        "_kept",
        "_kept_spans",
        "_late_spans",
        "_max_keys",
        "_memory",
        "_overflow",
        "_period",
        "_planned_keys",
        "_rates",
        "_rates_cap",
        "_regulated",
        "_reports",
        "_seen",
        "_seen_cap",
        "_seen_spans",
        "_start",
        "_status",
        "_tally",
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
        self._max_keys = max_keys = max_keys or DEFAULT_MAX_KEYS
        self._tally = WindowCounts(max_keys)
        self._counts = self._tally.counts  # the tally's, looked up once per trace
        self._seen: dict[str, int] = {}
        """The floor window's distinct keys: traces there × 2, + 1 once one of them was kept."""
        self._seen_cap = SEEN_KEYS_PER_MAX_KEYS * max_keys
        self._memory = KeyMemory(self._seen_cap, initial_rate)
        self._window_spans = 0
        self._window_kept = 0
        self._feedback = Feedback()
        self._regulated = False
        self._burst_at = math.inf
        self._start = 0.0
        self._window_end = -math.inf  # not started: the first call starts the first window
        self._window = 0
        self._floor_window = 0
        self._rates: dict[str, Rate] = {}
        # Keys without a rate of their own that keep one for the window are remembered with it
        # (so their decisions are cached too): as many again as a plan has keys and groups.
        self._rates_cap = 2 * (max_keys + MAX_CLASS)
        self._floors = False  # no floors on the initial rate: nothing says the goal allows them
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
        spans = trace.span_count
        counted = self._counts.get(key)
        if counted is None:
            counted = self._tally.admit(key)
        counted[0] += spans
        counted[1] += 1
        self._window_spans += spans
        seen = self._seen
        before = seen.get(key)
        if before is None and self._floors and len(seen) < self._seen_cap:
            seen[key] = 3  # one trace, kept
            decision = Decision(True, 1, self.reason, key, self.name)
        else:
            entry = self._rates.get(key)
            if entry is None:
                decision = self._decide_untracked(trace, key, before)
            elif entry.bound == MAX_UINT32 or trace_hash(trace.trace_id) <= entry.bound:
                decision = entry.keep or self._cache(entry, True, key)
            else:
                decision = entry.drop or self._cache(entry, False, key)
            if before is not None:
                seen[key] = (before + 2) | decision.keep
            elif len(seen) < self._seen_cap:
                seen[key] = 2 | decision.keep
            else:
                self._memory.count_past_cap(key, decision.keep)
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

    def _decide_untracked(self, trace: TraceView, key: str, before: int | None) -> Decision:
        """Decide for a key without a rate of its own (see `KeyMemory.rate_for`)."""
        entry, fixed = self._memory.rate_for(key, before, len(self._seen))
        rates = self._rates
        if fixed and len(rates) < self._rates_cap:
            # Its rate holds until the next plan: remember it, so its decisions are cached.
            entry = rates[key] = Rate(entry.rate)
            if entry.bound == MAX_UINT32 or trace_hash(trace.trace_id) <= entry.bound:
                return self._cache(entry, True, key)
            return self._cache(entry, False, key)
        keep = entry.bound == MAX_UINT32 or trace_hash(trace.trace_id) <= entry.bound
        return Decision(keep, entry.rate, self.reason, key, self.name)

    def _cache(self, entry: Rate, keep: bool, key: str) -> Decision:
        decision = Decision(keep, entry.rate, self.reason, key, self.name)
        if keep:
            entry.keep = decision
        else:
            entry.drop = decision
        return decision

    def count_late(self, key: str, spans: int, kept: bool, now: float) -> None:
        """Spans of a trace this sampler decided earlier (with key `key`) arrived late."""
        if now >= self._window_end:
            self._advance(now)
        counted = self._counts.get(key)
        if counted is None:
            counted = self._tally.admit(key)
        counted[0] += spans  # no trace: it was counted when it was decided
        self._window_spans += spans
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
            self._feedback.reset()  # a period with a gap in it measures nothing
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
        window = self._tally
        window.close()
        window.groups = self._groups(window)
        self._overflow += window.moved_traces
        elapsed = max(end - self._start, 1e-9)
        if self._regulated:
            allowed = self._target(self._window_spans, elapsed)
            self._feedback.learn(self._window_kept, allowed, elapsed, self._period)
        else:
            self._feedback.reset()
        self._tally = WindowCounts(self._max_keys)
        self._counts = self._tally.counts
        self._window_spans = 0
        self._window_kept = 0
        self._window += 1
        self._close(window, elapsed, regular)
        self._roll_floors()

    def _roll_floors(self) -> None:
        """Start a new floor window when one has ended, reporting the goal if it was missed."""
        index = self._floor_index()
        if index == self._floor_window:
            return
        self._floor_window = index
        if self._seen:
            self._memory.roll(self._seen)
            self._seen = {}
        status = self._status
        # Report a window's status once, and only right after that window was planned (not
        # again for the empty windows of a quiet spell).
        fresh = status.window == self._window
        if fresh and not status.reachable and len(self._reports) < _MAX_REPORTS:
            self._reports.append(status)

    def _floor_index(self) -> int:
        """Which floor window the sampler is in; by default every window is one."""
        return self._window

    def _groups(self, window: WindowCounts) -> dict[str, Group]:
        """The closing window's tail as groups of keys alike (see `key_classes`)."""
        return self._memory.groups(self._seen, window)

    def _close(self, window: WindowCounts, elapsed: float, regular: bool) -> None:
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
            budget * self._feedback.correction,
            log_weights=log_weights,
            min_per_key=min_per_key,
            max_share=max_share,
        )
        old = self._rates
        rates: dict[str, Rate] = {}
        for key, rate in sample_rates(demands, allotment).items():
            entry = old.get(key)
            rates[key] = entry if entry is not None and entry.rate == rate else Rate(rate)
        self._rates = rates
        self._floors = allotment.floors
        self._regulated = allotment.usable > allotment.budget
        groups = {key: entry.rate for key, entry in rates.items() if is_group(key)}
        self._memory.plan(demands, groups, allotment.new_key_rate)
        self._period = period
        self._planned_keys = round(allotment.keys)
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
            keys=self._planned_keys,
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
            overflow_traces=self._overflow + self._tally.moved_traces,
            window_keys=self._memory.window_keys,
            window_keys_kept=self._memory.window_keys_kept,
            bursts=self._bursts,
            correction=self._feedback.correction,
            top_keys=self._top,
            goal=self._status,
            goal_sample_rate=goal_sample_rate,
            goal_spans_per_sec=goal_spans_per_sec,
        )

    def take_goal_reports(self) -> list[GoalStatus]:
        reports = self._reports
        self._reports = []
        return reports

    def sizes(self) -> dict[str, int]:
        """Entries in each per-key structure (memory checks; subclasses add their own)."""
        return {
            **self._tally.sizes(),
            "seen": len(self._seen),
            "previous": len(self._memory.previous),
            "rates": len(self._rates),
        }

    def rate_of(self, key: str) -> int:
        """The rate a non-first trace with this key would get now (for tests and debugging)."""
        entry = self._rates.get(key)
        if entry is None:
            entry, _ = self._memory.rate_for(key, self._seen.get(key), len(self._seen))
        return entry.rate
