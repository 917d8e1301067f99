"""Helpers for the ports of Refinery v3.2.2's sample/rules_test.go: same inputs, same outcomes.

Each case keeps the Go test's name, rules, spans and expected rate and reason. Differences by
design: a SampleRate choice is a hash of the trace ID rather than a random draw (so a kept-at-rate
expectation is checked against `keep_for_rate`), and a Drop reports rate 0 even when the rule also
sets a SampleRate (Refinery reports that SampleRate). The dynamic downstream samplers of the Go
tests are not implemented yet, so those rules must fail to load instead.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from refinery_py.config.rules_spec import ConditionSpec, RuleSpec
from refinery_py.decide import keep_for_rate
from refinery_py.model import FieldValue

from .fakes import TRACE_ID, FakeTrace, rules_sampler

Span = Mapping[str, FieldValue]


@dataclass(frozen=True)
class Port:
    name: str
    rules: tuple[RuleSpec, ...]
    spans: Sequence[Span]
    rate: int
    reason: str = ""  # a substring of the reason; the first rule's name when empty
    dropped: bool = False  # the Go test asserts keep == false
    root: int | None = None
    nested: bool = False


def r(name: str, *conditions: ConditionSpec, **options: object) -> RuleSpec:
    return RuleSpec(name=name, conditions=conditions, **options)  # type: ignore[arg-type]


def go_root(spans: Sequence[Span]) -> int | None:
    """TestRules marks as root every span without trace.parent_id; the last one wins."""
    roots = [i for i, span in enumerate(spans) if "trace.parent_id" not in span]
    return roots[-1] if roots else None


def child(span_id: str, parent: str = "54321", **extra: FieldValue) -> Span:
    return {"trace.trace_id": "12345", "trace.span_id": span_id, "trace.parent_id": parent, **extra}


def check(port: Port, root: int | None) -> None:
    sampler = rules_sampler(*port.rules, nested=port.nested)
    decision = sampler.decide(FakeTrace(port.spans, root=root), now=0.0)
    assert decision.rate == port.rate
    assert (port.reason or port.rules[0].name) in decision.reason
    assert decision.key == ""
    if port.dropped:
        assert decision.keep is False
    elif decision.reason != "no rule matched":
        assert decision.keep is keep_for_rate(TRACE_ID, port.rate)
    else:
        assert decision.keep is True
