"""Dict-backed span and trace views, and short builders for rule specs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from refinery_py.config.go_regex import compile_go_regex
from refinery_py.config.rules_spec import ConditionSpec, RulesBasedSpec, RuleSpec
from refinery_py.decide import RulesBasedSampler, Sampler, build_sampler
from refinery_py.model import FieldValue, SpanView

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"


class FakeSpan:
    """A span whose fields are a dict; records every field name it is asked for."""

    def __init__(self, fields: Mapping[str, FieldValue] | None = None) -> None:
        self.fields = dict(fields or {})
        self.reads: list[str] = []

    def get(self, field: str) -> FieldValue | None:
        self.reads.append(field)
        return self.fields.get(field)


class FakeTrace:
    """A trace of FakeSpans; `root` is the index of the root span, or None for no root."""

    def __init__(
        self,
        spans: Sequence[FakeSpan | Mapping[str, FieldValue]] = (),
        root: int | None = 0,
        trace_id: str = TRACE_ID,
    ) -> None:
        self._spans = [s if isinstance(s, FakeSpan) else FakeSpan(s) for s in spans]
        self._root = self._spans[root] if root is not None and self._spans else None
        self._trace_id = trace_id

    @property
    def trace_id(self) -> str:
        return self._trace_id

    @property
    def spans(self) -> Sequence[SpanView]:
        return self._spans

    @property
    def span_count(self) -> int:
        return len(self._spans)

    @property
    def root(self) -> SpanView | None:
        return self._root

    def spans_with(self, field: str) -> Sequence[SpanView]:
        """Exactly the spans that have `field` (not counted as reads)."""
        return [span for span in self._spans if span.fields.get(field) is not None]

    def reads(self) -> set[str]:
        return {name for span in self._spans for name in span.reads}


def cond(
    field: str | Sequence[str] | None,
    operator: str,
    value: object = None,
    datatype: str | None = None,
) -> ConditionSpec:
    """A condition; `field` may be one name (Field) or a list (Fields)."""
    if field is None:
        fields: tuple[str, ...] = ()
    elif isinstance(field, str):
        fields = (field,)
    else:
        fields = tuple(field)
    if isinstance(value, list):
        value = tuple(value)
    pattern = compile_go_regex(str(value)) if operator == "matches" else None
    return ConditionSpec(
        fields=fields, operator=operator, value=value, datatype=datatype, pattern=pattern
    )


def rule(name: str = "rule", *conditions: ConditionSpec, **options: object) -> RuleSpec:
    return RuleSpec(name=name, conditions=conditions, **options)  # type: ignore[arg-type]


def rules_sampler(*rules: RuleSpec, nested: bool = False) -> Sampler:
    spec = RulesBasedSpec(rules=rules, check_nested_fields=nested)
    sampler = build_sampler(spec)
    assert isinstance(sampler, RulesBasedSampler)
    return sampler
