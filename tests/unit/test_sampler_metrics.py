"""Sampler metrics come from the engine at scrape time and follow reloads."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from refinery_py.config.rules import parse_rules
from refinery_py.decide.engine import RulesEngine
from refinery_py.telemetry.sampler_metrics import SamplerCollector
from tests.unit.decide.fakes import FakeTrace

EMA = """
RulesVersion: 2
Samplers:
  __default__:
    EMADynamicSampler:
      GoalSampleRate: 2
      FieldList: [customer.id]
"""


def test_sampler_series_track_the_current_engine() -> None:
    engines = [RulesEngine(parse_rules(EMA, "r.yaml"))]
    registry = CollectorRegistry()
    registry.register(SamplerCollector(lambda: engines[-1].stats()))  # noqa: PLW0108 - late binding
    for n in range(200):
        trace = FakeTrace([{"customer.id": f"c{n % 3}"}], trace_id=f"{n + 1:032x}")
        engines[-1].decide(trace, now=1000.0 + n)
    name = "__default__:EMADynamicSampler"
    kept = registry.get_sample_value(
        "refinery_sampler_traces_total", {"sampler": name, "decision": "kept"}
    )
    dropped = registry.get_sample_value(
        "refinery_sampler_traces_total", {"sampler": name, "decision": "dropped"}
    )
    assert kept is not None and dropped is not None
    assert kept + dropped == 200
    assert registry.get_sample_value("refinery_sampler_keys", {"sampler": name}) == 3
    assert registry.get_sample_value("refinery_sampler_goal_unreachable", {"sampler": name}) == 0
    assert registry.get_sample_value("refinery_sampler_goal_sample_rate", {"sampler": name}) == 2
    assert (
        registry.get_sample_value("refinery_sampler_goal_spans_per_second", {"sampler": name})
        is None
    )
    engines.append(
        RulesEngine(
            parse_rules(
                EMA.replace("EMADynamic", "Dynamic").replace("GoalSampleRate", "SampleRate"),
                "r.yaml",
            )
        )
    )
    assert registry.get_sample_value("refinery_sampler_keys", {"sampler": name}) is None


DYNAMIC = """
RulesVersion: 2
Samplers:
  __default__:
    DynamicSampler:
      SampleRate: 10
      ClearFrequency: 10s
      MaxKeys: 5
      FieldList: [customer.id]
"""


def test_the_share_of_keys_kept_per_window() -> None:
    engine = RulesEngine(parse_rules(DYNAMIC, "r.yaml"))
    registry = CollectorRegistry()
    registry.register(SamplerCollector(engine.stats))
    ratio = {"sampler": "__default__:DynamicSampler"}

    def window(start: float) -> float | None:
        # 51 keys, ten times MaxKeys: one busy key and 50 that send one trace each.
        for n in range(600):
            customer = f"c{n // 12}" if n % 12 == 0 else "busy"
            trace_id = f"{int(start) * 1000 + n:032x}"
            engine.decide(FakeTrace([{"customer.id": customer}], trace_id=trace_id), start + n / 60)
        return registry.get_sample_value("refinery_sampler_window_keys_kept_ratio", ratio)

    assert window(1000.0) is None  # no window has ended
    first = window(1010.0)  # the first window sampled everything at 1 in 10: few keys kept
    assert first is not None
    assert first < 0.5
    assert window(1020.0) == 1.0  # planned with floors: every key kept its first trace


def test_a_throughput_sampler_publishes_its_share_of_the_goal() -> None:
    rules = """
RulesVersion: 2
Samplers:
  __default__:
    EMAThroughputSampler:
      GoalThroughputPerSec: 100
      FieldList: [customer.id]
"""
    engine = RulesEngine(parse_rules(rules, "r.yaml"))
    engine.set_cluster_size(1, workers=4)
    registry = CollectorRegistry()
    registry.register(SamplerCollector(engine.stats))
    name = "__default__:EMAThroughputSampler"
    goal = registry.get_sample_value("refinery_sampler_goal_spans_per_second", {"sampler": name})
    assert goal == 25
    assert registry.get_sample_value("refinery_sampler_goal_sample_rate", {"sampler": name}) is None
