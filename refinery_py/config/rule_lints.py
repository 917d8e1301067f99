"""Warnings about rules that are legal but almost certainly not what their author meant.

Each lint names the line to look at and says why. They are warnings: `rules check` exits 0 unless
`--strict`. The lints come from rules that silently misbehave in Refinery's users' reports:
negative conditions in trace scope (Refinery #965), `has-root-span` in span scope (#1757), rules
shadowed by an earlier rule, and rules that set no action.
"""

from __future__ import annotations

from refinery_py.config.conditions import HAS_ROOT_SPAN
from refinery_py.config.loader import Reader
from refinery_py.config.mapping_view import MappingView
from refinery_py.config.rules_spec import ROOT_PREFIX, ConditionSpec, RuleSpec

NEGATIVE_OPERATORS = frozenset({"!=", "not-exists", "does-not-contain", "not-in"})
"""Operators that a trace-scope rule satisfies when ANY one span fails the positive test."""


def check_rule(reader: Reader, view: MappingView) -> None:
    """Lints that look at one rule."""
    conditions = view.get("conditions")
    scope = view.get("scope")
    if isinstance(conditions, tuple):
        for condition in conditions:
            if scope == "span" and condition.operator == HAS_ROOT_SPAN:
                reader.warning(
                    condition.line,
                    f"{view.path}: has-root-span cannot be evaluated with Scope: span; "
                    "Refinery skips such a rule",
                )
            if scope != "span" and _negative_on_any_span(condition):
                reader.warning(
                    condition.line,
                    f"{view.path}: `{condition.operator}` in a trace-scope rule matches when ANY "
                    "span of the trace satisfies it (a child span without the field is enough), "
                    "so it matches almost every trace; use Scope: span, or a root. field",
                )
    drop = view.get("drop") is True
    if drop and view.given("sampler"):
        reader.warning(
            view.line("drop"),
            f"{view.path} sets both Drop and Sampler; the Sampler decides and Drop is ignored",
        )
    elif drop and view.given("sample_rate"):
        reader.warning(
            view.line("sample_rate"),
            f"{view.path_of('sample_rate')} is ignored because Drop is true",
        )
    elif not drop and not view.given("sampler") and not view.given("sample_rate"):
        reader.warning(
            view.line_no,
            f"{view.path} sets none of SampleRate, Drop or Sampler; matching traces are kept "
            "at rate 1 (Refinery would drop them)",
        )


def _negative_on_any_span(condition: ConditionSpec) -> bool:
    if condition.operator not in NEGATIVE_OPERATORS:
        return False
    # Conditions on root. fields (and the trace-level ?.NUM_DESCENDANTS) look at one value per
    # trace, so negating them is exact.
    return not all(field.startswith((ROOT_PREFIX, "?.")) for field in condition.fields)


def check_rule_order(reader: Reader, view: MappingView) -> None:
    """Lints across a sampler's rules: rules that an earlier rule keeps from ever matching."""
    rules = view.get("rules")
    if not isinstance(rules, tuple):
        return
    for index, rule in enumerate(rules):
        if not isinstance(rule, RuleSpec):
            continue
        shadow = _shadowing_rule(rules[:index], rule)
        if shadow is None:
            continue
        earlier = shadow
        name = f" ({earlier.name})" if earlier.name else ""
        if not earlier.conditions:
            reason = "has no conditions and matches every trace"
        elif earlier.drop:
            reason = "drops every trace this rule would match (same or fewer conditions)"
        else:
            reason = "matches every trace this rule would match (same or fewer conditions)"
        reader.warning(
            rule.line,
            f"{view.path_of('rules')}[{index}] is never reached: the rule at line "
            f"{earlier.line}{name} {reason}",
        )


def _shadowing_rule(earlier_rules: tuple[object, ...], rule: RuleSpec) -> RuleSpec | None:
    """The first earlier rule whose conditions are a subset of `rule`'s, in the same scope.

    Every trace that satisfies the later rule's conditions satisfies the earlier one's, and the
    first matching rule decides, so the later rule never fires.
    """
    wanted = {_meaning(condition) for condition in rule.conditions}
    for earlier in earlier_rules:
        if not isinstance(earlier, RuleSpec):
            continue
        if earlier.conditions and earlier.scope != rule.scope:
            continue
        if {_meaning(condition) for condition in earlier.conditions} <= wanted:
            return earlier
    return None


def _meaning(condition: ConditionSpec) -> tuple[object, ...]:
    """A condition without its position, for comparing what two conditions test."""
    return (condition.fields, condition.operator, repr(condition.value), condition.datatype)
