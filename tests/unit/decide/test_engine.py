"""The engine: a sampler per target, which target a trace belongs to, unsupported samplers."""

from __future__ import annotations

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
    RulesBasedSampler,
    RulesEngine,
    UnsupportedSampler,
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
    ("spec", "name"),
    [
        (DynamicSpec(sample_rate=2, field_list=("a",), line=7), "DynamicSampler"),
        (EMADynamicSpec(field_list=("a",), line=42), "EMADynamicSampler"),
        (EMAThroughputSpec(line=3), "EMAThroughputSampler"),
        (WindowedThroughputSpec(line=4), "WindowedThroughputSampler"),
        (TotalThroughputSpec(field_list=("a",), line=5), "TotalThroughputSampler"),
    ],
)
def test_unsupported_samplers_fail_at_load(spec: SamplerSpec, name: str) -> None:
    message = f"{name} (target 'env2', line {spec.line}) is not supported yet"
    with pytest.raises(UnsupportedSampler) as raised:
        engine(__default__=KEEP_ALL, env2=spec)
    assert str(raised.value) == message


def test_unsupported_downstream_sampler_fails_at_load() -> None:
    rules = RulesBasedSpec(
        rules=(
            rule("keep errors", cond("error", "=", True)),
            rule("dynamic", sampler=EMADynamicSpec(field_list=("http.route",), line=97)),
        )
    )
    with pytest.raises(UnsupportedSampler, match=r"^EMADynamicSampler \(target 'env4', line 97\)"):
        engine(__default__=KEEP_ALL, env4=rules)


def test_unsupported_message_without_line() -> None:
    with pytest.raises(UnsupportedSampler, match=r"^DynamicSampler \(target '__default__'\) is"):
        build_sampler(DynamicSpec(sample_rate=2, field_list=("a",)))


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
