"""The engine's handle on the adaptive samplers: reloads, late spans, cluster size, reports."""

from __future__ import annotations

from refinery_py.config.rules import parse_rules
from refinery_py.decide import KeyedSampler, RulesEngine
from refinery_py.model import Decision

from .fakes import FakeTrace

_ids = iter(range(1, 10**9))

RULES = """\
RulesVersion: 2
Samplers:
  __default__:
    RulesBasedSampler:
      Rules:
        - Name: keep errors
          Conditions:
            - Field: error
              Operator: exists
          SampleRate: 1
        - Name: sample the rest
          Sampler:
            EMADynamicSampler:
              GoalSampleRate: 10
              AdjustmentInterval: 10s
              FieldList: [customer.id]
  staging:
    TotalThroughputSampler:
      GoalThroughputPerSec: 100
      UseClusterSize: true
      ClearFrequency: 10s
      FieldList: [customer.id]
"""
DEFAULT = "__default__/sample the rest:EMADynamicSampler"
STAGING = "staging:TotalThroughputSampler"


def trace(customer: str, *, target: str = "prod", spans: int = 1) -> FakeTrace:
    fields = {"customer.id": customer, "deployment.environment.name": target}
    return FakeTrace([fields] * spans, trace_id=f"{next(_ids):032x}")


def traffic(engine: RulesEngine, start: float, end: float, *, target: str = "prod") -> None:
    """A busy and a quiet customer, 10 traces a second, over [start, end)."""
    steps = int((end - start) * 10)
    for i in range(steps):
        customer = "quiet" if i % 20 == 0 else "busy"
        engine.decide(trace(customer, target=target), start + i / 10)


def adaptive(engine: RulesEngine, name: str) -> KeyedSampler:
    sampler = engine.adaptive_sampler(name)
    assert sampler is not None, name
    return sampler


def test_an_unrelated_edit_keeps_what_the_sampler_learned() -> None:
    old = RulesEngine(parse_rules(RULES, "rules.yaml"))
    traffic(old, 0.0, 30.0)
    learned = adaptive(old, DEFAULT)
    busy_rate = learned.rate_of("busy•,")
    assert busy_rate > 10
    kept_so_far = learned.stats().kept_traces
    # Another rule gains a condition (so every line below it moves) and staging's goal changes.
    edited = RULES.replace(
        "            - Field: error\n              Operator: exists\n",
        "            - Field: error\n              Operator: exists\n"
        "            - Field: status_code\n              Operator: '='\n              Value: 2\n",
    ).replace("GoalThroughputPerSec: 100", "GoalThroughputPerSec: 200")
    new = RulesEngine(parse_rules(edited, "rules.yaml"), previous=old)
    assert new.reused == (DEFAULT,)
    kept = adaptive(new, DEFAULT)
    assert kept is learned
    assert kept.rate_of("busy•,") == busy_rate
    assert kept.decide(trace("busy"), 30.05).rate in (1, busy_rate)
    assert kept.stats().kept_traces >= kept_so_far  # counting carries on
    # The changed sampler starts from scratch.
    assert adaptive(new, STAGING) is not adaptive(old, STAGING)
    assert adaptive(new, STAGING).stats().kept_traces == 0


def test_a_changed_sampler_starts_fresh() -> None:
    old = RulesEngine(parse_rules(RULES, "rules.yaml"))
    traffic(old, 0.0, 30.0)
    new = RulesEngine(
        parse_rules(RULES.replace("GoalSampleRate: 10", "GoalSampleRate: 20"), "rules.yaml"),
        previous=old,
    )
    assert new.reused == (STAGING,)
    fresh = adaptive(new, DEFAULT)
    assert fresh is not adaptive(old, DEFAULT)
    assert fresh.rate_of("busy•,") == 20  # the initial rate: nothing learned yet
    assert fresh.stats().kept_traces == 0


def test_a_renamed_rule_is_a_new_place() -> None:
    old = RulesEngine(parse_rules(RULES, "rules.yaml"))
    renamed = RULES.replace("Name: sample the rest", "Name: sample everything else")
    new = RulesEngine(parse_rules(renamed, "rules.yaml"), previous=old)
    assert new.reused == (STAGING,)
    assert [stats.sampler for stats in new.stats()] == [
        "__default__/sample everything else:EMADynamicSampler",
        STAGING,
    ]


def test_late_spans_reach_the_sampler_that_decided() -> None:
    engine = RulesEngine(parse_rules(RULES, "rules.yaml"))
    decision = engine.decide(trace("busy", target="staging", spans=3), 0.0)
    assert decision.sampler == STAGING
    engine.count_late(decision, 40, 1.0)
    stats = adaptive(engine, STAGING).stats()
    assert stats.late_spans == 40
    assert stats.seen_spans == 43
    assert stats.kept_spans == (43 if decision.keep else 0)
    # Decisions of fixed-rate rules, or of samplers a reload removed, are ignored.
    engine.count_late(Decision(True, 1, "rules/trace/keep errors"), 10, 2.0)
    gone = Decision(True, 1, "totalthroughput", "x•,", "gone:TotalThroughputSampler")
    engine.count_late(gone, 10, 2.0)
    assert engine.adaptive_sampler("gone:TotalThroughputSampler") is None
    assert adaptive(engine, STAGING).stats().late_spans == 40


def test_cluster_size_reaches_current_and_future_samplers() -> None:
    engine = RulesEngine(parse_rules(RULES, "rules.yaml"))
    engine.set_cluster_size(4)
    traffic(engine, 0.0, 10.0, target="staging")
    engine.decide(trace("busy", target="staging"), 10.0)
    assert adaptive(engine, STAGING).stats().goal.budget == 100 * 10 / 4
    # A new engine keeps the node count, for the samplers it builds and those it takes over.
    edited = RULES.replace("GoalThroughputPerSec: 100", "GoalThroughputPerSec: 200")
    new = RulesEngine(parse_rules(edited, "rules.yaml"), previous=engine)
    traffic(new, 20.0, 30.0, target="staging")
    new.decide(trace("busy", target="staging"), 30.0)
    assert adaptive(new, STAGING).stats().goal.budget == 200 * 10 / 4


def test_goal_reports_come_once_per_window() -> None:
    tight = RULES.replace("GoalThroughputPerSec: 100", "GoalThroughputPerSec: 1")
    engine = RulesEngine(parse_rules(tight, "rules.yaml"))
    for second in range(35):
        for customer in range(30):  # 30 keys, one trace of 5 spans each per second
            engine.decide(
                trace(f"c{customer}", target="staging", spans=5), second + 0.01 * customer
            )
    reports = engine.take_goal_reports()
    assert [(report.sampler, report.window) for report in reports] == [
        (STAGING, 1),
        (STAGING, 2),
        (STAGING, 3),
    ]
    assert "30 keys need 150 to keep one trace each" in reports[0].message
    assert engine.take_goal_reports() == []
    statuses = {stats.sampler: stats.goal for stats in engine.stats()}
    assert not statuses[STAGING].reachable
    assert statuses[DEFAULT].reachable
