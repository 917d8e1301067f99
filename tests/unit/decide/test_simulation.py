"""The adaptive samplers against simulated multi-tenant traffic: do they hit their goals?

One seeded simulation (see `simulation`): 240,000 traces over 300 simulated seconds, 500
customers drawn from a Zipf distribution (s = 1.2, so the busiest customer sends a quarter of
the traffic), 10 Zipf-distributed routes, 4-40 spans per trace depending on the route. Each
sampler decides every trace; measurements start after a warm-up and cover whole windows.

Goals are in Refinery's units: a sample rate is spans seen / spans kept, a throughput goal is
kept spans per second.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass

import pytest

from refinery_py.config.rules_spec import (
    DynamicSpec,
    EMADynamicSpec,
    EMAThroughputSpec,
    RulesSpec,
    SamplerSpec,
    TotalThroughputSpec,
    WindowedThroughputSpec,
)
from refinery_py.config.units import Seconds
from refinery_py.decide import KeyedSampler, RulesEngine, build_sampler

from .simulation import CUSTOMER, ROUTE, Outcome, TrafficShape, generate, run, run_with_late_spans

SHAPE = TrafficShape()
BY_CUSTOMER_AND_ROUTE = (CUSTOMER, ROUTE)
BY_CUSTOMER = (CUSTOMER,)
MAX_KEYS = 10_000
TOLERANCE = 0.10


@dataclass(frozen=True)
class Case:
    """One sampler configuration and how to measure it."""

    name: str
    spec: SamplerSpec
    goal: float
    unit: str
    """"rate" (spans seen per span kept) or "spans/s" (kept spans per second)."""
    window: float
    """The sampler's floor window: each key keeps a trace in each."""
    warmup: int
    """Windows decided but not measured."""


CASES = [
    Case(
        "DynamicSampler",
        DynamicSpec(
            sample_rate=5,
            field_list=BY_CUSTOMER_AND_ROUTE,
            clear_frequency=Seconds(20.0),
            max_keys=MAX_KEYS,
        ),
        5,
        "rate",
        20.0,
        2,
    ),
    Case(
        "EMADynamicSampler",
        EMADynamicSpec(
            goal_sample_rate=5,
            field_list=BY_CUSTOMER_AND_ROUTE,
            adjustment_interval=Seconds(20.0),
            max_keys=MAX_KEYS,
        ),
        5,
        "rate",
        20.0,
        3,
    ),
    Case(
        "EMAThroughputSampler",
        EMAThroughputSpec(
            goal_throughput_per_sec=2000,
            field_list=BY_CUSTOMER,
            adjustment_interval=Seconds(15.0),
            max_keys=MAX_KEYS,
        ),
        2000,
        "spans/s",
        15.0,
        3,
    ),
    Case(
        "WindowedThroughputSampler",
        WindowedThroughputSpec(
            goal_throughput_per_sec=2000,
            field_list=BY_CUSTOMER,
            update_frequency=Seconds(1.0),
            lookback_frequency=Seconds(20.0),
            max_keys=MAX_KEYS,
        ),
        2000,
        "spans/s",
        20.0,
        2,
    ),
    Case(
        "TotalThroughputSampler",
        TotalThroughputSpec(
            goal_throughput_per_sec=2000,
            field_list=BY_CUSTOMER,
            clear_frequency=Seconds(20.0),
            max_keys=MAX_KEYS,
        ),
        2000,
        "spans/s",
        20.0,
        2,
    ),
]
RATE_CASES = [case for case in CASES if case.unit == "rate"]
THROUGHPUT_CASES = [case for case in CASES if case.unit == "spans/s"]

FAIR_SHARE = 0.04
FAIR_MIN_PER_SEC = 3.0
FAIR_GOAL = 9000
"""A generous budget (two thirds of the traffic): without a cap, the busiest customers fill it."""


def fair_case(case: Case, share: float, minimum: float) -> Case:
    """A throughput case at the fairness goal, with the fairness options set."""
    assert isinstance(case.spec, EMAThroughputSpec | WindowedThroughputSpec | TotalThroughputSpec)
    spec = dataclasses.replace(
        case.spec,
        goal_throughput_per_sec=FAIR_GOAL,
        per_key_max_share=share,
        per_key_min_per_sec=minimum,
    )
    return Case(case.name, spec, FAIR_GOAL, case.unit, case.window, case.warmup)


@functools.cache
def traffic() -> list:  # type: ignore[type-arg]
    return generate(SHAPE)


@functools.cache
def measured(case: Case) -> tuple[Outcome, KeyedSampler]:
    sampler = build_sampler(case.spec, "sim")
    assert isinstance(sampler, KeyedSampler)
    outcome = run(sampler, traffic(), window=case.window, warmup_windows=case.warmup)
    return outcome, sampler


def test_the_simulation_is_the_one_the_issue_asks_for() -> None:
    traces = traffic()
    assert len(traces) >= 200_000
    assert SHAPE.customers >= 500
    assert SHAPE.customer_s == pytest.approx(1.2)
    customers = {trace.customer for trace in traces}
    routes = {trace.route for trace in traces}
    assert len(customers) >= 500
    assert len(routes) == SHAPE.routes
    # Zipf: the busiest customer sends about 1 / H(500, 1.2) ≈ 24% of the traces.
    busiest = sum(1 for trace in traces if trace.customer == 0) / len(traces)
    assert 0.2 < busiest < 0.28
    for case in CASES:
        assert SHAPE.duration / case.window >= 10, case.name


@pytest.mark.parametrize("case", RATE_CASES, ids=lambda case: case.name)
def test_goal_rate_samplers_average_their_goal(case: Case) -> None:
    outcome, _ = measured(case)
    assert outcome.windows >= 10
    assert outcome.span_rate == pytest.approx(case.goal, rel=TOLERANCE)


@pytest.mark.parametrize("case", THROUGHPUT_CASES, ids=lambda case: case.name)
def test_throughput_samplers_keep_their_goal_in_spans_per_second(case: Case) -> None:
    outcome, _ = measured(case)
    assert outcome.windows >= 10
    assert outcome.kept_spans_per_sec == pytest.approx(case.goal, rel=TOLERANCE)


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_every_key_keeps_a_trace_in_every_window(case: Case) -> None:
    outcome, sampler = measured(case)
    assert outcome.keys_in_windows > 5_000
    assert outcome.keys_without_keep == 0
    stats = sampler.stats()
    assert stats.goal.reachable
    assert stats.bursts == 0  # so the sampler's windows are the ones measured
    assert sampler.take_goal_reports() == []


@pytest.mark.parametrize("case", THROUGHPUT_CASES, ids=lambda case: case.name)
def test_no_customer_exceeds_its_share(case: Case) -> None:
    unfair, _ = measured(fair_case(case, 1.0, 0.0))
    fair, sampler = measured(fair_case(case, FAIR_SHARE, FAIR_MIN_PER_SEC))
    # Without a cap the busiest customers take more than the share; with it, none does (by
    # more than the 5 points the issue allows), neither overall nor in any one window.
    assert unfair.max_customer_share() > FAIR_SHARE + 0.01
    assert fair.max_customer_share() <= FAIR_SHARE + 0.05
    assert max(fair.window_top_shares) <= FAIR_SHARE + 0.05
    # Every customer keeps its minimum (or all it sent), give or take sampling noise.
    for customer, seen in fair.customer_seen.items():
        floor = min(seen, FAIR_MIN_PER_SEC * fair.seconds)
        assert fair.customer_kept.get(customer, 0) >= 0.8 * floor, customer
    # The capped customers cannot use the budget and nobody else has more to give, so the goal
    # is not reached, and the sampler says so.
    assert fair.kept_spans_per_sec < 0.95 * FAIR_GOAL
    status = sampler.stats().goal
    assert not status.reachable
    assert "PerKeyMaxShare" in status.message


def test_late_spans_count_toward_throughput_goals() -> None:
    # Refinery #1567: a third of every trace's spans arrive after the decision. Counted, the
    # goal holds on what leaves the node; not counted (Refinery), it overshoots by half.
    spec = TotalThroughputSpec(
        goal_throughput_per_sec=2000,
        field_list=BY_CUSTOMER,
        clear_frequency=Seconds(20.0),
        max_keys=MAX_KEYS,
    )

    def outcome(count_late: bool) -> Outcome:
        engine = RulesEngine(RulesSpec(rules_version=2, samplers={"__default__": spec}))
        return run_with_late_spans(
            engine, traffic(), late_share=1 / 3, delay=3.0, count_late=count_late, warmup=40.0
        )

    counted = outcome(count_late=True)
    assert counted.kept_spans_per_sec == pytest.approx(2000, rel=TOLERANCE)
    ignored = outcome(count_late=False)
    assert ignored.kept_spans_per_sec > 1.3 * 2000


def test_a_goal_with_more_keys_than_it_allows_says_so() -> None:
    # Refinery #1004: 500 spans/s for ~1,900 customer-and-route keys per 20s window, each needing
    # at least one trace of ~17 spans: ~32,000 spans for a budget of 10,000.
    spec = TotalThroughputSpec(
        goal_throughput_per_sec=500,
        field_list=BY_CUSTOMER_AND_ROUTE,
        clear_frequency=Seconds(20.0),
        max_keys=MAX_KEYS,
    )
    case = Case("TotalThroughputSampler", spec, 500, "spans/s", 20.0, 2)
    outcome, sampler = measured(case)
    reports = sampler.take_goal_reports()
    traces = traffic()
    windows = int((traces[-1].time - traces[0].time) // 20.0)  # windows ended
    assert [report.window for report in reports] == list(range(1, windows + 1))  # one each
    report = reports[-1]
    assert not report.reachable
    assert report.budget == pytest.approx(500 * 20.0, rel=0.01)
    assert report.keys > 1_500
    assert report.needed > 2 * report.budget
    assert report.message.startswith(
        f"sampler sim:TotalThroughputSampler: goal unreachable in window {windows}: "
        "GoalThroughputPerSec 500 allows 10000 kept spans per 20s, but "
    )
    assert f"{report.keys} keys need {report.needed:.0f} to keep one trace each" in report.message
    assert "least achievable:" in report.message
    assert sampler.stats().goal == report
    # The goal still wins: the budget is kept, spread evenly, and some keys go without.
    assert outcome.kept_spans_per_sec == pytest.approx(500, rel=TOLERANCE)
    assert outcome.keys_without_keep > 0
