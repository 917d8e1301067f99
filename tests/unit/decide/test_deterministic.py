"""Trace-ID hashing and the DeterministicSampler, against Refinery's own test values."""

from __future__ import annotations

import random

import pytest

from refinery_py.config.rules_spec import DeterministicSpec
from refinery_py.decide import DeterministicSampler, keep_for_rate
from refinery_py.decide.hashing import MAX_UINT32, trace_hash, upper_bound
from refinery_py.model import Decision

from .fakes import FakeTrace

# Refinery's sample/deterministic_test.go TestGetSampleRate: trace ID -> kept at SampleRate 10.
REFINERY_RATE_10 = [
    ("abc123", False),
    ("def456", True),
    ("ghi789", False),
    ("zyx987", False),
    ("wvu654", False),
    ("tsr321", False),
]

# The uint32 Refinery's GetSampleRate computes for those IDs (same Go expression, run in Go).
REFINERY_HASHES = {
    "abc123": 2720466143,
    "def456": 110324266,
    "ghi789": 504639875,
    "zyx987": 4065325026,
    "wvu654": 3221852625,
    "tsr321": 621798352,
}


@pytest.mark.parametrize(("trace_id", "kept"), REFINERY_RATE_10)
def test_keep_for_rate_agrees_with_refinery(trace_id: str, kept: bool) -> None:
    assert trace_hash(trace_id) == REFINERY_HASHES[trace_id]
    assert keep_for_rate(trace_id, 10) is kept


@pytest.mark.parametrize(("trace_id", "kept"), REFINERY_RATE_10)
def test_deterministic_sampler_agrees_with_refinery(trace_id: str, kept: bool) -> None:
    sampler = DeterministicSampler(DeterministicSpec(sample_rate=10))
    decision = sampler.decide(FakeTrace([{}], trace_id=trace_id), now=0.0)
    assert decision == Decision(keep=kept, rate=10, reason="deterministic/chance", key="")


def test_upper_bound_is_refinery_integer_division() -> None:
    assert upper_bound(10) == 4294967295 // 10 == 429496729
    assert upper_bound(1) == MAX_UINT32


@pytest.mark.parametrize("rate", [1, 0, -5])
def test_rate_one_or_less_always_keeps(rate: int) -> None:
    assert all(keep_for_rate(f"{i:032x}", rate) for i in range(1000))


def test_rate_one_sampler_says_always() -> None:
    sampler = DeterministicSampler(DeterministicSpec(sample_rate=1))
    for i in range(50):
        decision = sampler.decide(FakeTrace([{}], trace_id=f"{i:032x}"), now=0.0)
        assert decision == Decision(keep=True, rate=1, reason="deterministic/always")


def test_decision_is_a_function_of_the_trace_id_only() -> None:
    sampler = DeterministicSampler(DeterministicSpec(sample_rate=7))
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    first = sampler.decide(FakeTrace([{"a": 1}], trace_id=trace_id), now=1.0)
    again = sampler.decide(FakeTrace([{"b": 2}, {}], root=None, trace_id=trace_id), now=99.0)
    assert first == again
    assert first.keep is keep_for_rate(trace_id, 7)


@pytest.mark.parametrize("rate", [2, 10, 100, 1000])
def test_achieved_rate_over_100k_random_ids(rate: int) -> None:
    # 100,000 IDs from a fixed seed; the kept share must be within 5 standard deviations of
    # 1/rate (0.0095 at rate 2, 0.0047 at rate 10, 0.0016 at rate 100, 0.0005 at rate 1000).
    rng = random.Random(20240601 + rate)
    total = 100_000
    kept = sum(keep_for_rate(f"{rng.getrandbits(128):032x}", rate) for _ in range(total))
    p = 1 / rate
    tolerance = 5 * (p * (1 - p) / total) ** 0.5
    assert abs(kept / total - p) <= tolerance, (kept, total, rate)
