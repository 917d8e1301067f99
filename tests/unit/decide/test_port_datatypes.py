"""Refinery's TestRulesDatatypes, TestRegexpRules, TestRuleMatchesSpanMatchingSpan and the
downstream-sampler tests (sample/rules_test.go), ported."""

from __future__ import annotations

import pytest

from refinery_py.config.rules_spec import (
    ConditionSpec,
    DeterministicSpec,
    DynamicSpec,
    EMADynamicSpec,
    RuleSpec,
)
from refinery_py.decide import keep_for_rate
from refinery_py.model import FieldValue

from .fakes import TRACE_ID, FakeTrace, cond, rules_sampler
from .port import Port, Span, check, r


def _dt(
    name: str,
    operator: str,
    value: object,
    datatype: str | None,
    span_value: FieldValue,
    *,
    rate: int,
) -> Port:
    rules = (r(name, cond("test", operator, value, datatype), sample_rate=10),)
    return Port(
        name, rules, [{"test": span_value}], rate, reason=name if rate == 10 else "no rule matched"
    )


DATATYPES = [
    _dt("int64Unchanged", "=", 1, "int", 1, rate=10),
    _dt("floatUnchanged", "=", 1.01, "float", 1.01, rate=10),
    _dt("stringUnchanged", "=", "foo", "string", "foo", rate=10),
    _dt("boolUnchanged", "=", "true", "string", True, rate=10),
    _dt("bool", "=", True, "bool", True, rate=10),
    _dt("boolShouldChangeToFalse", "contains", "ru", "string", True, rate=10),
    _dt("intToFloat", "=", 10, "int", 10.0, rate=10),
    _dt("floatToInt", "<", 100.01, "float", 100, rate=10),
    _dt("invalidConfigComparesStringWithInt", "=", "500", "string", "500", rate=10),
    _dt("stringToInt", "=", 500, "int", "500", rate=10),
    _dt("intToString", ">", "1", "string", 2, rate=10),
    _dt("floatToString", ">", "10.3", "string", 9.3, rate=10),  # "9.3" > "10.3" as text
    _dt("stringToFloat", "<=", 4.13, "float", "4.13", rate=10),
    _dt("stringToFloatInvalid", ">=", 4.13, "float", "fourPointOneThree", rate=1),
    _dt("stringNotEqual", "!=", "notRightValue", "string", "rightValue", rate=10),
    _dt("toStringNotEqual", "!=", "667", "string", 777, rate=10),
    _dt("intsNotEqual", "!=", 1, "int", 11, rate=10),
    _dt("regexp1", "matches", "^[0-9]+$", None, 123, rate=10),
    _dt("regexpWholeStringFail", "matches", "^[0-9]+$", None, "abc", rate=1),
]

REGEXP = [
    (r"\d+", "abc", 1),
    (r"\d+", "123", 10),
    (r"^\d+$", "123abc", 1),
    (r"^\d+", "123abc", 10),
    (r"\d+$", "123abc", 1),
    (r"\d+", 123, 10),
    (r"/foo/bar/[a-z]+", "/foo/bar/abc", 10),
    (r"/foo/bar/[a-z]+", "/foo/bar/123", 1),
    (r"[a-z+", "/foo/bar/123", 1),  # not a valid expression: the condition never matches
]


@pytest.mark.parametrize("port", DATATYPES, ids=lambda p: p.name)
def test_rules_datatypes(port: Port) -> None:
    check(port, None)


@pytest.mark.parametrize(("pattern", "value", "rate"), REGEXP)
def test_regexp_rules(pattern: str, value: FieldValue, rate: int) -> None:
    # The Go test compiles the pattern while setting the rule up; so does a spec without one.
    condition = ConditionSpec(fields=("test",), operator="matches", value=pattern)
    sampler = rules_sampler(RuleSpec(name="regexp", conditions=(condition,), sample_rate=10))
    assert sampler.decide(FakeTrace([{"test": value}], root=None), now=0.0).rate == rate


@pytest.mark.parametrize("scope", ["span", "trace"])
@pytest.mark.parametrize(
    ("spans", "keep_span", "keep_trace"),
    [
        (
            [
                {"rule_test": 1, "http.status_code": "200"},
                {"rule_test": 5, "http.status_code": "500"},
            ],
            True,
            True,
        ),
        (
            [
                {"rule_test": 1, "http.status_code": "500"},
                {"rule_test": 5, "http.status_code": "200"},
            ],
            False,
            True,
        ),
    ],
    ids=["all conditions match single span", "all conditions do not match single span"],
)
def test_rule_matches_span_matching_span(
    scope: str, spans: list[Span], keep_span: bool, keep_trace: bool
) -> None:
    sampler = rules_sampler(
        r(
            "Rule to match span",
            cond("rule_test", "=", 1),
            cond("http.status_code", "=", "200"),
            scope=scope,
        ),
        r("Default rule", drop=True, sample_rate=1),
    )
    decision = sampler.decide(FakeTrace(spans, root=None), now=0.0)
    assert decision.keep is (keep_span if scope == "span" else keep_trace)


def test_rules_with_deterministic_sampler() -> None:
    sampler = rules_sampler(
        r(
            "downstream-deterministic",
            cond("rule_test", "=", 1),
            sampler=DeterministicSpec(sample_rate=10),
        )
    )
    spans: list[Span] = [{"rule_test": 1, "http.status_code": "200"}] * 2
    decision = sampler.decide(FakeTrace(spans, root=None), now=0.0)
    assert decision.rate == 10
    assert "downstream-deterministic" in decision.reason
    assert decision.key == ""
    assert decision.keep is keep_for_rate(TRACE_ID, 10)


@pytest.mark.parametrize(
    ("downstream", "word"),
    [
        (DynamicSpec(sample_rate=10, field_list=("http.status_code",)), "dynamic"),
        (EMADynamicSpec(goal_sample_rate=10, field_list=("http.status_code",)), "emadynamic"),
    ],
)
def test_rules_with_dynamic_samplers(downstream: DynamicSpec | EMADynamicSpec, word: str) -> None:
    # TestRulesWithDynamicSampler / TestRulesWithEMADynamicSampler: the first trace gets the goal
    # rate (nothing learned yet), keyed on the distinct status codes.
    sampler = rules_sampler(r("downstream-dynamic", cond("rule_test", "=", 1), sampler=downstream))
    spans: list[Span] = [{"rule_test": 1, "http.status_code": "200"}] * 2
    decision = sampler.decide(FakeTrace(spans, root=None), now=0.0)
    assert decision.rate == 10
    assert decision.reason == f"rules/trace/downstream-dynamic:{word}"
    assert decision.key == "200•,"
    assert decision.keep is keep_for_rate(TRACE_ID, 10)
    assert sampler.fields_used() == {"http.status_code", "rule_test"}
