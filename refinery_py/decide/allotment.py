"""Share a window's budget of kept spans among keys, then turn each key's share into a rate.

Every adaptive sampler comes down to the same step at the end of a window: it knows, per key,
how many spans and traces to expect in the next window (`Demand`), and how many kept spans the
goal allows (the budget: spans seen / GoalSampleRate, or GoalThroughputPerSec × seconds). This
module decides how many kept spans each key gets (its level) and the sample rate that yields it.

Levels. A key is never given more than it has. Each key first gets a floor: one trace's worth of
spans, so every key keeps at least one trace per window, plus, with `PerKeyMinPerSec`, enough to
reach that minimum. What is left is spread in proportion to a weight, log10(spans) for the EMA
and plain dynamic samplers (dynsampler's log-scaled allotment: heavy keys get more, but far less
than their traffic share, so they get higher rates) or 1 for the windowed and total throughput
samplers (an even split). `PerKeyMaxShare` caps any key at that fraction of the budget. The
spread is solved exactly, by water-filling: level = min(cap, floor + λ·weight) with λ chosen so
the levels add up to the budget; keys that reach their cap or their whole traffic hand the rest
to the others. (dynsampler hands leftovers only to keys that sort after it by name, in one pass,
and the throughput samplers do not hand leftovers on at all, so they undershoot their goal
whenever some keys are small.)

When the goal does not allow that much, it wins over the floors, and the allotment says why:
- the `PerKeyMinPerSec` floors do not fit: each key keeps one trace and the minimums are scaled
  down to fit (shortfall "minimum");
- even one trace per key does not fit (more keys than the goal allows, Refinery #1004): floors
  are dropped and every key gets the same fraction of a trace, keys not foreseen included
  (shortfall "keys");
- `PerKeyMaxShare` caps leave part of a budget that traffic could fill unused (shortfall "share").

Groups. A `Demand` may stand for `keys` similar keys (the tail of a sampler that tracks only
its `MaxKeys` heaviest keys exactly, see `heavy_keys`): its spans and traces are each member's,
and it counts `keys` times everywhere, in the floors, the weights and the budget, so each
member is allotted what a key of its own size would be, and gets one rate.

Rates. With floors on, a key's first trace in a window is kept at rate 1 (the sampler does
this), so the rest of its traffic is sampled at r = (spans - one trace) / (level - one trace);
reported rates stay unbiased because the floor trace says rate 1. Rates are integers, so each
key's rate is rounded to whichever neighbour lands nearer its level and the difference is carried
to the next key, smallest keys first (never past a key's cap), so rounding does not bias the
total (dynsampler always rounds up and under-keeps). A floored key is never sampled at more than
`FLOOR_SPREAD` times its expected trace count, so one kept trace never stands for more than that
many windows of it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import NamedTuple

FLOOR_SPREAD = 10.0
"""With floors on, a key's rate is at most this many times its expected traces per window."""

MAX_RATE = 1_000_000_000
"""No rate above this (the goal could demand it only with absurdly many keys per window)."""

CAP_SLACK = 0.01
"""How far past its PerKeyMaxShare cap rounding may take a key (1%)."""

SHORTFALL_KEYS = "keys"
SHORTFALL_MINIMUM = "minimum"
SHORTFALL_SHARE = "share"


class Demand(NamedTuple):
    """What a key is expected to bring in one window. (A tuple: windows build thousands.)"""

    spans: float
    traces: float
    keys: float = 1.0
    """How many keys alike this stands for; `spans` and `traces` are each one's."""

    @property
    def one_trace(self) -> float:
        """Expected spans of one of its traces (all of them if it has at most one)."""
        return _one_trace(self.spans, self.traces)


def _one_trace(spans: float, traces: float) -> float:
    if traces <= 0:
        return 0.0  # only late spans: no trace of it will be decided, so no floor
    return spans / traces if traces > 1 else spans


@dataclass(frozen=True, slots=True)
class Allotment:
    """Kept spans per key for one window, and how the budget compared with what keys need."""

    levels: dict[str, float]
    """Kept spans per key (per member of a group)."""
    caps: dict[str, float]
    """The most each key may be given: its traffic, or its PerKeyMaxShare cap."""
    keys: float
    """Keys the demand covers, each member of a group counted."""
    floors: bool
    """Whether each key's first trace in a window is kept at rate 1."""
    budget: float
    demand: float
    """Spans expected from all keys."""
    one_trace: float
    """Spans one trace per key would take."""
    minimum: float
    """Spans the floors would take (one trace per key, or the PerKeyMinPerSec minimum)."""
    usable: float
    """The most the keys could take under their caps (traffic and PerKeyMaxShare)."""
    shortfall: str
    """Why the goal cannot be met as configured: "", "keys", "minimum" or "share"."""
    new_key_rate: int
    """The rate for a key the demand did not foresee: 1 while floors are on (it is a rare key,
    and its floor would keep its trace anyway), else what a one-trace key gets."""


def allot(
    demands: Mapping[str, Demand],
    budget: float,
    *,
    log_weights: bool,
    min_per_key: float = 0.0,
    max_share: float = 1.0,
) -> Allotment:
    """Levels for every key; `min_per_key` is in spans per window, `max_share` a fraction."""
    keys = list(demands)
    spans = [demand.spans for demand in demands.values()]
    ones = [_one_trace(n, t) for n, t, _ in demands.values()]
    counts = [demand.keys for demand in demands.values()]
    if all(count == 1 for count in counts):
        counts = []  # no groups: plain sums (`_total`)
    cap = max_share * budget if max_share < 1 else math.inf
    lows = [max(one, min(n, min_per_key)) for one, n in zip(ones, spans, strict=True)]
    highs = [min(n, max(low, cap)) for n, low in zip(spans, lows, strict=True)]
    demand, one_trace = _total(spans, counts), _total(ones, counts)
    minimum, usable = _total(lows, counts), _total(highs, counts)
    shortfall = ""
    floors = True
    new_key_rate = 1
    if usable <= budget:
        levels = highs
        if usable < budget <= demand:
            shortfall = SHORTFALL_SHARE
    elif minimum <= budget:
        if log_weights:
            weights = [math.log10(n) if n > 1 else 0.0 for n in spans]
        else:
            weights = [1.0 if n > 0 else 0.0 for n in spans]
        levels = _water_fill(lows, highs, weights, counts, budget)
    elif one_trace <= budget:
        shortfall = SHORTFALL_MINIMUM
        part = (budget - one_trace) / (minimum - one_trace)
        levels = [one + part * (low - one) for one, low in zip(ones, lows, strict=True)]
    else:
        shortfall = SHORTFALL_KEYS
        floors = False
        part = budget / one_trace
        levels = [part * one for one in ones]
        new_key_rate = min(MAX_RATE, max(1, round(1 / part))) if part > 0 else MAX_RATE
    return Allotment(
        levels=dict(zip(keys, levels, strict=True)),
        caps=dict(zip(keys, highs, strict=True)),
        keys=sum(counts) if counts else len(keys),
        floors=floors,
        budget=budget,
        demand=demand,
        one_trace=one_trace,
        minimum=minimum,
        usable=usable,
        shortfall=shortfall,
        new_key_rate=new_key_rate,
    )


def _total(values: list[float], counts: list[float]) -> float:
    """The sum over keys, each group's value counted once per member (no counts: each once)."""
    if not counts:
        return sum(values)
    return sum(value * count for value, count in zip(values, counts, strict=True))


def _water_fill(
    lows: list[float],
    highs: list[float],
    weights: list[float],
    counts: list[float],
    budget: float,
) -> list[float]:
    """min(high, low + λ·weight) for the λ that makes them sum (× counts, if any) to `budget`.

    The caller guarantees Σ count·low ≤ budget < Σ count·high. The sum grows linearly in λ
    between the points where keys reach their caps, so walking those points in order finds λ
    exactly.
    """
    need = budget - _total(lows, counts)
    slopes = (
        [weight * count for weight, count in zip(weights, counts, strict=True)]
        if counts
        else weights
    )
    growing = [
        ((high - low) / weight, slope)
        for low, high, weight, slope in zip(lows, highs, weights, slopes, strict=True)
        if weight > 0 and high > low
    ]
    growing.sort()
    slope = sum(weight for _, weight in growing)
    level = 0.0
    for full_at, weight in growing:
        gain = slope * (full_at - level)
        if gain >= need:
            level += need / slope
            break
        need -= gain
        level = full_at
        slope -= weight
    else:
        level = math.inf
    return [
        min(high, low + level * weight) if weight > 0 else low
        for low, high, weight in zip(lows, highs, weights, strict=True)
    ]


def sample_rates(demands: Mapping[str, Demand], allotment: Allotment) -> dict[str, int]:
    """The integer rate per key that keeps, in expectation, its level (see the module doc)."""
    levels = allotment.levels
    caps = allotment.caps
    floors = allotment.floors
    rates: dict[str, int] = {}
    carry = 0.0
    for key, (each, traces, count) in sorted(demands.items(), key=_by_spans):
        # A group's members all get one rate, so it is rounded as one key of their total.
        owed = count * levels[key] + carry
        cap = count * caps[key]
        spans = count * each
        want = owed if owed < cap else cap  # the carry never lifts a key over its share cap
        if want >= spans or spans <= 0:
            rates[key] = 1
            carry = owed - spans
            continue
        one = count * _one_trace(each, traces) if floors else 0.0
        rest = spans - one
        limit = max(1, math.ceil(FLOOR_SPREAD * traces)) if floors else MAX_RATE
        if want <= one:
            rate = limit
        else:
            rate = _nearest_rate(rest, want - one, cap - one)
            rate = min(rate, limit)
        rates[key] = rate
        carry = owed - (one + rest / rate)
    return rates


def _by_spans(item: tuple[str, Demand]) -> float:
    return item[1].spans


def _nearest_rate(rest: float, room: float, most: float) -> int:
    """The integer r ≥ 1 for which rest / r is nearest to `room` without exceeding `most`."""
    exact = rest / room
    if exact >= MAX_RATE:
        return MAX_RATE
    low = max(1, int(exact))
    high = low + 1
    # A cap is a promise: the nearer rate may not break it by more than a rounding hair.
    if rest / low > most * (1 + CAP_SLACK) or abs(rest / low - room) > abs(rest / high - room):
        return high
    return low
