"""RulesBasedSampler.redecide: what late spans change about a dropped trace's decision.

The property that matters: whenever `redecide` answers, its answer is the decision the whole
trace (the earlier spans and the late ones) gets. It is checked against `decide` on random rules
and traces; the named cases pin down the answers users rely on.
"""

from __future__ import annotations

import random

from refinery_py.config.rules_spec import ConditionSpec, DeterministicSpec, DownstreamSpec
from refinery_py.decide import RulesBasedSampler, Sampler
from refinery_py.model import Decision, FieldValue

from .fakes import FakeTrace, cond, rule, rules_sampler

Fields = dict[str, FieldValue]


def redecide(
    sampler: Sampler, early: list[Fields], late: list[Fields], root: int | None
) -> tuple[Decision, Decision | None, Decision]:
    """(decision on the early spans, redecide's answer for the late ones, decision on all);
    `root` indexes the whole trace (early spans first)."""
    assert isinstance(sampler, RulesBasedSampler)
    early_root = root if root is not None and root < len(early) else None
    late_root = root - len(early) if root is not None and root >= len(early) else None
    first = sampler.decide(FakeTrace(early, root=early_root), now=0.0)
    again = sampler.redecide(FakeTrace(late, root=late_root), first, now=0.0)
    whole = sampler.decide(FakeTrace(early + late, root=root), now=0.0)
    return first, again, whole


DEFAULT_LIKE = (
    rule("keep errors", cond("error", "exists"), sample_rate=1),
    rule(
        "keep server errors",
        cond(["root.http.response.status_code", "root.http.status_code"], ">=", 500, "int"),
        sample_rate=1,
    ),
    rule("keep flagged", cond("app.flagged", "=", True, "bool"), sample_rate=1),
    rule("drop health", cond("root.http.route", "starts-with", "/health"), drop=True),
    rule("sample the rest", sample_rate=1_000_000),
)


def test_a_late_error_keeps_a_trace_the_fallback_dropped() -> None:
    sampler = rules_sampler(*DEFAULT_LIKE)
    first, again, _ = redecide(
        sampler, [{"http.route": "/cart"}, {}], [{"error": True}, {"x": 1}], root=0
    )
    assert not first.keep and first.reason == "rules/trace/sample the rest"
    assert again == Decision(True, 1, "rules/trace/keep errors")


def test_a_late_error_keeps_a_health_check_the_earlier_rule_outranks() -> None:
    # `keep errors` comes before `drop health`: the whole trace would have been kept.
    sampler = rules_sampler(*DEFAULT_LIKE)
    first, again, whole = redecide(sampler, [{"http.route": "/healthz"}], [{"error": 1}], root=0)
    assert first.reason == "rules/trace/drop health"
    assert again == whole == Decision(True, 1, "rules/trace/keep errors")


def test_late_spans_that_meet_no_earlier_rule_change_nothing() -> None:
    sampler = rules_sampler(*DEFAULT_LIKE)
    _, again, _ = redecide(sampler, [{"http.route": "/cart"}], [{"http.route": "/x"}], root=0)
    assert again is None


def test_a_late_root_with_a_server_error_keeps_the_trace() -> None:
    sampler = rules_sampler(*DEFAULT_LIKE)
    first, again, whole = redecide(
        sampler, [{"db": "select"}], [{"http.status_code": 503}, {}], root=1
    )
    assert not first.keep
    assert again == whole == Decision(True, 1, "rules/trace/keep server errors")


def test_a_late_root_that_is_a_health_check_stays_dropped() -> None:
    sampler = rules_sampler(*DEFAULT_LIKE)
    _, again, whole = redecide(sampler, [{"db": "select"}], [{"http.route": "/health"}], root=1)
    assert again == whole == Decision(False, 0, "rules/trace/drop health")


def test_a_condition_the_early_spans_may_have_met_leaves_the_decision_alone() -> None:
    # Trace scope: `a` and `b` may be met by different spans; the late span meets `b`, and the
    # earlier ones may or may not have met `a`.
    sampler = rules_sampler(
        rule("both", cond("a", "exists"), cond("b", "exists"), sample_rate=1),
        rule("rest", drop=True),
    )
    _, again, whole = redecide(sampler, [{"a": 1}], [{"b": 1}], root=0)
    assert again is None and whole.keep
    _, again, whole = redecide(sampler, [{"c": 1}], [{"b": 1}], root=0)
    assert again is None and not whole.keep


def test_span_scope_needs_one_late_span_to_meet_every_condition() -> None:
    sampler = rules_sampler(
        rule("both", cond("a", "exists"), cond("b", "exists"), scope="span", sample_rate=1),
        rule("rest", drop=True),
    )
    assert redecide(sampler, [{"a": 1}], [{"b": 1}], root=0)[1] is None
    assert redecide(sampler, [{"a": 1}], [{"a": 2, "b": 1}], root=0)[1] == Decision(
        True, 1, "rules/span/both"
    )


def test_an_earlier_drop_rule_the_late_spans_meet_keeps_the_drop() -> None:
    sampler = rules_sampler(
        rule("drop noisy", cond("noisy", "=", True, "bool"), drop=True),
        rule("keep errors", cond("error", "exists"), sample_rate=1),
        rule("rest", drop=True),
    )
    _, again, whole = redecide(sampler, [{}], [{"noisy": True, "error": True}], root=0)
    assert again == whole == Decision(False, 0, "rules/trace/drop noisy")


def test_a_rule_with_a_downstream_sampler_cannot_be_redecided() -> None:
    downstream: DownstreamSpec = DeterministicSpec(sample_rate=1)
    sampler = rules_sampler(
        rule("errors, sampled", cond("error", "exists"), sampler=downstream),
        rule("rest", drop=True),
    )
    assert redecide(sampler, [{}], [{"error": True}], root=0)[1] is None


def test_a_decision_no_rule_made_is_left_alone() -> None:
    sampler = rules_sampler(*DEFAULT_LIKE)
    assert isinstance(sampler, RulesBasedSampler)
    relief = Decision(False, 100, "stress_relief")
    assert sampler.redecide(FakeTrace([{"error": True}]), relief, now=0.0) is None


# ---- the property, on random rules and traces ---------------------------------------------

FIELDS = ("a", "b", "error")
VALUES: tuple[FieldValue, ...] = (1, 2, True, "x")


def random_condition(rng: random.Random) -> ConditionSpec:
    shape = rng.random()
    if shape < 0.15:
        return cond("root.r", rng.choice(("exists", "not-exists", "=")), rng.choice(VALUES))
    if shape < 0.22:
        return cond(["root.r", rng.choice(FIELDS)], "exists")  # root and span fields at once
    if shape < 0.27:
        return cond("?.NUM_DESCENDANTS", ">=", rng.choice((2, 3)), "int")
    if shape < 0.32:
        return cond(None, "has-root-span", rng.choice((True, False)))
    operator = rng.choice(("exists", "not-exists", "=", "!="))
    return cond(rng.choice(FIELDS), operator, rng.choice(VALUES))


def random_rules(rng: random.Random) -> Sampler:
    rules = []
    for index in range(rng.randint(1, 5)):
        conditions = [random_condition(rng) for _ in range(rng.choice((1, 1, 2, 3)))]
        outcome = rng.random()
        options: dict[str, object] = {"scope": rng.choice(("trace", "span"))}
        if outcome < 0.4:
            options["sample_rate"] = 1
        elif outcome < 0.7:
            options["drop"] = True
        else:
            options["sample_rate"] = rng.choice((2, 10))
        rules.append(rule(f"r{index}", *conditions, **options))
    rules.append(rule("rest", drop=True))
    return rules_sampler(*rules)


def random_span(rng: random.Random) -> Fields:
    names = ("a", "b", "error", "r")
    return {name: rng.choice(VALUES) for name in names if rng.random() < 0.35}


def test_whenever_redecide_answers_the_whole_trace_gets_that_answer() -> None:
    rng = random.Random(20261207)
    answered = changed = 0
    for case in range(6000):
        sampler = random_rules(rng)
        early = [random_span(rng) for _ in range(rng.randint(1, 3))]
        late = [random_span(rng) for _ in range(rng.randint(1, 3))]
        whole = len(early) + len(late)
        root = rng.choice([None, *range(whole)])
        # Trace IDs vary, so SampleRate rules keep some traces and drop others.
        trace_id = f"{rng.getrandbits(128):032x}"
        assert isinstance(sampler, RulesBasedSampler)
        early_root = root if root is not None and root < len(early) else None
        late_root = root - len(early) if root is not None and root >= len(early) else None
        first = sampler.decide(FakeTrace(early, early_root, trace_id), now=0.0)
        again = sampler.redecide(FakeTrace(late, late_root, trace_id), first, now=0.0)
        if again is None:
            continue
        answered += 1
        expected = sampler.decide(FakeTrace(early + late, root, trace_id), now=0.0)
        assert again == expected, f"case {case}: {first} then {again}, whole trace {expected}"
        changed += again != first
    # The check means something only if it answered often, and changed decisions sometimes.
    assert answered > 600, answered
    assert changed > 150, changed
