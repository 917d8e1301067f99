"""Read named fields from buffered span bytes, on demand: the span and trace views samplers see.

Nothing is decoded until a sampler asks. A span is read one of two ways, chosen by its trace's
`FieldPlan`: compiled, in one walk of its fields that finds everything the samplers read
(`span_fields`); interpreted, field by field with substring searches (`span_search`), since an
interpreted walk costs ten times a search. Both give the same answers. Resource and scope
attributes are decoded once per distinct resource/scope and cached on the shared `Origin`.
"""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans

from refinery_py.model import FieldValue, Origin
from refinery_py.otlp.span_fields import (
    INTRINSIC_FIELDS,
    MARK_ERROR,
    STATUS_ERROR,
    FieldPlan,
    SpanFields,
)
from refinery_py.otlp.span_search import Attribute, SearchedSpan, locate_span_attribute
from refinery_py.otlp.values import attributes_to_fields

__all__ = [
    "INTRINSIC_FIELDS",
    "Attribute",
    "FieldPlan",
    "WireSpan",
    "WireTrace",
    "locate_span_attribute",
    "origin_fields",
]


class OriginFields:
    """Decoded resource and scope attributes of one Origin (scope wins over resource)."""

    __slots__ = ("fields",)

    def __init__(self, origin: Origin) -> None:
        resource = ResourceSpans.FromString(origin.resource_fields).resource
        scope_spans = ScopeSpans.FromString(origin.scope_fields)
        fields = attributes_to_fields(list(resource.attributes))
        scope = scope_spans.scope
        if scope.name:
            fields["library.name"] = scope.name
        if scope.version:
            fields["library.version"] = scope.version
        fields.update(attributes_to_fields(list(scope.attributes)))
        self.fields = fields


def origin_fields(origin: Origin) -> dict[str, FieldValue]:
    """Resource and scope attributes of `origin`, decoded once and cached on it."""
    parsed = origin.parsed
    if not isinstance(parsed, OriginFields):
        parsed = origin.parsed = OriginFields(origin)
    return parsed.fields


class WireSpan:
    """A SpanView over one span's wire bytes, read the way its `plan` says (see the module)."""

    __slots__ = ("_fields", "_searched", "origin", "plan", "raw")

    def __init__(self, raw: bytes, origin: Origin, plan: FieldPlan | None = None) -> None:
        self.raw = raw
        self.origin = origin
        self.plan = plan if plan is not None else FieldPlan()
        self._fields: SpanFields | None = None
        self._searched: SearchedSpan | None = None

    def _walked(self, slot: int = -1) -> SpanFields:
        """The walk's findings; walked on first use, and again if `slot` was planned since."""
        fields = self._fields
        if fields is None or fields.planned <= slot:
            fields = self._fields = SpanFields(self.raw, self.plan)
        return fields

    def _search(self) -> SearchedSpan:
        searched = self._searched
        if searched is None:
            searched = self._searched = SearchedSpan(self.raw)
        return searched

    def span_attribute(self, field: str) -> FieldValue | None:
        """The span's own attribute `field` (not the resource's or scope's), or None."""
        plan = self.plan
        if plan.walks:
            slot = plan.slot(field)
            if slot >= 0:
                return self._walked(slot).values[slot]
        return self._search().attribute(field)

    def may_have_attribute(self, field: str) -> bool:
        """False when the span itself (not its resource or scope) surely lacks attribute
        `field`; a walk knows, a search may say True for a key that is only in a value."""
        plan = self.plan
        if plan.walks:
            slot = plan.slot(field)
            if slot >= 0:
                return self._walked(slot).has(slot)
        return self._search().may_have_attribute(field)

    def is_error(self) -> bool:
        """Whether the span's status is ERROR."""
        if self.plan.walks:
            return self._walked().status_code == STATUS_ERROR
        return self._search().intrinsic("error") is True

    def get(self, field: str) -> FieldValue | None:
        if field in INTRINSIC_FIELDS:
            if self.plan.walks:
                return self._walked().intrinsic(self.raw, field)
            return self._search().intrinsic(field)
        value = self.span_attribute(field)
        if value is not None:
            return value
        return origin_fields(self.origin).get(field)


class WireTrace:
    """A TraceView over a buffered trace's span bytes.

    `plan` says how to read the spans and, for the walk, which attribute keys to look for; the
    pipeline shares one plan among all the traces it decides, so it learns them once. `marks`,
    when given, are the spans' marks (`span_fields.span_marks`), exact for the bits of `covered`:
    which spans are errors or have those keys is then known without a walk. `asked` has the mark
    bits of the questions samplers asked that marks answer (see `spans_with`).
    """

    __slots__ = (
        "_distinct_origins",
        "_made",
        "_spans",
        "asked",
        "covered",
        "marks",
        "origins",
        "plan",
        "raw_spans",
        "raw_trace_id",
        "root_index",
    )

    def __init__(
        self,
        trace_id: bytes,
        raw_spans: list[bytes],
        origins: list[Origin],
        root_index: int,
        plan: FieldPlan | None = None,
        *,
        marks: list[int] | None = None,
        covered: int = 0,
    ) -> None:
        self.raw_trace_id = trace_id
        self.raw_spans = raw_spans
        self.origins = origins
        self.root_index = root_index
        self.plan = plan if plan is not None else FieldPlan()
        usable = marks is not None and len(marks) == len(raw_spans) and self.plan.walks
        self.marks: list[int] = marks if marks is not None and usable else []
        self.covered = covered if usable else 0
        self.asked = 0
        self._spans: list[WireSpan] | None = None
        self._made: list[WireSpan | None] | None = None
        self._distinct_origins: list[Origin] | None = None

    @property
    def trace_id(self) -> str:
        return self.raw_trace_id.hex()

    @property
    def spans(self) -> Sequence[WireSpan]:
        spans = self._spans
        if spans is None:
            spans = self._spans = [self._span(index) for index in range(len(self.raw_spans))]
        return spans

    @property
    def span_count(self) -> int:
        return len(self.raw_spans)

    @property
    def root(self) -> WireSpan | None:
        return self._span(self.root_index) if self.root_index >= 0 else None

    def _span(self, index: int) -> WireSpan:
        """The view of span `index`, made when first asked for. Most traces are decided by their
        root and a few marked spans, and the others' bytes are then never touched, which
        matters: they were buffered seconds ago and are no longer in any CPU cache."""
        made = self._made
        if made is None:
            made = self._made = [None] * len(self.raw_spans)
        span = made[index]
        if span is None:
            span = made[index] = WireSpan(self.raw_spans[index], self.origins[index], self.plan)
        return span

    def spans_with(self, field: str) -> Sequence[WireSpan]:
        """The spans that may have `field` (see TraceView): for `error` exactly those, for
        another intrinsic every span, and for an attribute every span when a resource or scope
        of the trace has it (a span without the attribute reads it there), else the spans that
        may have it themselves."""
        if field in INTRINSIC_FIELDS:
            if field == "error":
                self.asked |= MARK_ERROR
                if self.covered & MARK_ERROR:
                    return self._marked(MARK_ERROR)
                return [span for span in self.spans if span.is_error()]
            return self.spans
        distinct = self._distinct_origins
        if distinct is None:
            distinct = self._distinct_origins = list(dict.fromkeys(self.origins))
        for origin in distinct:
            if field in origin_fields(origin):
                return self.spans
        slot = self.plan.slot(field) if self.plan.walks else -1
        if slot >= 0:
            bit = 1 << (slot + 1)
            self.asked |= bit
            if self.covered & bit:
                return self._marked(bit)
        return [span for span in self.spans if span.may_have_attribute(field)]

    def _marked(self, bit: int) -> list[WireSpan]:
        """The spans whose mark has `bit`."""
        marks = self.marks
        return [self._span(index) for index in range(len(marks)) if marks[index] & bit]
