"""Keys planned by size class, and the distinct-key estimate past the remembered ones."""

from __future__ import annotations

import pytest

from refinery_py.decide.allotment import Demand
from refinery_py.decide.distinct import DistinctCount
from refinery_py.decide.key_classes import (
    CLASS_KEYS,
    MAX_CLASS,
    TAIL_KEY,
    class_groups,
    is_group,
    rates_by_class,
    restore,
    size_class,
    tail_rate,
)


def test_size_classes_are_powers_of_two() -> None:
    assert [size_class(n) for n in (1, 2, 3, 4, 7, 8, 1000)] == [1, 2, 2, 3, 3, 4, 10]
    assert size_class(0) == 1
    assert size_class(1 << 40) == MAX_CLASS
    assert CLASS_KEYS[1] == "<other keys: 1 trace>"
    assert CLASS_KEYS[3] == "<other keys: 4-7 traces>"
    assert all(is_group(name) for name in (*CLASS_KEYS[1:], TAIL_KEY))
    assert not is_group("acme•,/checkout•,")
    assert not is_group("<anonymous>•,")  # a customer may well be called that


def test_untracked_keys_are_grouped_by_their_trace_counts() -> None:
    seen = {"heavy": 500, "a": 1, "b": 1, "c": 2, "d": 3, "e": 6}
    groups = class_groups(seen, {"heavy"}, [26, 13])
    # 13 traces in the tail, as many as the untracked keys' counts: 2 spans each.
    assert groups == {
        CLASS_KEYS[1]: (4.0, 2.0, 2),
        CLASS_KEYS[2]: (10.0, 5.0, 2),
        CLASS_KEYS[3]: (12.0, 6.0, 1),
    }


def test_classes_add_up_to_the_tail() -> None:
    # Traffic of keys past the remembered ones is spread over the classes in proportion.
    groups = class_groups({"a": 1, "b": 3}, (), [16, 8])
    assert groups == {CLASS_KEYS[1]: (4.0, 2.0, 1), CLASS_KEYS[2]: (12.0, 6.0, 1)}
    assert class_groups({}, (), [10, 0]) == {TAIL_KEY: (10, 0, 1.0)}
    assert class_groups({"a": 1}, (), [0, 0]) == {}


def test_a_tracked_key_gets_back_what_it_had_before_its_slot() -> None:
    counts = {"a": [20, 10], "b": [5, 5]}
    tail = [30, 15]
    restore(counts, tail, {"a": 14, "b": 5, "c": 11})
    assert counts == {"a": [28, 14], "b": [5, 5]}  # 4 traces at a's 2 spans each
    assert tail == [22, 11]


def test_classes_without_a_group_borrow_a_neighbour_rate() -> None:
    rates = {CLASS_KEYS[2]: 3, CLASS_KEYS[4]: 9}
    by_class = rates_by_class(rates, fallback=1)
    assert by_class[1:6] == [3, 3, 3, 9, 9]
    assert by_class[MAX_CLASS] == 9
    assert rates_by_class({TAIL_KEY: 7}, fallback=1)[1:3] == [7, 7]
    assert rates_by_class({}, fallback=4)[1] == 4


def test_the_tail_rate_keeps_what_the_classes_keep() -> None:
    demands = {CLASS_KEYS[1]: Demand(10, 1, 30), CLASS_KEYS[3]: Demand(50, 5, 10)}
    # 300 spans at 1 and 500 at 5: 400 kept of 800.
    assert tail_rate(demands, {CLASS_KEYS[1]: 1, CLASS_KEYS[3]: 5}) == 2


@pytest.mark.parametrize("distinct", [0, 1, 10, 300, 3_000, 30_000])
def test_distinct_keys_are_estimated_within_a_few_percent(distinct: int) -> None:
    count = DistinctCount()
    for _ in range(2):  # repeats do not count
        for index in range(distinct):
            count.add(f"c{index:06d}•,/r{index % 50:02d}•,")
    assert count.estimate() == pytest.approx(distinct, rel=0.08, abs=1)
