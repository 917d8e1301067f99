"""Counting a window's keys in bounded memory: heavy keys exactly, the rest as a tail."""

from __future__ import annotations

import random

from refinery_py.decide.allotment import Demand
from refinery_py.decide.heavy_keys import WindowCounts


def count(window: WindowCounts, key: str, spans: int = 1) -> None:
    entry = window.counts.get(key)
    if entry is None:
        entry = window.admit(key)
    entry[0] += spans
    entry[1] += 1


def zipf_stream(keys: int, traces: int, seed: int) -> list[tuple[str, int]]:
    rng = random.Random(seed)
    weights = [1 / rank**1.2 for rank in range(1, keys + 1)]
    names = [f"k{i:04d}" for i in range(keys)]
    return [(name, rng.randint(1, 3)) for name in rng.choices(names, weights, k=traces)]


def test_keys_that_fit_are_counted_exactly() -> None:
    window = WindowCounts(limit=3)
    for key, spans in [("a", 2), ("b", 1), ("a", 3), ("c", 1)]:
        count(window, key, spans)
    window.close()
    assert window.counts == {"a": [5, 2], "b": [1, 1], "c": [1, 1]}
    assert window.tail == [0, 0]
    assert window.sizes() == {"counts": 3, "heap": 0, "ranks": 0}


def test_slots_and_tail_add_up_to_the_window_exactly() -> None:
    stream = zipf_stream(keys=1_000, traces=20_000, seed=3)
    window = WindowCounts(limit=50)
    largest = 0
    for key, spans in stream:
        count(window, key, spans)
        largest = max(largest, *window.sizes().values())
    assert largest <= 50
    window.close()
    assert len(window.counts) <= 50
    spans = sum(entry[0] for entry in window.counts.values()) + window.tail[0]
    traces = sum(entry[1] for entry in window.counts.values()) + window.tail[1]
    assert (spans, traces) == (sum(s for _, s in stream), len(stream))
    assert window.moved_traces == window.tail[1]


def test_heavy_keys_keep_their_slots() -> None:
    # Space-Saving: every key with more than 1/limit of the spans holds a slot at the end.
    stream = zipf_stream(keys=1_000, traces=20_000, seed=4)
    total = sum(spans for _, spans in stream)
    true: dict[str, int] = {}
    for key, spans in stream:
        true[key] = true.get(key, 0) + spans
    window = WindowCounts(limit=50)
    for key, spans in stream:
        count(window, key, spans)
    window.close()
    heavy = {key for key, spans in true.items() if spans > total / 50}
    assert len(heavy) >= 5
    assert heavy <= set(window.counts)
    # The heaviest took their slots at once, so their counts are the whole window's.
    for key in sorted(heavy, key=true.__getitem__)[-3:]:
        assert window.counts[key][0] == true[key]


def test_late_comers_that_did_not_grow_go_to_the_tail() -> None:
    window = WindowCounts(limit=2)
    for _ in range(10):
        count(window, "a")
        count(window, "b")
    count(window, "a")
    count(window, "c")  # takes b's slot and its rank of 10, with 1 trace of its own
    assert set(window.counts) == {"a", "c"}
    window.close()
    assert window.counts == {"a": [11, 11]}
    assert window.tail == [11, 11]


def test_demands_are_the_counts_and_the_groups_per_key() -> None:
    window = WindowCounts(limit=1)
    count(window, "a", 3)
    window.groups = {"<rare>": (40.0, 20.0, 10.0)}
    assert window.demands() == {"a": Demand(3, 1), "<rare>": Demand(4.0, 2.0, 10.0)}
