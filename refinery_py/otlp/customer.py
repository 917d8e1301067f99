"""Whose trace is this? The customer, read from the fields the config names."""

from __future__ import annotations

from collections.abc import Sequence

from refinery_py.otlp.span_view import WireTrace, origin_fields


def customer_of(trace: WireTrace, fields: Sequence[str]) -> str:
    """The first of `fields` present on the root span, else on any span, else on the resource.

    Span attributes are searched before any resource attribute, so a customer set by the
    application on one span wins over a resource-wide default. "" when none is present.
    """
    spans = trace.spans
    ordered = [trace.root_index] if trace.root_index >= 0 else []
    ordered.extend(i for i in range(len(spans)) if i != trace.root_index)
    for index in ordered:
        span = spans[index]
        for field in fields:
            value = span.span_attribute(field)
            if value is not None:
                return str(value)
    seen: set[int] = set()
    for span in spans:
        if id(span.origin) in seen:
            continue
        seen.add(id(span.origin))
        resource = origin_fields(span.origin)
        for field in fields:
            value = resource.get(field)
            if value is not None:
                return str(value)
    return ""
