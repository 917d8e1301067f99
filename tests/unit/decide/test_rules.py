"""RulesBasedSampler: rule order, scopes, has-root-span, Drop, SampleRate, downstream samplers."""

from __future__ import annotations

import random

import pytest

from refinery_py.config.rules_spec import (
    DeterministicSpec,
    DownstreamSpec,
    EMADynamicSpec,
    RulesBasedSpec,
)
from refinery_py.decide import RulesBasedSampler, Sampler, keep_for_rate
from refinery_py.decide.deterministic import DeterministicSampler
from refinery_py.decide.rules import rule_labels
from refinery_py.model import Decision, FieldValue

from .fakes import TRACE_ID, FakeSpan, FakeTrace, cond, rule, rules_sampler

SCOPES = ("trace", "span")


def test_no_rules_keeps_everything() -> None:
    decision = rules_sampler().decide(FakeTrace([{"a": 1}]), now=0.0)
    assert decision == Decision(keep=True, rate=1, reason="no rule matched", key="")


def test_no_rule_matched() -> None:
    sampler = rules_sampler(rule("errors", cond("error", "=", True), drop=True))
    decision = sampler.decide(FakeTrace([{"error": False}]), now=0.0)
    assert decision == Decision(keep=True, rate=1, reason="no rule matched")


@pytest.mark.parametrize("scope", SCOPES)
def test_rule_without_conditions_always_matches(scope: str) -> None:
    sampler = rules_sampler(rule("everything", drop=True, scope=scope))
    for trace in (FakeTrace([{}]), FakeTrace([], root=None), FakeTrace([{}, {}], root=None)):
        decision = sampler.decide(trace, now=0.0)
        assert decision == Decision(keep=False, rate=0, reason=f"rules/{scope}/everything")


def test_first_matching_rule_wins() -> None:
    sampler = rules_sampler(
        rule("not this", cond("x", "=", 2), drop=True),
        rule("this", cond("x", "=", 1), sample_rate=1),
        rule("nor this", cond("x", "exists"), drop=True),
        rule("fallback", drop=True),
    )
    assert sampler.decide(FakeTrace([{"x": 1}]), now=0.0) == Decision(True, 1, "rules/trace/this")
    assert sampler.decide(FakeTrace([{"x": 2}]), now=0.0).reason == "rules/trace/not this"
    assert sampler.decide(FakeTrace([{"x": 3}]), now=0.0).reason == "rules/trace/nor this"
    assert sampler.decide(FakeTrace([{"y": 3}]), now=0.0).reason == "rules/trace/fallback"


def test_later_rules_are_not_evaluated_after_a_match() -> None:
    span = FakeSpan({"x": 1})
    sampler = rules_sampler(rule("first", cond("x", "=", 1)), rule("second", cond("y", "=", 1)))
    sampler.decide(FakeTrace([span]), now=0.0)
    assert span.reads == ["x"]


def test_drop_reports_rate_zero() -> None:
    sampler = rules_sampler(rule("drop", cond("test", ">", 2), drop=True, sample_rate=5))
    decision = sampler.decide(FakeTrace([{"test": 3.0}]), now=0.0)
    assert decision == Decision(keep=False, rate=0, reason="rules/trace/drop")


@pytest.mark.parametrize("scope", SCOPES)
def test_sample_rate_one_keeps(scope: str) -> None:
    sampler = rules_sampler(rule("keep", cond("a", "exists"), scope=scope))
    decision = sampler.decide(FakeTrace([{"a": 1}]), now=0.0)
    assert decision == Decision(keep=True, rate=1, reason=f"rules/{scope}/keep")


def test_sample_rate_is_deterministic_in_the_trace_id() -> None:
    sampler = rules_sampler(rule("tenth", sample_rate=10))
    for i in range(500):
        trace_id = f"{i * 7919:032x}"
        decision = sampler.decide(FakeTrace([{}], trace_id=trace_id), now=float(i))
        assert decision.keep is keep_for_rate(trace_id, 10)
        assert decision.rate == 10
        assert decision.reason == "rules/trace/tenth"


@pytest.mark.parametrize("rate", [4, 10, 50])
def test_sample_rate_statistics(rate: int) -> None:
    # 30,000 traces with random IDs from a fixed seed: the kept share is within 5 standard
    # deviations of 1/rate (±0.0125 at rate 4, ±0.0087 at 10, ±0.0040 at 50), and every
    # decision, kept or not, reports the rule's rate.
    rng = random.Random(7 * rate)
    sampler = rules_sampler(rule("sampled", cond("a", "=", 1), sample_rate=rate))
    total = 30_000
    kept = 0
    for _ in range(total):
        decision = sampler.decide(FakeTrace([{"a": 1}], trace_id=f"{rng.getrandbits(128):032x}"), 0)
        assert decision.rate == rate
        kept += decision.keep
    p = 1 / rate
    assert abs(kept / total - p) <= 5 * (p * (1 - p) / total) ** 0.5


# --- has-root-span: a trace-level check.


@pytest.mark.parametrize(
    ("wanted", "has_root", "expected"),
    [
        (True, True, True),
        (True, False, False),
        (False, True, False),
        (False, False, True),
        ("true", True, True),
        ("false", False, True),
        (None, False, True),  # no Value reads as false
        ("yes", True, False),  # not a Go bool word: false
    ],
)
def test_has_root_span(wanted: object, has_root: bool, expected: bool) -> None:
    sampler = rules_sampler(rule("r", cond(None, "has-root-span", wanted), drop=True))
    trace = FakeTrace([{"a": 1}, {"b": 2}], root=0 if has_root else None)
    assert (not sampler.decide(trace, now=0.0).keep) is expected


def test_has_root_span_combines_with_other_conditions() -> None:
    sampler = rules_sampler(
        rule(
            "incomplete buggy",
            cond(None, "has-root-span", False),
            cond("service.name", "=", "buggy-service"),
            drop=True,
        )
    )
    buggy: list[dict[str, FieldValue]] = [{"service.name": "buggy-service"}, {"x": 1}]
    assert not sampler.decide(FakeTrace(buggy, root=None), now=0.0).keep
    assert sampler.decide(FakeTrace(buggy, root=0), now=0.0).keep
    assert sampler.decide(FakeTrace([{"service.name": "ok"}], root=None), now=0.0).keep


def test_failed_has_root_span_short_circuits() -> None:
    span = FakeSpan({"a": 1})
    sampler = rules_sampler(
        rule("r", cond("a", "=", 1), cond(None, "has-root-span", True), drop=True)
    )
    assert sampler.decide(FakeTrace([span], root=None), now=0.0).keep
    assert span.reads == []


def test_has_root_span_in_span_scope_never_matches() -> None:
    # Refinery evaluates has-root-span only for Scope trace; its docs warn the rule is skipped.
    for wanted in (True, False):
        sampler = rules_sampler(
            rule("r", cond(None, "has-root-span", wanted), scope="span", drop=True)
        )
        for root in (0, None):
            assert sampler.decide(FakeTrace([{"a": 1}], root=root), now=0.0).keep


# --- Scope span against scope trace.


@pytest.mark.parametrize("scope", SCOPES)
def test_all_conditions_on_one_span(scope: str) -> None:
    conditions = (cond("rule_test", "=", 1), cond("http.status_code", "=", "200"))
    sampler = rules_sampler(rule("r", *conditions, scope=scope, drop=True))
    together = FakeTrace(
        [
            {"rule_test": 1, "http.status_code": "200"},
            {"rule_test": 5, "http.status_code": "500"},
        ]
    )
    apart = FakeTrace(
        [
            {"rule_test": 1, "http.status_code": "500"},
            {"rule_test": 5, "http.status_code": "200"},
        ]
    )
    assert not sampler.decide(together, now=0.0).keep
    assert sampler.decide(apart, now=0.0).keep is (scope == "span")


def test_span_scope_rule_reason() -> None:
    sampler = rules_sampler(
        rule(
            "users",
            cond("service.name", "=", "users"),
            cond("trace.parent_id", "not-exists"),
            scope="span",
            sample_rate=5,
        )
    )
    trace = FakeTrace(
        [{"service.name": "users"}, {"service.name": "users", "trace.parent_id": "ab"}]
    )
    decision = sampler.decide(trace, now=0.0)
    assert decision.reason == "rules/span/users"
    assert decision.rate == 5


def test_unknown_scope_matches_everything_like_refinery() -> None:
    sampler = rules_sampler(rule("odd", cond("never", "exists"), scope="spam", drop=True))
    decision = sampler.decide(FakeTrace([{}]), now=0.0)
    assert decision == Decision(keep=False, rate=0, reason="rules/invalid scope/odd")


# --- downstream samplers.


def _built(spec: DownstreamSpec) -> Sampler:
    assert isinstance(spec, DeterministicSpec)
    return DeterministicSampler(spec)


def test_downstream_deterministic_sampler_reason_and_rate() -> None:
    sampler = rules_sampler(
        rule(
            "downstream-deterministic",
            cond("rule_test", "=", 1),
            sampler=DeterministicSpec(sample_rate=10),
        )
    )
    for trace_id in ("abc123", "def456"):
        trace = FakeTrace([{"rule_test": 1, "http.status_code": "200"}], trace_id=trace_id)
        decision = sampler.decide(trace, now=0.0)
        assert decision == Decision(
            keep=trace_id == "def456",
            rate=10,
            reason="rules/trace/downstream-deterministic:deterministic/chance",
            key="",
        )


def test_downstream_rate_one_says_always() -> None:
    sampler = rules_sampler(rule("all", scope="span", sampler=DeterministicSpec(sample_rate=1)))
    decision = sampler.decide(FakeTrace([{}]), now=0.0)
    assert decision == Decision(True, 1, "rules/span/all:deterministic/always")


def test_downstream_sampler_wins_over_drop() -> None:
    # Refinery's documented order: Sampler, then Drop, then SampleRate.
    sampler = rules_sampler(rule("both", drop=True, sampler=DeterministicSpec(sample_rate=1)))
    assert sampler.decide(FakeTrace([{}]), now=0.0).keep


def test_downstream_is_built_once_at_construction() -> None:
    built: list[tuple[DownstreamSpec, str]] = []

    def build(spec: DownstreamSpec, label: str) -> Sampler:
        built.append((spec, label))
        return _built(spec)

    downstream = DeterministicSpec(sample_rate=3)
    spec = RulesBasedSpec(rules=(rule("a", sampler=downstream),))
    sampler = RulesBasedSampler(spec, build)
    for i in range(5):
        sampler.decide(FakeTrace([{}], trace_id=f"{i:032x}"), now=0.0)
    assert built == [(downstream, "a")]


def test_rule_labels_are_unique() -> None:
    spec = RulesBasedSpec(
        rules=(rule("keep"), rule(""), rule("dup"), rule("dup"), rule("other"), rule(""))
    )
    assert rule_labels(spec) == ["keep", "#1", "dup#2", "dup#3", "other", "#5"]


def test_downstream_dynamic_sampler_passes_its_key_and_name_on() -> None:
    sampler = rules_sampler(rule("dyn", sampler=EMADynamicSpec(field_list=("a",), line=12)))
    decision = sampler.decide(FakeTrace([{"a": "x"}, {"a": 7}]), now=0.0)
    assert decision == Decision(
        keep_for_rate(TRACE_ID, 10),
        10,
        "rules/trace/dyn:emadynamic",
        key="7•x•,",
        sampler="__default__/dyn:EMADynamicSampler",
    )


def test_fields_used_lists_condition_fields() -> None:
    sampler = rules_sampler(
        rule(
            "a",
            cond(["root.http.route", "http.target"], "=", "/"),
            cond(None, "has-root-span", True),
        ),
        rule("b", cond("?.NUM_DESCENDANTS", ">", 10), cond("error", "exists"), scope="span"),
    )
    assert sampler.fields_used() == {"http.route", "http.target", "error"}


def test_every_field_read_is_declared() -> None:
    sampler = rules_sampler(
        rule("a", cond(["root.a.b", "c"], "=", "x"), cond("d.e", "exists")),
        rule("b", cond("f", "!=", 1, "string"), cond("root.g", "not-exists"), scope="span"),
        rule("c", cond("h", "in", ["1"]), cond("?.NUM_DESCENDANTS", ">", 0)),
        nested=True,
    )
    spans: list[dict[str, FieldValue]] = [
        {"a": '{"b": 1}', "d": '{"e": 1}', "f": 1},
        {"c": "y", "g": 1},
        {"h": 2},
    ]
    for root in (0, None):
        trace = FakeTrace(spans, root=root)
        sampler.decide(trace, now=0.0)
        assert trace.reads() <= sampler.fields_used()


class _WiderTrace(FakeTrace):
    """A FakeTrace whose `spans_with` also names some spans without the field (allowed)."""

    def __init__(self, spans: list[dict[str, FieldValue]], root: int | None, seed: int) -> None:
        super().__init__(spans, root=root)
        self._rng = random.Random(seed)

    def spans_with(self, field: str) -> list[FakeSpan]:
        return [
            s for s in self._spans if s.fields.get(field) is not None or self._rng.random() < 0.3
        ]


_OPERATORS = (
    ("=", 1, None),
    ("!=", "x", None),
    (">", 0, "int"),
    ("<=", 1.5, None),
    ("starts-with", "/h", None),
    ("contains", "il", None),
    ("does-not-contain", "x", None),
    ("exists", None, None),
    ("not-exists", None, None),
    ("in", [1, "x"], None),
    ("not-in", ["x"], None),
    ("matches", "^/h", None),
)
_VALUES: tuple[FieldValue | None, ...] = (None, None, 0, 1, 2, 1.5, "x", "/health", "fail", True)


def test_asking_only_the_spans_that_may_have_a_field_decides_alike() -> None:
    """Rules narrowed by `spans_with` (exact, wider, or every span) reach the same decisions."""
    rng = random.Random(13)
    for case in range(300):
        conditions = [
            cond(rng.choice("abc"), operator, value, datatype)
            for operator, value, datatype in rng.sample(_OPERATORS, rng.randint(1, 3))
        ]
        sampler = rules_sampler(
            rule("first", *conditions, scope=rng.choice(SCOPES)),
            rule("second", cond(rng.choice("abc"), *rng.choice(_OPERATORS)), scope="span"),
        )
        spans = [
            {field: value for field in "abc" if (value := rng.choice(_VALUES)) is not None}
            for _ in range(rng.randint(1, 6))
        ]
        root = rng.choice([0, None])
        exact = sampler.decide(FakeTrace(spans, root=root), now=0.0)
        wider = sampler.decide(_WiderTrace(spans, root, seed=case), now=0.0)
        every = sampler.decide(_AllSpans(spans, root), now=0.0)
        assert exact == wider == every, (case, spans, conditions)


class _AllSpans(FakeTrace):
    def __init__(self, spans: list[dict[str, FieldValue]], root: int | None) -> None:
        super().__init__(spans, root=root)

    def spans_with(self, field: str) -> list[FakeSpan]:
        return self._spans
