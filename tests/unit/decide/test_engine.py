"""The engine: a sampler per target, which target a trace belongs to, naming the adaptive ones."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from refinery_py.config.rules_spec import (
    DEFAULT_TARGET,
    NUM_DESCENDANTS,
    DeterministicSpec,
    DynamicSpec,
    EMADynamicSpec,
    EMAThroughputSpec,
    RulesBasedSpec,
    RulesSpec,
    SamplerSpec,
    TotalThroughputSpec,
    WindowedThroughputSpec,
)
from refinery_py.decide import (
    DeterministicSampler,
    DynamicSampler,
    EMADynamicSampler,
    EMAThroughputSampler,
    KeyedSampler,
    RulesBasedSampler,
    RulesEngine,
    TotalThroughputSampler,
    UnsupportedSampler,
    WindowedThroughputSampler,
    build_sampler,
)
from refinery_py.model import Decision

from .fakes import FakeTrace, cond, rule

KEEP_ALL = DeterministicSpec(sample_rate=1)


def engine(**samplers: SamplerSpec) -> RulesEngine:
    return RulesEngine(RulesSpec(rules_version=2, samplers=samplers))


def named(reason: str) -> RulesBasedSpec:
    """A sampler whose decision reason names it."""
    return RulesBasedSpec(rules=(rule(reason),))


TARGETS = engine(
    __default__=named("default"),
    production=named("production"),
    staging=named("staging"),
    checkout=named("checkout"),
)


@pytest.mark.parametrize(
    ("fields", "target"),
    [
        ({"deployment.environment.name": "production"}, "production"),
        ({"deployment.environment": "staging"}, "staging"),
        (
            {"deployment.environment.name": "production", "deployment.environment": "staging"},
            "production",
        ),
        ({"deployment.environment.name": "qa", "service.name": "checkout"}, "checkout"),
        ({"deployment.environment.name": "production", "service.name": "checkout"}, "production"),
        ({"service.name": "checkout"}, "checkout"),
        ({"service.name": "billing"}, DEFAULT_TARGET),
        ({"deployment.environment.name": "qa"}, DEFAULT_TARGET),
        ({"deployment.environment.name": 5, "service.name": "checkout"}, "checkout"),
        ({}, DEFAULT_TARGET),
    ],
)
def test_target_of(fields: dict[str, str | int], target: str) -> None:
    trace = FakeTrace([fields, {"service.name": "other"}])
    assert TARGETS.target_of(trace) == target
    assert TARGETS.decide(trace, now=0.0).reason == f"rules/trace/{target.strip('_')}"


def test_target_is_read_from_the_root_span() -> None:
    spans = [{"service.name": "billing"}, {"service.name": "checkout"}]
    assert TARGETS.target_of(FakeTrace(spans, root=1)) == "checkout"
    assert TARGETS.target_of(FakeTrace(spans, root=0)) == DEFAULT_TARGET


def test_target_without_root_is_read_from_the_first_span() -> None:
    spans = [{"service.name": "checkout"}, {"deployment.environment.name": "production"}]
    assert TARGETS.target_of(FakeTrace(spans, root=None)) == "checkout"
    assert TARGETS.target_of(FakeTrace([], root=None)) == DEFAULT_TARGET


def test_single_target_reads_nothing() -> None:
    only = engine(__default__=KEEP_ALL)
    trace = FakeTrace([{"service.name": "x"}])
    assert only.target_of(trace) == DEFAULT_TARGET
    assert only.decide(trace, now=0.0) == Decision(True, 1, "deterministic/always")
    assert trace.reads() == set()
    assert only.fields_used() == frozenset()


def test_sampler_for() -> None:
    assert isinstance(TARGETS.sampler_for("production"), RulesBasedSampler)
    assert TARGETS.sampler_for("unknown") is TARGETS.sampler_for(DEFAULT_TARGET)
    assert TARGETS.targets == {DEFAULT_TARGET, "production", "staging", "checkout"}


def test_build_sampler() -> None:
    assert isinstance(build_sampler(KEEP_ALL), DeterministicSampler)
    assert isinstance(build_sampler(RulesBasedSpec()), RulesBasedSampler)


@pytest.mark.parametrize(
    ("spec", "kind"),
    [
        (DynamicSpec(sample_rate=2, field_list=("a",), line=7), DynamicSampler),
        (EMADynamicSpec(field_list=("a",), line=42), EMADynamicSampler),
        (EMAThroughputSpec(line=3), EMAThroughputSampler),
        (WindowedThroughputSpec(line=4), WindowedThroughputSampler),
        (TotalThroughputSpec(field_list=("a",), line=5), TotalThroughputSampler),
    ],
)
def test_every_sampler_type_is_built(spec: SamplerSpec, kind: type[KeyedSampler]) -> None:
    built = engine(__default__=KEEP_ALL, env2=spec)
    sampler = built.sampler_for("env2")
    assert isinstance(sampler, kind)
    assert sampler.name == f"env2:{kind.kind}"
    assert [stats.sampler for stats in built.stats()] == [f"env2:{kind.kind}"]
    assert isinstance(build_sampler(spec, "x"), kind)


def test_downstream_samplers_are_named_after_their_rule() -> None:
    rules = RulesBasedSpec(
        rules=(
            rule("keep errors", cond("error", "=", True)),
            rule("dynamic", sampler=EMADynamicSpec(field_list=("http.route",), line=97)),
            rule("", sampler=TotalThroughputSpec(field_list=("a",))),
        )
    )
    built = engine(__default__=KEEP_ALL, env4=rules)
    assert [stats.sampler for stats in built.stats()] == [
        "env4/dynamic:EMADynamicSampler",
        "env4/#2:TotalThroughputSampler",
    ]
    decision = built.decide(FakeTrace([{"service.name": "env4", "http.route": "/a"}]), now=0.0)
    assert decision.sampler == "env4/dynamic:EMADynamicSampler"
    assert decision.key == "/a•,"
    assert decision.reason == "rules/trace/dynamic:emadynamic"


def test_default_target_is_required() -> None:
    with pytest.raises(ValueError, match="__default__"):
        engine(production=KEEP_ALL)


def test_fields_used() -> None:
    rules = RulesBasedSpec(
        rules=(
            rule(
                "a",
                cond(["root.http.route", "http.target"], "=", "/"),
                cond(NUM_DESCENDANTS, ">", 1),
            ),
            rule("b", cond("error", "exists"), cond(None, "has-root-span", True)),
        )
    )
    assert engine(__default__=rules).fields_used() == {"http.route", "http.target", "error"}
    with_targets = engine(__default__=rules, production=KEEP_ALL)
    assert with_targets.fields_used() == {
        "http.route",
        "http.target",
        "error",
        "deployment.environment.name",
        "deployment.environment",
        "service.name",
    }


def test_decide_routes_to_the_targets_sampler() -> None:
    rules = RulesBasedSpec(
        rules=(rule("drop health", cond("http.route", "=", "/health"), drop=True),)
    )
    both = engine(__default__=KEEP_ALL, api=rules)
    health = [{"service.name": "api", "http.route": "/health"}]
    assert both.decide(FakeTrace(health), now=0.0) == Decision(False, 0, "rules/trace/drop health")
    other = [{"service.name": "web", "http.route": "/health"}]
    assert both.decide(FakeTrace(other), now=0.0) == Decision(True, 1, "deterministic/always")


def test_a_spec_without_a_sampler_fails_at_load() -> None:
    @dataclass(frozen=True)
    class NewSpec:
        line: int = 3

    with pytest.raises(UnsupportedSampler, match=r"^NewSpec \(target 'env', line 3\) is not"):
        build_sampler(NewSpec(), "env")  # type: ignore[arg-type]
