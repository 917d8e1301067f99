"""The throughput samplers: goal in spans per second, cluster size, lookback, fairness signals."""

from __future__ import annotations

import itertools

import pytest

from refinery_py.config.rules_spec import (
    EMAThroughputSpec,
    TotalThroughputSpec,
    WindowedThroughputSpec,
)
from refinery_py.config.units import Seconds
from refinery_py.decide import (
    EMAThroughputSampler,
    TotalThroughputSampler,
    WindowedThroughputSampler,
)
from refinery_py.decide.key_classes import TAIL_KEY
from refinery_py.decide.throughput import ThroughputGoal, ThroughputOptions

from .test_keyed import feed, trace


def test_cluster_size_divides_the_goal_and_the_minimum() -> None:
    options = ThroughputOptions.of(
        TotalThroughputSpec(
            goal_throughput_per_sec=100,
            use_cluster_size=True,
            per_key_min_per_sec=6.0,
            field_list=("a",),
        )
    )
    goal = ThroughputGoal(options)
    assert goal.budget(10.0) == 1000.0
    goal.set_cluster_size(4)
    assert goal.per_second == 25.0
    assert goal.budget(10.0) == 250.0
    assert goal.min_per_key(10.0) == 15.0
    assert goal.text() == (
        "GoalThroughputPerSec 100 (25 for this process: 4 node(s), 1 worker(s) per node)"
    )
    goal.set_cluster_size(4, workers=2)
    assert goal.per_second == 12.5
    assert goal.min_per_key(10.0) == 7.5
    goal.set_cluster_size(1000)
    assert goal.per_second == 1.0  # at least 1 span/s per node, as in Refinery
    goal.set_cluster_size(0)
    assert goal.per_second == 100.0


def test_without_use_cluster_size_the_goal_is_per_node() -> None:
    goal = ThroughputGoal(ThroughputOptions.of(EMAThroughputSpec(goal_throughput_per_sec=100)))
    goal.set_cluster_size(4)
    assert goal.per_second == 100.0
    assert goal.text() == "GoalThroughputPerSec 100"
    goal.set_cluster_size(4, workers=2)  # a node's workers always share its goal
    assert goal.per_second == 50.0


@pytest.mark.parametrize("nodes", [1, 2, 5])
def test_total_throughput_budget_follows_the_cluster(nodes: int) -> None:
    spec = TotalThroughputSpec(
        goal_throughput_per_sec=100,
        use_cluster_size=True,
        clear_frequency=Seconds(10.0),
        field_list=("customer.id",),
    )
    sampler = TotalThroughputSampler(spec, "t")
    sampler.set_cluster_size(nodes)
    feed(sampler, 0.0, 10.0, {"a": 5000})
    sampler.decide(trace("a"), now=10.0)
    assert sampler.stats().goal.budget == pytest.approx(1000 / nodes)
    assert sampler.rate_of("a•,") == pytest.approx(5000 / (1000 / nodes), rel=0.05)


def test_ema_throughput_starts_at_the_initial_rate_then_meets_the_goal() -> None:
    spec = EMAThroughputSpec(
        goal_throughput_per_sec=50,
        initial_sample_rate=3,
        adjustment_interval=Seconds(10.0),
        field_list=("customer.id",),
    )
    sampler = EMAThroughputSampler(spec, "e")
    assert sampler.decide(trace("a"), now=0.0).rate == 3
    feed(sampler, 0.0, 10.0, {"a": 5000, "b": 10})
    sampler.decide(trace("a"), now=10.0)
    # 500 spans per interval: b keeps its 10, a the other 490
    assert sampler.rate_of("b•,") == 1
    assert sampler.rate_of("a•,") == pytest.approx(5000 / 490, abs=1)


def windowed(**options: object) -> WindowedThroughputSampler:
    spec = WindowedThroughputSpec(field_list=("customer.id",), **options)  # type: ignore[arg-type]
    return WindowedThroughputSampler(spec, "w")


@pytest.mark.parametrize(
    ("update", "lookback", "buckets"),
    [(1.0, 0.0, 30), (0.1, 0.3, 3), (2.0, 7.0, 3), (5.0, 1.0, 1), (1.0, 20.0, 20)],
)
def test_lookback_is_a_whole_number_of_updates(
    update: float, lookback: float, buckets: int
) -> None:
    sampler = windowed(update_frequency=update, lookback_frequency=lookback)
    assert sampler._lookback == buckets


def test_windowed_budget_covers_only_the_time_with_traffic() -> None:
    sampler = windowed(
        goal_throughput_per_sec=10, update_frequency=Seconds(1.0), lookback_frequency=Seconds(30.0)
    )
    feed(sampler, 0.0, 1.0, {"a": 1000})
    sampler.decide(trace("a"), now=1.0)
    # one bucket of traffic: a 10-span budget, not 300 as if 29 empty buckets had been seen
    assert sampler.stats().goal.budget == 10.0
    assert sampler.rate_of("a•,") == round((1000 - 1) / (10 - 1))  # the floor trace is 1 of 10
    feed(sampler, 1.0, 2.0, {"a": 1000})
    sampler.decide(trace("a"), now=2.0)
    assert sampler.stats().goal.budget == 20.0


def test_windowed_lookback_slides() -> None:
    sampler = windowed(
        goal_throughput_per_sec=10, update_frequency=Seconds(1.0), lookback_frequency=Seconds(3.0)
    )
    for second in range(6):
        feed(sampler, float(second), second + 1.0, {"a": 100 if second < 3 else 10})
    sampler.decide(trace("a"), now=6.0)
    # the lookback holds seconds 3-5 only: 30 spans for a 30-span budget
    assert sampler.rate_of("a•,") == 1
    assert sampler.stats().top_keys[0].spans_per_window == 30


def test_windowed_floors_once_per_lookback() -> None:
    sampler = windowed(
        goal_throughput_per_sec=10, update_frequency=Seconds(1.0), lookback_frequency=Seconds(4.0)
    )
    feed(sampler, 0.0, 4.0, {"a": 4000})
    rates = [sampler.decide(trace("a"), now=4.0 + i * 0.5).rate for i in range(8)]
    # the lookback window [4, 8) floors its first trace only, though rates move every second
    assert rates[0] == 1
    assert all(rate > 1 for rate in rates[1:])
    assert sampler.decide(trace("a"), now=8.0).rate == 1


def test_windowed_forgets_after_a_quiet_lookback() -> None:
    sampler = windowed(
        goal_throughput_per_sec=10, update_frequency=Seconds(1.0), lookback_frequency=Seconds(3.0)
    )
    feed(sampler, 0.0, 4.0, {"a": 4000})
    # [3, 4) ends with the lookback [1, 4), then 95 empty buckets: the lookback empties, and
    # with nothing new to learn from, the rates stay.
    sampler.decide(trace("a"), now=100.0)
    assert sampler.rate_of("a•,") > 50
    sampler.decide(trace("a"), now=101.0)
    assert sampler.rate_of("a•,") == 1  # one quiet trace in a 1s lookback


def test_windowed_feedback_measures_whole_lookbacks() -> None:
    # Rates move every 1s bucket, but the feedback compares kept spans with the goal over a
    # whole lookback: one bucket's handful of kept traces is too noisy to learn from.
    sampler = windowed(
        goal_throughput_per_sec=10, update_frequency=Seconds(1.0), lookback_frequency=Seconds(5.0)
    )
    corrections = []
    for second in range(30):
        feed(sampler, float(second), second + 1.0, {"a": 40 + 30 * (second % 2), "b": 20})
        corrections.append(sampler.stats().correction)
    changes = [i for i in range(10, 30) if corrections[i] != corrections[i - 1]]
    assert len(changes) == 4
    assert [b - a for a, b in itertools.pairwise(changes)] == [5, 5, 5]


def test_windowed_max_keys_covers_the_lookback() -> None:
    sampler = windowed(goal_throughput_per_sec=10, update_frequency=1.0, max_keys=2)
    feed(sampler, 0.0, 1.0, {"a": 300, "b": 200})
    feed(sampler, 1.0, 2.0, {"c": 100})
    sampler.decide(trace("a"), now=2.0)
    # Three keys in the lookback: the two heaviest are planned on their own, c as the rest.
    stats = sampler.stats()
    assert stats.keys == 3
    assert {entry.key for entry in stats.top_keys} == {"a•,", "b•,", TAIL_KEY}
    assert sampler.rate_of("c•,") == sampler.rate_of(TAIL_KEY) > 1
    assert sampler.sizes()["lookback sums"] == 3


def test_minimum_floors_that_do_not_fit_are_reported() -> None:
    spec = TotalThroughputSpec(
        goal_throughput_per_sec=10,
        per_key_min_per_sec=5.0,
        clear_frequency=Seconds(10.0),
        field_list=("customer.id",),
    )
    sampler = TotalThroughputSampler(spec, "t:TotalThroughputSampler")
    feed(sampler, 0.0, 10.0, dict.fromkeys("abcd", 100))
    sampler.decide(trace("a"), now=10.0)
    status = sampler.stats().goal
    assert not status.reachable
    assert status.needed == 200.0
    assert status.message == (
        "sampler t:TotalThroughputSampler: goal unreachable in window 1: GoalThroughputPerSec 10 "
        "allows 100 kept spans per 10s, but the PerKeyMinPerSec floors of 4 keys need 200 "
        "(least achievable: 20.0 spans/s); each key kept one trace and 49% of the rest of its "
        "floor"
    )
    assert sampler.take_goal_reports() == [status]
    assert sampler.take_goal_reports() == []
