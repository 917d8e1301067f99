"""What an adaptive sampler remembers of a window's keys beyond the ones it counts exactly.

The sampler keeps, per floor window, every distinct key it sees (up to `cap` of them) with its
trace count there and whether one of its traces was kept: a plain dict the hot path reads and
writes itself (`KeyedSampler.decide`), value = traces × 2 + 1 once kept. This module holds what
follows from it:

- the last floor window's dict (`previous`), so a key outside the ones counted exactly gets the
  rate of its size class there (see `key_classes`);
- past the cap, an estimate of how many more keys came and how many of those kept a trace (see
  `distinct`), so the share of active keys kept stays honest when floors no longer reach them;
- that share for the last floor window with traffic (`window_keys`, `window_keys_kept`);
- the rate of each size class, and of the tail as a whole, from the last plan.
"""

from __future__ import annotations

from collections.abc import Mapping

from refinery_py.decide.allotment import Demand
from refinery_py.decide.distinct import DistinctCount
from refinery_py.decide.heavy_keys import Group, WindowCounts
from refinery_py.decide.key_classes import (
    MAX_CLASS,
    class_groups,
    rates_by_class,
    restore,
    size_class,
    tail_rate,
)
from refinery_py.decide.rate import Rate


class KeyMemory:
    """The last floor window's keys, the estimate past the cap, and the size classes' rates."""

    __slots__ = (
        "_classes",
        "_grouped",
        "_past",
        "_tail",
        "cap",
        "previous",
        "window_keys",
        "window_keys_kept",
    )

    def __init__(self, cap: int, initial_rate: int) -> None:
        self.cap = cap
        """The most keys a floor window's dict holds."""
        self.previous: dict[str, int] = {}
        """The dict of the last floor window that had traffic."""
        self.window_keys = 0
        """Distinct keys of the last floor window with traffic (past the cap, estimated)."""
        self.window_keys_kept = 0
        """How many of those kept a trace there."""
        self._past: tuple[DistinctCount, DistinctCount] | None = None
        self._grouped = False
        self._classes = [Rate(initial_rate)] * (MAX_CLASS + 1)
        self._tail = self._classes[1]

    def count_past_cap(self, key: str, kept: bool) -> None:
        """A trace of a key the floor window's dict had no room for."""
        past = self._past
        if past is None:
            past = self._past = (DistinctCount(), DistinctCount())
        past[0].add(key)
        if kept:
            past[1].add(key)

    def roll(self, seen: dict[str, int]) -> None:
        """A floor window ended with these keys; an empty one (a quiet spell) changes nothing."""
        if not seen:
            return
        self.window_keys = len(seen)
        self.window_keys_kept = sum(value & 1 for value in seen.values())
        past = self._past
        if past is not None:
            self.window_keys += past[0].estimate()
            self.window_keys_kept += past[1].estimate()
            self._past = None
        self.previous = seen

    def groups(self, seen: Mapping[str, int], window: WindowCounts) -> dict[str, Group]:
        """The closing window's tail as groups by size class (see `key_classes`)."""
        window.seen = {key: value >> 1 for key, value in seen.items()}
        restore(window.counts, window.tail, window.seen)
        return class_groups(window.seen, window.counts, window.tail)

    def plan(self, demands: Mapping[str, Demand], groups: Mapping[str, int], default: int) -> None:
        """A plan gave these rates to its groups; `default` is its rate for new keys."""
        self._grouped = bool(groups)
        shared = {rate: Rate(rate) for rate in {*groups.values(), default}}
        self._classes = [shared[rate] for rate in rates_by_class(groups, default)]
        self._tail = Rate(tail_rate(demands, groups)) if groups else shared[default]

    def rate_for(self, key: str, before: int | None, seen: int) -> tuple[Rate, bool]:
        """The rate of a key without one of its own, and whether it holds for the rest of the
        window. `before` is the key's value in the floor window's dict, `seen` the dict's size.

        Without groups in the plan, every such key is new: the plan's rate for new keys. Else
        the rate of the key's size class: the larger of its class in the last floor window and
        the class its traces so far in this one reach (a new key is small until it proves
        otherwise, and a key that grows gets the rate of its new size at once); for a key that
        is in neither dict, past the cap, the tail's overall rate."""
        if not self._grouped:
            return self._classes[1], True
        last = self.previous.get(key)
        if before is not None:
            count = (before >> 1) + 1
        elif seen < self.cap:
            count = 1
        elif last is None:
            return self._tail, False
        else:
            count = 1
        if last is not None and last >> 1 > count:
            count = last >> 1
        return self._classes[size_class(count)], False
