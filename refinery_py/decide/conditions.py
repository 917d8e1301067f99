"""One rule condition, compiled once: where its value comes from, and the operator that tests it.

Field resolution follows Refinery's extractValueFromSpan. A condition's fields are tried in order
and the first present one wins; a `root.` field is read from the root span and skipped when the
trace has no root; `?.NUM_DESCENDANTS` is the number of spans in the trace; with CheckNestedFields,
fields not found directly are looked for inside JSON-valued attributes (see `nested`).

Evaluation is split in two so rules can avoid per-span work. `trace_level` settles the condition
for the whole trace when its value cannot depend on the span: a span count, a `root.` field found
on the root (Refinery's "checkedOnlyRoot" early exit), or only `root.` fields and no root. Only
when it answers PER_SPAN does `on_span` need to run for each span.
"""

from __future__ import annotations

from typing import Final

from refinery_py.config.rules_spec import NUM_DESCENDANTS, ROOT_PREFIX, ConditionSpec
from refinery_py.decide.goconv import to_bool
from refinery_py.decide.nested import NestedLookup
from refinery_py.decide.operators import compile_operator
from refinery_py.model import SpanView

MISS: Final = 0
"""The condition fails on every span of the trace."""
MATCH: Final = 1
"""The condition holds on every span of the trace."""
PER_SPAN: Final = 2
"""The outcome depends on the span: ask `on_span`."""


def root_span_wanted(spec: ConditionSpec) -> bool:
    """What a `has-root-span` condition asks for: its Value read like Refinery's TryConvertToBool.

    So a missing or unreadable Value means "has no root span".
    """
    return to_bool(spec.value)


class Condition:
    """A condition other than `has-root-span`, ready to evaluate against a trace's spans."""

    __slots__ = (
        "_counts_spans",
        "_lead_root",
        "_nested",
        "_nested_on_root",
        "_rest",
        "absent_matches",
        "reads",
        "root_only",
        "single",
        "test",
    )

    def __init__(self, spec: ConditionSpec, check_nested_fields: bool = False) -> None:
        self.test = compile_operator(spec).test
        """The operator: does a value (None when absent) meet the condition?"""
        self.absent_matches = self.test(None)
        """Whether a span without the field meets the condition (`not-exists`, `!=`, ...)."""
        fields = spec.fields
        # Refinery recognizes the computed field only as a condition's single `Field`.
        self._counts_spans = fields == (NUM_DESCENDANTS,)
        cut = 0
        while cut < len(fields) and fields[cut].startswith(ROOT_PREFIX):
            cut += 1
        strip = len(ROOT_PREFIX)
        self._lead_root = tuple(name[strip:] for name in fields[:cut])
        self._rest = tuple(
            (name[strip:], True) if name.startswith(ROOT_PREFIX) else (name, False)
            for name in fields[cut:]
        )
        nested = check_nested_fields and not self._counts_spans
        # Quirk kept from Refinery: the nested lookup uses the raw names (a `root.` prefix is just
        # part of the path) and reads the span the last field pointed at, which is the root span
        # when that field is a `root.` one and the trace has a root.
        self._nested = tuple(NestedLookup(name) for name in fields) if nested else ()
        self._nested_on_root = bool(fields) and fields[-1].startswith(ROOT_PREFIX)
        plain = len(fields) == 1 and not fields[0].startswith(ROOT_PREFIX)
        self.single = fields[0] if plain and not nested and not self._counts_spans else None
        """The field name when the value is simply that one field of the span being looked at."""
        self.root_only = bool(self._lead_root) and not self._rest and not nested
        """Whether the value comes from the root span alone (so `trace_level` always settles it)."""
        reads: set[str] = set()
        if not self._counts_spans:
            reads.update(self._lead_root)
            reads.update(name for name, _ in self._rest)
            for lookup in self._nested:
                reads.update(lookup.reads)
        self.reads = frozenset(reads)
        """Every span field name evaluation may read: `root.` fields by their name on the root
        span, plus, with nested lookups, every attribute name those may try."""

    def trace_level(self, root: SpanView | None, span_count: int) -> int:
        """MATCH or MISS when the outcome is the same for every span, else PER_SPAN."""
        if span_count == 0:
            return MISS  # Refinery tests conditions span by span: no span, no match
        if self._counts_spans:
            return MATCH if self.test(span_count) else MISS
        if root is not None:
            for name in self._lead_root:
                value = root.get(name)
                if value is not None:
                    return MATCH if self.test(value) else MISS
        if not self._rest and not self._nested:
            # Only `root.` fields, none present (or no root at all): the value is missing
            # everywhere. Quirk kept from Refinery: `not-exists` therefore matches a trace without
            # a root span unless the rule also checks `has-root-span`.
            return MATCH if self.test(None) else MISS
        return PER_SPAN

    def on_span(self, root: SpanView | None, span: SpanView) -> bool:
        """Whether `span` meets the condition; only valid after `trace_level` said PER_SPAN."""
        single = self.single
        if single is not None:
            return self.test(span.get(single))
        for name, from_root in self._rest:
            if from_root:
                if root is None:
                    continue
                value = root.get(name)
            else:
                value = span.get(name)
            if value is not None:
                return self.test(value)
        if self._nested:
            source = root if self._nested_on_root and root is not None else span
            for lookup in self._nested:
                text = lookup.get(source)
                if text is not None:
                    return self.test(text)
        return self.test(None)
