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
from refinery_py.decide.conditions import MATCH, MISS, PER_SPAN, Condition, root_span_wanted
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
        "_local",
        "_never",
        "_opaque",
        "_prefix",
        "_reason",
        "_root_conditions",
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
        # For `after_late`: conditions on one span's own field, conditions on the root alone, and
        # whether any condition is neither (it reads the span count, nested fields, or root and
        # span fields together), which makes the rule's outcome on a whole trace unknowable from
        # a part of it.
        self._local = tuple((c.single, c.test) for c in self._conditions if c.single is not None)
        self._root_conditions = tuple(c for c in self._conditions if c.root_only)
        self._opaque = len(self._local) + len(self._root_conditions) < len(self._conditions)

        self._downstream = (
            build_downstream(spec.sampler, label) if spec.sampler is not None else None
        )
        self._reason = reason
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

    def made(self, decision: Decision) -> bool:
        """Whether `decision` carries this rule's reason (its own, or its downstream's)."""
        reason = decision.reason
        return reason == self._reason or reason.startswith(self._prefix)

    @property
    def fixed(self) -> bool:
        """Whether the rule decides without a downstream sampler (by Drop or a trace-ID hash), so
        its decision on any part of a trace is its decision on the whole."""
        return self._downstream is None

    def after_late(self, late: TraceView, root: SpanView | None) -> bool | None:
        """Whether the rule matches a whole trace, known only as `late` (spans that arrived after
        the trace was decided; `root` is its root if that is among them) and the fact that the
        earlier spans did not match it. None when that cannot be told.

        Every condition on a span's own field is met by the whole trace when the earlier spans
        or the late ones meet it; a condition on the root is what the root says, and the earlier
        spans had the root unless it is late.
        """
        if self._never:
            return False
        if self._always:
            return True
        if self._opaque:
            return None
        spans = late.spans
        rooted = bool(self._root_wanted or self._root_conditions)
        if rooted and root is not None:
            # The root came late: its conditions are known only now, so the earlier spans may
            # have missed the rule for want of a root alone.
            if not all(self._root_wanted):
                return False
            for condition in self._root_conditions:
                if condition.trace_level(root, len(spans)) != MATCH:
                    return False
            return True if self._late_meet_all(spans) else None
        if self._span_scope:
            if not self._late_meet_all(spans):
                return False  # no span, earlier or late, meets every condition
            return None if rooted else True
        met = [any(test(span.get(name)) for span in spans) for name, test in self._local]
        if not any(met):
            return False  # the whole trace meets the conditions the earlier spans met
        return None if rooted or not all(met) else True

    def _late_meet_all(self, spans: Sequence[SpanView]) -> bool:
        """Trace scope: every span-field condition met by some late span; span scope: all of
        them met by one late span."""
        local = self._local
        if self._span_scope:
            return any(all(test(span.get(name)) for name, test in local) for span in spans)
        return all(any(test(span.get(name)) for span in spans) for name, test in local)

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

    def redecide(self, late: TraceView, decision: Decision, now: float) -> Decision | None:
        """The decision a trace would have had, had `late` (spans that arrived after `decision`
        was made) been there in time, when the rules make that certain; else None.

        Only the rules before the one that decided can change the outcome, and only where the
        late spans settle them (see `_Rule.after_late`): an earlier rule the whole trace would
        match decides now, if it decides without a downstream sampler, whose outcome on a whole
        trace cannot be known from a part of it.
        """
        rules = self._rules
        index = next((i for i, rule in enumerate(rules) if rule.made(decision)), None)
        if index is None:
            return None  # made by other rules (reloaded since) or not by rules at all
        root = late.root
        for rule in rules[:index]:
            match = rule.after_late(late, root)
            if match is False:
                continue
            if match is None or not rule.fixed:
                return None
            return rule.decide(late, now)
        return None

    def fields_used(self) -> frozenset[str]:
        return self._fields


def rule_labels(spec: RulesBasedSpec) -> list[str]:
    """Each rule's label: its Name, or `<Name>#<index>` when the name is empty or not unique."""
    names = [rule.name for rule in spec.rules]
    return [
        name if name and names.count(name) == 1 else f"{name}#{index}"
        for index, name in enumerate(names)
    ]
