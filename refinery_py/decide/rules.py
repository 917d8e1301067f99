"""Refinery's RulesBasedSampler: ordered rules, the first whose conditions all match decides.

A matched rule hands the trace to its downstream sampler if it has one (reason
`rules/<scope>/<Name>:<downstream reason>`, with the downstream's key and sampler name), else
drops it if it says Drop, else keeps one trace in
SampleRate (reason `rules/<scope>/<Name>`). Unlike Refinery, which draws a random number, the
SampleRate choice is a hash of the trace ID, so every node and every replay agrees. A trace no
rule matches is kept at rate 1 with reason `no rule matched`.

Everything that can be is worked out at construction: compiled conditions, the rule's reasons and
its possible decisions, the hash bound for its rate. Deciding a trace reads only the fields the
rules need, stops at the first span that settles a condition, and returns a prebuilt Decision on
the fixed-rate and drop paths.

Each rule has a label for naming its downstream sampler: its `Name`, or `<Name>#<index>` when the
name is empty or shared by another rule, so every downstream sampler has a distinct place.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from refinery_py.config.rules_spec import DownstreamSpec, RulesBasedSpec, RuleSpec
from refinery_py.decide.conditions import MISS, PER_SPAN, Condition, root_span_wanted
from refinery_py.decide.hashing import trace_hash, upper_bound
from refinery_py.decide.sampler import Sampler
from refinery_py.model import Decision, SpanView, TraceView

NO_RULE_MATCHED = Decision(keep=True, rate=1, reason="no rule matched")


class _Rule:
    """One compiled rule: whether it matches a trace, and what it then decides."""

    __slots__ = (
        "_always",
        "_bound",
        "_conditions",
        "_downstream",
        "_drop",
        "_dropped",
        "_indexed",
        "_kept",
        "_never",
        "_prefix",
        "_root_wanted",
        "_span_scope",
        "reads",
    )

    def __init__(
        self,
        spec: RuleSpec,
        check_nested_fields: bool,
        build_downstream: Callable[[DownstreamSpec, str], Sampler],
        label: str,
    ) -> None:
        scope = spec.scope or "trace"
        # Refinery matches every trace with a rule of unknown scope and says so in the reason.
        invalid_scope = scope not in ("trace", "span")
        reason = f"rules/{'invalid scope' if invalid_scope else scope}/{spec.name}"
        self._span_scope = scope == "span"
        self._root_wanted = tuple(
            root_span_wanted(c) for c in spec.conditions if c.operator == "has-root-span"
        )
        self._conditions = tuple(
            Condition(c, check_nested_fields)
            for c in spec.conditions
            if c.operator != "has-root-span"
        )
        self._indexed = tuple((1 << i, c) for i, c in enumerate(self._conditions))
        self._always = invalid_scope or not spec.conditions
        # Refinery evaluates `has-root-span` only for trace-scope rules; in a span-scope rule the
        # condition never holds, so the rule never matches (its documentation warns of this).
        self._never = self._span_scope and bool(self._root_wanted) and not self._always
        self.reads = frozenset().union(*(c.reads for c in self._conditions))

        self._downstream = (
            build_downstream(spec.sampler, label) if spec.sampler is not None else None
        )
        self._prefix = reason + ":"
        self._drop = spec.drop
        # A Drop reports rate 0: the trace is not sampled at any rate. (Refinery reports the
        # rule's SampleRate, which is 0 unless the rule sets one alongside Drop.)
        self._dropped = Decision(
            keep=False, rate=0 if spec.drop else spec.sample_rate, reason=reason
        )
        self._kept = Decision(keep=True, rate=spec.sample_rate, reason=reason)
        self._bound = upper_bound(spec.sample_rate) if spec.sample_rate > 1 else None
        if self._downstream is not None:
            self.reads |= self._downstream.fields_used()

    def matches(self, trace: TraceView, count: int, root: SpanView | None) -> bool:
        """Whether the trace (`count` spans, `root` its root) meets the rule's conditions."""
        if self._always:
            return True
        if self._never:
            return False
        if self._span_scope:
            return self._matches_one_span(trace, count, root)
        return self._matches_trace(trace, count, root)

    def _matches_trace(self, trace: TraceView, count: int, root: SpanView | None) -> bool:
        """Scope trace: each condition may be met by a different span.

        A condition on one field asks only the spans that may have it (`spans_with`): most
        fields rules test are on few spans or none, and the answer for the others is known.
        """
        has_root = root is not None
        for wanted in self._root_wanted:
            if has_root is not wanted:
                return False
        for condition in self._conditions:
            single = condition.single
            if single is not None and count:
                test = condition.test
                candidates = trace.spans_with(single)
                if condition.absent_matches:
                    if len(candidates) < count:
                        continue  # a span without the field meets it
                    candidates = trace.spans
                for span in candidates:
                    if test(span.get(single)):
                        break
                else:
                    return False
                continue
            state = condition.trace_level(root, count)
            if state == PER_SPAN:
                for span in trace.spans:
                    if condition.on_span(root, span):
                        break
                else:
                    return False
            elif state == MISS:
                return False
        return True

    def _matches_one_span(self, trace: TraceView, count: int, root: SpanView | None) -> bool:
        """Scope span: one span must meet every condition, so only the spans that may have the
        field of a condition a span without it fails need testing."""
        pending = 0  # bit i set: condition i must be tested span by span
        candidates: Sequence[SpanView] | None = None
        for bit, condition in self._indexed:
            state = condition.trace_level(root, count)
            if state == MISS:
                return False
            if state == PER_SPAN:
                pending |= bit
                single = condition.single
                if single is not None and not condition.absent_matches:
                    narrowed = trace.spans_with(single)
                    if candidates is None or len(narrowed) < len(candidates):
                        candidates = narrowed
        if not pending:
            return True
        for span in trace.spans if candidates is None else candidates:
            for bit, condition in self._indexed:
                if pending & bit and not condition.on_span(root, span):
                    break
            else:
                return True
        return False

    def decide(self, trace: TraceView, now: float) -> Decision:
        # Refinery's order: a downstream sampler wins over Drop, and Drop over SampleRate.
        if self._downstream is not None:
            inner = self._downstream.decide(trace, now)
            return Decision(
                inner.keep, inner.rate, self._prefix + inner.reason, inner.key, inner.sampler
            )
        if self._drop:
            return self._dropped
        bound = self._bound
        if bound is None or trace_hash(trace.trace_id) <= bound:
            return self._kept
        return self._dropped


class RulesBasedSampler:
    """Refinery's RulesBasedSampler over a RulesBasedSpec.

    `build_downstream(spec, label)` makes the sampler for a rule's `Sampler:` section, given the
    rule's label; it runs once per such rule, here, and may raise (a sampler that cannot be built
    fails the load, not a trace).
    """

    __slots__ = ("_fields", "_rules")

    def __init__(
        self, spec: RulesBasedSpec, build_downstream: Callable[[DownstreamSpec, str], Sampler]
    ) -> None:
        self._rules = tuple(
            _Rule(rule, spec.check_nested_fields, build_downstream, label)
            for rule, label in zip(spec.rules, rule_labels(spec), strict=True)
        )
        self._fields = frozenset().union(*(rule.reads for rule in self._rules))

    def decide(self, trace: TraceView, now: float) -> Decision:
        count = trace.span_count
        root = trace.root
        for rule in self._rules:
            if rule.matches(trace, count, root):
                return rule.decide(trace, now)
        return NO_RULE_MATCHED

    def fields_used(self) -> frozenset[str]:
        return self._fields


def rule_labels(spec: RulesBasedSpec) -> list[str]:
    """Each rule's label: its Name, or `<Name>#<index>` when the name is empty or not unique."""
    names = [rule.name for rule in spec.rules]
    return [
        name if name and names.count(name) == 1 else f"{name}#{index}"
        for index, name in enumerate(names)
    ]
