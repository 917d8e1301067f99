"""Rates for the keys a window did not count one by one, from how rare each of them is.

A sampler counts at most `MaxKeys` keys exactly (see `heavy_keys`); the others' traffic is one
tail. Planning that tail as one group would give a key seen once the rate of a key seen fifty
times. But the sampler remembers every key of a window (up to a cap, see `keyed`) with its trace
count there, so the tail's keys are grouped by size class: 1 trace, 2-3, 4-7, 8-15, ... (powers
of two). Each class is planned as that many keys alike (see `allotment`), its members getting
the same share of the tail's spans per trace, and in the next window a key outside the tracked
ones gets the rate of the class it fell in last time (or of the one its traces so far reach, if
that is larger; see `key_memory`): the rate a key of about its size gets.

A tracked key that lost its slot earlier in the window and won it back has part of its traffic
in the tail; its remembered trace count says how much, so that part (with its spans at the
key's own spans per trace) goes back to it first. Then each class's traces and spans are scaled
so the classes add up to what is left of the tail exactly: what the remembered counts miss (the
keys past the cap) is spread over the classes in proportion, so the budget is still computed
from every span of the window.
"""

from __future__ import annotations

from collections.abc import Container, Mapping

from refinery_py.decide.allotment import Demand
from refinery_py.decide.heavy_keys import Group

MAX_CLASS = 24
"""Size classes 1..MAX_CLASS; the last holds every key of 2^23 traces or more."""

TAIL_KEY = "<other keys>"
"""A group of untracked keys of any size. Group names end in `>`, and a built key always ends
in `,` or a digit, or is empty, so no trace's key is a group's name."""

CLASS_KEYS = (
    "",
    "<other keys: 1 trace>",
    *(f"<other keys: {1 << (size - 1)}-{(1 << size) - 1} traces>" for size in range(2, MAX_CLASS)),
    f"<other keys: {1 << (MAX_CLASS - 1)}+ traces>",
)
"""The group name of each size class (index 0 unused)."""

_GROUPS = frozenset((*CLASS_KEYS[1:], TAIL_KEY))


def size_class(traces: int) -> int:
    """1 for one trace, 2 for 2-3, 3 for 4-7, ..."""
    return min(max(1, traces.bit_length()), MAX_CLASS)


def restore(
    counts: dict[str, list[int]], tail: list[int], traces_by_key: Mapping[str, int]
) -> None:
    """Move the traffic tracked keys had before they won their slot back from the tail."""
    for key, entry in counts.items():
        spans, traces = entry
        missing = min(traces_by_key.get(key, 0) - traces, tail[1])
        if missing > 0 and traces > 0:
            moved = min(tail[0], round(missing * spans / traces))
            entry[0] += moved
            entry[1] += missing
            tail[0] -= moved
            tail[1] -= missing


def class_groups(
    traces_by_key: Mapping[str, int], tracked: Container[str], tail: list[int]
) -> dict[str, Group]:
    """The tail's [spans, traces] as groups by size class of the untracked keys' trace counts."""
    tail_spans, tail_traces = tail
    if tail_spans <= 0 and tail_traces <= 0:
        return {}
    members = [0] * (MAX_CLASS + 1)
    traces = [0] * (MAX_CLASS + 1)
    for key, count in traces_by_key.items():
        if key not in tracked:
            size = size_class(count)
            members[size] += 1
            traces[size] += count
    counted = sum(traces)
    if counted <= 0:
        return {TAIL_KEY: (tail_spans, tail_traces, 1.0)}
    span_share = tail_spans / counted
    trace_share = tail_traces / counted
    return {
        CLASS_KEYS[size]: (traces[size] * span_share, traces[size] * trace_share, members[size])
        for size in range(1, MAX_CLASS + 1)
        if members[size]
    }


def rates_by_class(rates: Mapping[str, int], fallback: int) -> list[int]:
    """The rate for each size class: its group's, else the nearest smaller class's (else the
    nearest larger one's, else a single tail group's, else `fallback`)."""
    planned = [rates.get(name) for name in CLASS_KEYS]
    known = [rate for rate in planned[1:] if rate is not None]
    last = known[0] if known else rates.get(TAIL_KEY, fallback)
    result = [fallback]
    for rate in planned[1:]:
        if rate is not None:
            last = rate
        result.append(last)
    return result


def is_group(key: str) -> bool:
    """Whether a planned key is a group (a class or the tail) rather than a trace's key."""
    return key in _GROUPS


def tail_rate(demands: Mapping[str, Demand], rates: Mapping[str, int]) -> int:
    """The one rate that keeps as many of the groups' spans as their own rates do."""
    spans = kept = 0.0
    for name, rate in rates.items():
        demand = demands[name]
        spans += demand.spans * demand.keys
        kept += demand.spans * demand.keys / rate
    return max(1, round(spans / kept)) if kept > 0 else 1
