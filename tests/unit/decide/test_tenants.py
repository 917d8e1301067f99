"""The adaptive samplers on issue 10's traffic: many customers, most of them rarely seen.

200 traces/s of 1-3 spans from 500 customers with Zipf(1.2) popularity, each customer on two of
50 routes (see `simulation.TenantShape`), so per window most (customer, route) keys send one or
two traces. Seeded, so every number here is the same on every run.
"""

from __future__ import annotations

import functools

import pytest

from refinery_py.config.rules_spec import WindowedThroughputSpec
from refinery_py.config.units import Seconds
from refinery_py.decide import build_sampler

from .simulation import SimTrace, TenantShape, generate_tenants, run

SERVICE = "service.name"


@functools.cache
def tenants(duration: float) -> list[SimTrace]:
    return generate_tenants(TenantShape(duration=duration))


def test_windowed_throughput_meets_a_low_goal() -> None:
    # Goal 10 spans/s for 8 services sending ~400 spans/s: the sampler keeps ~5 traces a second,
    # and its feedback must not mistake that second-to-second noise for a bias.
    spec = WindowedThroughputSpec(
        goal_throughput_per_sec=10,
        field_list=(SERVICE,),
        update_frequency=Seconds(1.0),
        lookback_frequency=Seconds(30.0),
    )
    sampler = build_sampler(spec, "sim")
    outcome = run(sampler, tenants(600.0), window=30.0, warmup_windows=2)
    assert outcome.windows >= 15
    assert outcome.kept_traces >= 2_500  # enough that ±10% is not sampling noise (~2%)
    assert outcome.kept_spans_per_sec == pytest.approx(10, rel=0.10)
