"""Sharing a window's budget of kept spans among keys, and the rates that follow."""

from __future__ import annotations

import math

import pytest

from refinery_py.decide.allotment import (
    FLOOR_SPREAD,
    MAX_RATE,
    SHORTFALL_KEYS,
    SHORTFALL_MINIMUM,
    SHORTFALL_SHARE,
    Allotment,
    Demand,
    allot,
    sample_rates,
)


def kept(demands: dict[str, Demand], allotment: Allotment) -> dict[str, float]:
    """Expected kept spans per key under the rates (first trace at rate 1 while floors are on)."""
    rates = sample_rates(demands, allotment)
    result = {}
    for key, demand in demands.items():
        one = demand.one_trace if allotment.floors else 0.0
        result[key] = one + (demand.spans - one) / rates[key]
    return result


# 1 heavy key, 3 medium ones, 20 rare ones: 10 spans per trace throughout.
MIXED = {
    "heavy": Demand(100_000, 10_000),
    **{f"medium{i}": Demand(5_000, 500) for i in range(3)},
    **{f"rare{i}": Demand(20, 2) for i in range(20)},
}
TOTAL = sum(d.spans for d in MIXED.values())


def test_one_trace_is_the_average_trace_or_everything() -> None:
    assert Demand(100, 10).one_trace == 10
    assert Demand(5, 0.5).one_trace == 5  # at most one trace expected: all of it
    assert Demand(30, 0).one_trace == 0  # late spans only: no trace to keep


@pytest.mark.parametrize("log_weights", [True, False])
def test_levels_add_up_to_the_budget(log_weights: bool) -> None:
    budget = TOTAL / 10
    allotment = allot(MIXED, budget, log_weights=log_weights)
    assert allotment.shortfall == ""
    assert allotment.floors
    assert sum(allotment.levels.values()) == pytest.approx(budget)
    for key, demand in MIXED.items():
        assert demand.one_trace <= allotment.levels[key] <= demand.spans
    assert allotment.levels["rare0"] == 20  # rare keys keep everything
    assert sum(kept(MIXED, allotment).values()) == pytest.approx(budget, rel=0.01)


def test_log_weights_favour_heavy_keys_far_less_than_their_traffic() -> None:
    levels = allot(MIXED, TOTAL / 10, log_weights=True).levels
    heavy, medium = levels["heavy"], levels["medium0"]
    assert heavy > medium
    assert heavy / medium < 100_000 / 5_000 / 4
    rates = sample_rates(MIXED, allot(MIXED, TOTAL / 10, log_weights=True))
    assert rates["heavy"] > rates["medium0"] > rates["rare0"] == 1


def test_even_split_hands_the_unused_share_on() -> None:
    # Refinery's TotalThroughput gives each of 24 keys budget / 24 and keeps far less than the
    # budget when most keys are small; here the small keys' leftover goes to the big ones.
    budget = TOTAL / 10
    levels = allot(MIXED, budget, log_weights=False).levels
    assert levels["heavy"] == pytest.approx(levels["medium0"])
    assert levels["heavy"] > budget / len(MIXED)


def test_traffic_under_the_budget_is_all_kept() -> None:
    allotment = allot(MIXED, TOTAL * 2, log_weights=True)
    assert allotment.shortfall == ""
    assert set(sample_rates(MIXED, allotment).values()) == {1}


def test_too_many_keys_for_one_trace_each() -> None:
    demands = {f"k{i}": Demand(30, 3) for i in range(100)}  # one trace = 10 spans
    allotment = allot(demands, 500, log_weights=True)
    assert allotment.shortfall == SHORTFALL_KEYS
    assert not allotment.floors
    assert allotment.one_trace == 1000
    assert allotment.levels["k0"] == pytest.approx(5)  # half a trace each
    assert allotment.new_key_rate == 2
    assert sample_rates(demands, allotment)["k0"] == 6
    assert sum(kept(demands, allotment).values()) == pytest.approx(500)


def test_minimums_that_do_not_fit_are_scaled_down() -> None:
    demands = {f"k{i}": Demand(300, 30) for i in range(10)}  # one trace = 10 spans
    allotment = allot(demands, 1000, log_weights=False, min_per_key=200)
    assert allotment.shortfall == SHORTFALL_MINIMUM
    assert allotment.floors
    assert allotment.minimum == 2000
    # one trace each (100 in all), and the other 900 spread over the minimums' remainders
    assert allotment.levels["k0"] == pytest.approx(10 + 900 / 1900 * 190)
    assert sum(allotment.levels.values()) == pytest.approx(1000)


def test_minimum_lifts_a_sampled_key_to_it() -> None:
    demands = {"big": Demand(100_000, 10_000), "small": Demand(8_000, 800)}
    plain = allot(demands, 10_000, log_weights=True).levels["small"]
    assert plain < 4_500
    lifted = allot(demands, 10_000, log_weights=True, min_per_key=4_500)
    assert lifted.shortfall == ""
    # both keys get the minimum first, then the last 1,000 spans by log weight
    assert lifted.levels["small"] == pytest.approx(4_500 + 1_000 * math.log10(8_000) / 8.903, 1e-3)
    assert sum(lifted.levels.values()) == pytest.approx(10_000)
    # a key sending less than the minimum keeps everything
    quiet = {"big": Demand(100_000, 10_000), "small": Demand(3_000, 300)}
    assert allot(quiet, 10_000, log_weights=True, min_per_key=4_000).levels["small"] == 3_000


def test_share_cap_binds_and_the_rest_goes_to_others() -> None:
    plain = allot(MIXED, TOTAL / 10, log_weights=True).levels
    assert plain["heavy"] > 0.25 * TOTAL / 10
    allotment = allot(MIXED, TOTAL / 10, log_weights=True, max_share=0.25)
    assert allotment.shortfall == ""
    assert allotment.levels["heavy"] == pytest.approx(0.25 * TOTAL / 10)
    assert allotment.levels["medium0"] > plain["medium0"]
    assert sum(allotment.levels.values()) == pytest.approx(TOTAL / 10)
    assert kept(MIXED, allotment)["heavy"] <= 0.25 * TOTAL / 10


def test_share_caps_that_leave_budget_unused_are_a_shortfall() -> None:
    demands = {f"k{i}": Demand(10_000, 1_000) for i in range(3)}
    allotment = allot(demands, 20_000, log_weights=False, max_share=0.2)
    assert allotment.shortfall == SHORTFALL_SHARE
    assert allotment.usable == pytest.approx(12_000)
    assert allotment.levels == {key: pytest.approx(4_000) for key in demands}
    # With less traffic than the goal, missing it is not the caps' doing.
    quiet = {key: Demand(1_000, 100) for key in demands}
    assert allot(quiet, 20_000, log_weights=False, max_share=0.2).shortfall == ""


def test_rounding_never_lifts_a_key_over_its_cap() -> None:
    # 29,000 spans capped at 22,000: rate 1 would be nearer but would break the cap.
    demands = {"a": Demand(29_000, 2_900), "b": Demand(63_000, 6_300), "c": Demand(90_000, 9_000)}
    allotment = allot(demands, 100_000, log_weights=False, max_share=0.22)
    got = kept(demands, allotment)
    for key in demands:
        assert got[key] <= allotment.caps[key] + 1e-6


def test_rounding_carries_so_the_total_holds() -> None:
    demands = {f"k{i}": Demand(1_000 + 37 * i, 100 + 3 * i) for i in range(200)}
    budget = sum(d.spans for d in demands.values()) / 7.3
    allotment = allot(demands, budget, log_weights=True)
    assert sum(kept(demands, allotment).values()) == pytest.approx(budget, rel=0.005)


def test_a_floored_key_is_never_spread_too_thin() -> None:
    demands = {"k": Demand(100, 10), "other": Demand(1_000_000, 100_000)}
    allotment = allot(demands, 10 + 10, log_weights=True)  # exactly the floors
    rates = sample_rates(demands, allotment)
    assert rates["k"] == math.ceil(FLOOR_SPREAD * 10)


def test_empty_demand() -> None:
    allotment = allot({}, 100, log_weights=True)
    assert allotment.levels == {}
    assert allotment.shortfall == ""
    assert sample_rates({}, allotment) == {}


def test_a_zero_budget_drops_everything_it_can() -> None:
    demands = {"k": Demand(30, 3)}
    allotment = allot(demands, 0.0, log_weights=True)
    assert allotment.shortfall == SHORTFALL_KEYS
    assert allotment.new_key_rate == MAX_RATE
    assert sample_rates(demands, allotment)["k"] == MAX_RATE


@pytest.mark.parametrize("log_weights", [True, False])
def test_a_group_counts_as_its_members(log_weights: bool) -> None:
    # 40 rare keys as one group of 40 get what 40 separate keys of that size would.
    heavy = {"heavy": Demand(100_000, 10_000), "medium": Demand(5_000, 500)}
    alone = {**heavy, **{f"rare{i}": Demand(20, 2) for i in range(40)}}
    grouped = {**heavy, "rare": Demand(20, 2, keys=40)}
    budget = sum(d.spans for d in alone.values()) / 10
    one_by_one = allot(alone, budget, log_weights=log_weights)
    together = allot(grouped, budget, log_weights=log_weights)
    assert together.keys == one_by_one.keys == 42
    assert together.minimum == pytest.approx(one_by_one.minimum)
    assert together.levels["rare"] == pytest.approx(one_by_one.levels["rare0"])
    assert together.levels["heavy"] == pytest.approx(one_by_one.levels["heavy"])
    rates = sample_rates(grouped, together)
    assert sum(kept(grouped, together).values()) + 39 * kept(grouped, together)["rare"] == (
        pytest.approx(budget, rel=0.01)
    )
    assert rates["heavy"] > rates["medium"] >= rates["rare"]


def test_a_group_shares_the_floor_shortfall() -> None:
    demands = {"group": Demand(30, 3, keys=100)}  # one trace = 10 spans, 100 keys
    allotment = allot(demands, 500, log_weights=True)
    assert allotment.shortfall == SHORTFALL_KEYS
    assert allotment.one_trace == 1000
    assert allotment.levels["group"] == pytest.approx(5)
