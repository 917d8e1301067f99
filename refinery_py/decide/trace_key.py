"""The dynamic samplers' key: the values a trace has for the sampler's `FieldList`, as one string.

Refinery's recipe, followed exactly where it is observable:

- the field list is sorted; `root.`-prefixed fields are read from the root span only, the others
  from every span;
- for each non-root field, the distinct values found across the spans are sorted and written as
  `value•` each, then `,` closes the field (a field no span has is left out entirely);
- each root field present on the root span is written as `value,`;
- with `UseTraceLength` the trace's span count is appended.

So `FieldList: [http.route, customer.id]` gives `acme•,/cart•,` for a trace whose spans all say
customer `acme` and route `/cart`. Values are compared as text: an int `200` and a string `"200"`
are one value, as in Refinery. Floats print the way Go's `strconv.FormatFloat(f, 'f', -1, 64)`
does, and root values the way Go's `%v` does, so keys match a Refinery node's.

Two caps keep a giant trace from exploding the key space or the decision time: at most
`MAX_KEY_VALUES` distinct non-root values make up a key (Refinery's cap; the first ones met, in
field then span order, are kept), and at most `MAX_SPANS_SCANNED` spans (plus the root) are read
per field. The second is refinery_py's: Refinery reads every span, which for a 32,000-span trace
is 32,000 attribute lookups per field for a key that is normally settled by the first few spans.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

from refinery_py.config.rules_spec import ROOT_PREFIX
from refinery_py.decide.goconv import go_fixed_string, go_string
from refinery_py.model import FieldValue, SpanView, TraceView

MAX_KEY_VALUES = 100
"""Distinct non-root values at most in one key (Refinery's `maxKeyLength`)."""

MAX_SPANS_SCANNED = 1000
"""Spans read per field at most; the root span is always read as well."""

VALUE_END = "•"
FIELD_END = ","
ONE_VALUE_END = VALUE_END + FIELD_END


def value_text(value: FieldValue) -> str:
    """A non-root value as Refinery writes it into a key."""
    if type(value) is str:
        return value
    if type(value) is float:
        return go_fixed_string(value)
    return go_string(value)


class TraceKey:
    """Builds the key of a trace for one `FieldList` / `UseTraceLength` pair."""

    __slots__ = ("_fields", "_root_fields", "_use_length", "fields")

    def __init__(self, field_list: Sequence[str], use_trace_length: bool) -> None:
        ordered = sorted(field_list)
        self._fields = tuple(f for f in ordered if not f.startswith(ROOT_PREFIX))
        self._root_fields = tuple(
            f[len(ROOT_PREFIX) :] for f in ordered if f.startswith(ROOT_PREFIX)
        )
        self._use_length = use_trace_length
        self.fields = frozenset(self._fields) | frozenset(self._root_fields)
        """Every span field name the key reads (without the `root.` prefix)."""

    def build(self, trace: TraceView) -> str:
        count = trace.span_count
        parts: list[str] = []
        if self._fields:
            spans = trace.spans
            scanned = spans
            if count > MAX_SPANS_SCANNED:
                scanned = list(spans[:MAX_SPANS_SCANNED])
                root = trace.root
                if root is not None:
                    scanned.append(root)
            room = MAX_KEY_VALUES
            for field in self._fields:
                # Only the spans that may have the field can add a value (see TraceView).
                having = trace.spans_with(field) if scanned is spans else scanned
                values = {span.get(field) for span in having}
                values.discard(None)
                if not values:
                    continue
                if len(values) == 1 and room > 1:
                    # The common case, worth its own path: one text value for the whole trace.
                    (value,) = values
                    if type(value) is str:
                        parts.append(value + ONE_VALUE_END)
                        room -= 1
                        continue
                texts = _texts(values, having, field)
                if len(texts) >= room:
                    # Only a huge or hostile trace gets here; keep the first values met, in
                    # field then span order, like Refinery, and read no further fields.
                    parts.append(_joined(_first_texts(having, field, room)))
                    break
                room -= len(texts)
                parts.append(_joined(texts))
        if self._root_fields:
            root = trace.root
            if root is not None:
                for field in self._root_fields:
                    value = root.get(field)
                    if value is not None:
                        parts.append(go_string(value) + FIELD_END)
        if self._use_length:
            parts.append(str(count))
        return "".join(parts)


def _texts(values: set[FieldValue | None], spans: Sequence[SpanView], field: str) -> set[str]:
    """`values` (the distinct values of `field` across `spans`) as distinct key texts."""
    for value in values:
        if type(value) is not str:
            break
    else:
        return cast("set[str]", values)  # every value is already text
    # Read the spans again, converting as we go: as set members True == 1 == 1.0, yet they are
    # three different texts.
    return {value_text(v) for span in spans if (v := span.get(field)) is not None}


def _first_texts(spans: Sequence[SpanView], field: str, limit: int) -> list[str]:
    """The first `limit` distinct values of `field`, in span order."""
    seen: dict[str, None] = {}
    for span in spans:
        value = span.get(field)
        if value is not None:
            seen[value_text(value)] = None
            if len(seen) >= limit:
                break
    return list(seen)


def _joined(texts: set[str] | list[str]) -> str:
    return VALUE_END.join(sorted(texts)) + ONE_VALUE_END
