"""What every adaptive sampler does per trace and per window, on a fake clock."""

from __future__ import annotations

import math

from refinery_py.config.rules_spec import (
    DynamicSpec,
    EMADynamicSpec,
    EMAThroughputSpec,
    TotalThroughputSpec,
)
from refinery_py.config.units import Seconds
from refinery_py.decide import (
    DynamicSampler,
    EMADynamicSampler,
    EMAThroughputSampler,
    TotalThroughputSampler,
    keep_for_rate,
)
from refinery_py.decide.keyed import KeyedSampler
from refinery_py.decide.stats import TOP_KEYS
from refinery_py.model import Decision

from .fakes import FakeTrace

_ids = iter(range(1, 10**9))


def trace(customer: str, spans: int = 1) -> FakeTrace:
    """A trace of `spans` spans of one customer, with a fresh trace ID."""
    return FakeTrace([{"customer.id": customer}] * spans, trace_id=f"{next(_ids):032x}")


def feed(sampler: KeyedSampler, start: float, end: float, per_key: dict[str, int]) -> None:
    """`per_key[k]` one-span traces of key k, the keys interleaved, evenly over [start, end)."""
    order = []
    remaining = dict(per_key)
    while remaining:
        for name in list(remaining):
            order.append(name)
            remaining[name] -= 1
            if not remaining[name]:
                del remaining[name]
    step = (end - start) / len(order)
    for i, name in enumerate(order):
        sampler.decide(trace(name), start + i * step)


def total(goal: int = 10, clear: float = 10.0, max_keys: int = 0) -> TotalThroughputSampler:
    spec = TotalThroughputSpec(
        goal_throughput_per_sec=goal,
        clear_frequency=Seconds(clear),
        field_list=("customer.id",),
        max_keys=max_keys,
    )
    return TotalThroughputSampler(spec, "t:TotalThroughputSampler")


def test_until_the_first_window_ends_every_trace_gets_the_initial_rate() -> None:
    spec = EMAThroughputSpec(initial_sample_rate=7, field_list=("customer.id",))
    sampler = EMAThroughputSampler(spec, "env:EMAThroughputSampler")
    for _ in range(50):
        t = trace("acme", spans=3)
        decision = sampler.decide(t, now=100.0)
        assert decision == Decision(
            keep_for_rate(t.trace_id, 7), 7, "emathroughput", "acme•,", "env:EMAThroughputSampler"
        )
    stats = sampler.stats()
    assert stats.kept_traces + stats.dropped_traces == 50
    assert stats.seen_spans == 150
    assert stats.kept_spans == 3 * stats.kept_traces
    assert stats.goal.window == 0


def test_a_window_ends_on_the_first_call_past_it() -> None:
    sampler = total(clear=10.0)
    sampler.decide(trace("a"), now=1000.0)
    sampler.decide(trace("a"), now=1009.999)
    assert sampler.stats().goal.window == 0
    sampler.decide(trace("a"), now=1010.0)
    assert sampler.stats().goal.window == 1


def test_the_first_trace_of_each_key_in_a_window_is_kept_at_rate_1() -> None:
    sampler = total(goal=10, clear=10.0)
    feed(sampler, 0.0, 10.0, {"big": 1000, "small": 5})
    first = sampler.decide(trace("big"), now=10.0)  # ends the window: new rates
    assert (first.keep, first.rate, first.key) == (True, 1, "big•,")
    # the budget is 100 spans per window: "small" keeps its 5, "big" gets the rest
    assert sampler.rate_of("small•,") == 1
    big_rate = sampler.rate_of("big•,")
    assert 10 <= big_rate <= 11
    for i in range(200):
        t = trace("big")
        decision = sampler.decide(t, now=10.0 + i * 0.01)
        assert decision.rate == big_rate
        assert decision.keep is keep_for_rate(t.trace_id, big_rate)
    # the next window floors again
    assert sampler.decide(trace("big"), now=20.0).rate == 1


def test_a_key_not_seen_last_window_gets_rate_1() -> None:
    sampler = total(goal=10, clear=10.0)
    feed(sampler, 0.0, 10.0, {"big": 1000})
    decisions = [sampler.decide(trace("new"), now=10.0 + i * 0.01) for i in range(30)]
    assert {d.rate for d in decisions} == {1}
    assert all(d.keep for d in decisions)


def test_quiet_spells_keep_rates_and_the_window_schedule() -> None:
    sampler = total(goal=10, clear=10.0)
    feed(sampler, 0.0, 10.0, {"big": 1000, "small": 5})
    feed(sampler, 10.0, 20.0, {"big": 1000, "small": 5})
    # [10, 20) ends, then 5 empty windows; the new window is [70, 80).
    sampler.decide(trace("big"), now=73.0)
    assert sampler.stats().goal.window == 2
    rate = sampler.rate_of("big•,")
    assert rate > 5  # learned from [10, 20); Refinery's TotalThroughput would forget it
    sampler.decide(trace("big"), now=79.99)
    assert sampler.stats().goal.window == 2
    sampler.decide(trace("big"), now=80.0)
    assert sampler.stats().goal.window == 8


def test_keys_beyond_max_keys_are_planned_by_size() -> None:
    sampler = total(goal=10, clear=10.0, max_keys=3)
    mid = {f"m{i}": 40 for i in range(5)}
    rare = {f"r{i:02d}": 1 for i in range(20)}
    feed(sampler, 0.0, 10.0, {"a": 1000, "b": 600, "c": 400, **mid, **rare})
    sampler.decide(trace("a"), now=10.0)
    stats = sampler.stats()
    assert stats.keys == 28  # a, b and c on their own, 25 keys in two size classes
    assert stats.overflow_traces > 0
    top = {entry.key: entry for entry in stats.top_keys}
    # Each heavy key's whole window is counted, the part before it won its slot back included.
    assert [top[key].spans_per_window for key in ("a•,", "b•,", "c•,")] == [1000, 600, 400]
    assert top["<other keys: 32-63 traces>"].spans_per_window == 40
    assert top["<other keys: 1 trace>"].spans_per_window == 1
    # A key outside the tracked three gets the rate of keys of its size.
    mid_rate = sampler.rate_of("<other keys: 32-63 traces>")
    assert 1 < mid_rate < min(sampler.rate_of(key) for key in ("a•,", "b•,", "c•,"))
    assert {sampler.rate_of(f"{key}•,") for key in mid} == {mid_rate}
    assert {sampler.rate_of(f"{key}•,") for key in rare} == {1}
    # Every key, however rare, keeps its first trace in the next window.
    for key in [*mid, *rare]:
        decision = sampler.decide(trace(key), now=10.5)
        assert (decision.keep, decision.rate) == (True, 1)
    assert sampler.decide(trace("m0"), now=10.6).rate == mid_rate
    # A key not seen last window is as rare as its traces so far say.
    rates = [sampler.decide(trace("new"), now=10.7).rate for _ in range(40)]
    assert rates[:31] == [1] * 31
    assert set(rates[31:]) == {mid_rate}  # its 32nd trace makes it a 32-63 traces key


def test_late_spans_count_toward_their_key() -> None:
    plain, late = total(goal=10, clear=10.0), total(goal=10, clear=10.0)
    for sampler in (plain, late):
        feed(sampler, 0.0, 10.0, {"big": 400, "small": 400})
    decision = late.decide(trace("big"), now=9.9)
    late.count_late(decision.key, 800, decision.keep, now=9.95)
    for sampler in (plain, late):
        sampler.decide(trace("big"), now=10.0)
    assert late.rate_of("big•,") > plain.rate_of("big•,")
    stats = late.stats()
    assert stats.late_spans == 800
    assert stats.seen_spans == 800 + 1 + 800 + 1
    assert stats.kept_spans == stats.kept_traces + (800 if decision.keep else 0)


def test_late_spans_can_end_a_window() -> None:
    sampler = total(goal=10, clear=10.0)
    decision = sampler.decide(trace("a"), now=0.0)
    sampler.count_late(decision.key, 5, decision.keep, now=10.5)
    assert sampler.stats().goal.window == 1


def test_top_keys_are_the_heaviest_with_their_rates() -> None:
    sampler = total(goal=10, clear=10.0)
    feed(sampler, 0.0, 10.0, {f"k{i:02d}": 1 + i for i in range(30)})
    sampler.decide(trace("k00"), now=10.0)
    top = sampler.stats().top_keys
    assert len(top) == TOP_KEYS
    assert [entry.key for entry in top] == [f"k{i:02d}•," for i in range(29, 9, -1)]
    assert all(entry.rate == sampler.rate_of(entry.key) for entry in top)
    assert top[0].spans_per_window == 30


def test_no_clock_at_all_decides_with_current_rates() -> None:
    sampler = total(goal=10, clear=10.0)
    feed(sampler, 0.0, 10.0, {"big": 1000})
    sampler.decide(trace("big"), now=10.0)
    rate = sampler.rate_of("big•,")
    assert sampler.decide(trace("big"), now=math.inf).rate == rate
    assert sampler.stats().goal.window == 1


def test_dynamic_sampler_starts_at_its_goal_rate() -> None:
    spec = DynamicSpec(sample_rate=4, field_list=("customer.id",), clear_frequency=Seconds(5.0))
    sampler = DynamicSampler(spec, "d")
    assert sampler.decide(trace("a"), now=0.0).rate == 4
    feed(sampler, 0.0, 5.0, {"a": 400, "b": 2})
    sampler.decide(trace("a"), now=5.0)
    assert sampler.rate_of("b•,") == 1
    # 404 spans at 1 in 4 is 101 kept: b's 2, a's floor trace, and 98 of a's other 401
    assert sampler.rate_of("a•,") == 4
    assert sampler.fields_used() == {"customer.id"}
    assert sampler.stats().kind == "DynamicSampler"


def test_bursts_recompute_early() -> None:
    spec = EMADynamicSpec(
        goal_sample_rate=10,
        field_list=("customer.id",),
        adjustment_interval=Seconds(10.0),
        burst_multiple=2.0,
        burst_detection_delay=1,
    )
    sampler = EMADynamicSampler(spec, "e")
    feed(sampler, 0.0, 10.0, {"a": 100, "b": 100})
    feed(sampler, 10.0, 20.0, {"a": 100, "b": 100})
    sampler.decide(trace("a"), now=20.0)
    assert sampler.stats().bursts == 0
    calm = sampler.rate_of("a•,")
    # Key a triples its traffic: 400 traces reach 2 × the 200 averaged long before 30s.
    feed(sampler, 20.0, 22.0, {"a": 600})
    stats = sampler.stats()
    assert stats.bursts == 1
    assert stats.goal.window == 3
    assert sampler.rate_of("a•,") > calm


def test_bursts_wait_for_the_detection_delay() -> None:
    spec = EMADynamicSpec(
        goal_sample_rate=10,
        field_list=("customer.id",),
        adjustment_interval=Seconds(10.0),
        burst_detection_delay=3,
    )
    sampler = EMADynamicSampler(spec, "e")
    feed(sampler, 0.0, 10.0, {"a": 100})
    feed(sampler, 10.0, 12.0, {"a": 1000})
    assert sampler.stats().bursts == 0


def test_negative_burst_multiple_disables_bursts() -> None:
    spec = EMADynamicSpec(
        field_list=("customer.id",),
        adjustment_interval=Seconds(10.0),
        burst_multiple=-1.0,
        burst_detection_delay=1,
    )
    sampler = EMADynamicSampler(spec, "e")
    feed(sampler, 0.0, 10.0, {"a": 100})
    feed(sampler, 10.0, 20.0, {"a": 100})
    feed(sampler, 20.0, 22.0, {"a": 5000})
    assert sampler.stats().bursts == 0
