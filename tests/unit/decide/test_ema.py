"""Moving averages and burst detection of the EMA samplers."""

from __future__ import annotations

import math

import pytest

from refinery_py.decide.allotment import Demand
from refinery_py.decide.ema import BurstDetector, MovingAverages
from refinery_py.decide.heavy_keys import WindowCounts
from refinery_py.decide.key_classes import CLASS_KEYS


def test_the_first_interval_seeds_the_averages() -> None:
    averages = MovingAverages(weight=0.5, age_out=0.5)
    averages.update({"a": [100, 10], "b": [4, 1]}, scale=1.0)
    assert averages.demands() == {"a": Demand(100, 10), "b": Demand(4, 1)}


def test_averages_move_by_the_weight_and_age_out() -> None:
    averages = MovingAverages(weight=0.25, age_out=1.0)
    averages.update({"a": [100, 10], "b": [4, 2]}, scale=1.0)
    averages.update({"a": [200, 20], "c": [8, 1]}, scale=1.0)
    assert averages.spans == {"a": 125.0, "b": 3.0, "c": 2.0}
    assert averages.traces == {"a": 12.5, "b": 1.5, "c": 0.25}
    averages.update({"a": [100, 10]}, scale=1.0)
    averages.update({"a": [100, 10]}, scale=1.0)
    # b: 3 → 2.25 → 1.6875 → 1.27; c: 2 → 1.5 → 1.125 → 0.84 (aged out below 1.0)
    averages.update({"a": [100, 10]}, scale=1.0)
    assert set(averages.spans) == {"a", "b"}
    assert averages.spans["b"] == pytest.approx(3 * 0.75**3)


def test_age_out_zero_means_the_weight() -> None:
    averages = MovingAverages(weight=0.5, age_out=0.0)
    averages.update({"a": [10, 1]}, scale=1.0)
    averages.update({"b": [1, 1]}, scale=1.0)  # b starts at 0.5: kept, at the threshold
    assert set(averages.spans) == {"a", "b"}
    averages.update({"a": [10, 1]}, scale=1.0)  # b falls to 0.25
    assert set(averages.spans) == {"a"}


def test_partial_intervals_are_scaled_to_whole_ones() -> None:
    averages = MovingAverages(weight=0.5, age_out=0.5)
    averages.update({"a": [100, 10]}, scale=1.0)
    averages.update({"a": [100, 10]}, scale=3.0)  # 100 spans in a third of an interval
    assert averages.spans["a"] == 200.0


def test_burst_threshold_waits_for_the_delay_and_sums_the_averages() -> None:
    averages = MovingAverages(weight=0.5, age_out=0.1)
    averages.update({"a": [100, 10], "b": [0, 0], "c": [1, 1]}, scale=1.0)
    detector = BurstDetector(multiple=2.0, delay=2)
    assert detector.threshold(averages) == math.inf
    detector.intervals = 2
    # each average counts at least 1: (100 + 1 + 1) × 2
    assert detector.threshold(averages) == 204.0


def test_burst_defaults_and_disabling() -> None:
    averages = MovingAverages(weight=0.5, age_out=0.5)
    averages.update({"a": [10, 1]}, scale=1.0)
    defaults = BurstDetector(multiple=0.0, delay=0)
    defaults.intervals = 2
    assert defaults.threshold(averages) == math.inf  # delay 0 means dynsampler's 3
    defaults.intervals = 3
    assert defaults.threshold(averages) == 20.0  # multiple 0 means 2
    off = BurstDetector(multiple=-1.0, delay=1)
    off.intervals = 10
    assert off.threshold(averages) == math.inf
    empty = BurstDetector(multiple=2.0, delay=1)
    empty.intervals = 10
    assert empty.threshold(MovingAverages(0.5, 0.5)) == math.inf


def test_groups_are_averaged_with_their_number_of_keys() -> None:
    averages = MovingAverages(weight=0.5, age_out=0.5)
    averages.update({"a": [100, 10]}, scale=1.0, groups={"<g>": (40.0, 20.0, 10.0)})
    assert averages.demands()["<g>"] == Demand(4.0, 2.0, 10.0)
    averages.update({"a": [100, 10]}, scale=1.0, groups={"<g>": (80.0, 40.0, 30.0)})
    # spans 60, traces 30, keys 20: each of the 20 keys brings 3 spans in 1.5 traces
    assert averages.demands()["<g>"] == Demand(3.0, 1.5, 20.0)
    averages.update({"a": [100, 10]}, scale=1.0)
    assert averages.members == {"<g>": 10.0}
    for _ in range(7):
        averages.update({"a": [100, 10]}, scale=1.0)
    assert "<g>" not in averages.spans  # aged out, keys and all
    assert averages.members == {}


def test_more_keys_than_the_limit_fold_into_their_size_class() -> None:
    averages = MovingAverages(weight=0.5, age_out=0.1, limit=2)
    averages.update({"a": [100, 50], "b": [60, 30], "c": [6, 3], "d": [2, 1]}, scale=1.0)
    assert set(averages.spans) == {"a", "b", CLASS_KEYS[1], CLASS_KEYS[2]}
    assert averages.demands()[CLASS_KEYS[2]] == Demand(6, 3, 1.0)
    assert averages.demands()[CLASS_KEYS[1]] == Demand(2, 1, 1.0)


def test_a_key_seen_only_in_a_group_joins_it() -> None:
    # b had an average of its own; the next interval saw its 4 traces but did not count them
    # exactly: its past joins the group of 4-7-trace keys instead of decaying beside it.
    averages = MovingAverages(weight=0.5, age_out=0.1)
    averages.update({"a": [100, 50], "b": [8, 4]}, scale=1.0)
    window = WindowCounts(limit=1)
    window.admit("a")[:] = [100, 50]
    window.tail[:] = [8, 4]
    window.seen = {"a": 50, "b": 4}
    window.groups = {CLASS_KEYS[3]: (8.0, 4.0, 1.0)}
    averages.update_window(window, scale=1.0)
    assert set(averages.spans) == {"a", CLASS_KEYS[3]}
    assert averages.demands()[CLASS_KEYS[3]] == Demand(8.0, 4.0, 1.0)
