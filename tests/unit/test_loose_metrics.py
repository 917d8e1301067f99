"""The lock-free counter and histogram expose what prometheus_client's own would."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from refinery_py.telemetry.metrics import LooseCounter, LooseHistogram

BOUNDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 2.5, 3, 5, 10, 30, 60, 120)


def _exposition(registry: CollectorRegistry) -> list[str]:
    """The exposition without prometheus_client's `_created` series (the loose ones have none)."""
    lines = generate_latest(registry).decode().splitlines()
    return [line for line in lines if "_created" not in line]


def test_the_histogram_counts_every_value_in_the_bucket_prometheus_client_would() -> None:
    values = [0.0, 0.005, 0.0050001, 1, 1.0000001, 2.2, 2.5, 119.9, 120, 120.5, 1e9, 3]
    values += [i / 997 for i in range(3000)]
    theirs, ours = CollectorRegistry(), CollectorRegistry()
    reference = Histogram("delay_seconds", "How long.", buckets=BOUNDS, registry=theirs)
    loose = LooseHistogram("delay_seconds", "How long.", BOUNDS, ours)
    for value in values:
        reference.observe(value)
        loose.observe(value)

    assert _exposition(ours) == _exposition(theirs)
    assert ours.get_sample_value("delay_seconds_count") == len(values)
    # 0.0, 0.005 and 0/997 .. 4/997
    assert ours.get_sample_value("delay_seconds_bucket", {"le": "0.005"}) == 7


def test_the_counter_keeps_a_series_per_label_values_like_prometheus_client() -> None:
    theirs, ours = CollectorRegistry(), CollectorRegistry()
    reference = Counter("decided", "Decided.", ["decision", "reason"], registry=theirs)
    loose = LooseCounter("decided", "Decided.", ("decision", "reason"), ours)
    for counter in (reference, loose):
        counter.labels("kept", "rule 1").inc()
        counter.labels("kept", "rule 1").inc(2.5)
        counter.labels("dropped", "rule 2")  # born at zero
        counter.labels("kept", "rule 3").inc(7)

    assert _exposition(ours) == _exposition(theirs)
    assert ours.get_sample_value("decided_total", {"decision": "kept", "reason": "rule 1"}) == 3.5
    with pytest.raises(ValueError, match="non-negative"):
        loose.labels("kept", "rule 1").inc(-1)
    with pytest.raises(ValueError, match="has labels"):
        loose.labels("kept")
