"""How samplers see spans: by field name, without knowing the wire format behind them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

FieldValue = str | int | float | bool
"""A span field as rules see it. Arrays and maps arrive JSON-encoded as strings, bytes as base64."""


class SpanView(Protocol):
    """One span, read by field name (intrinsics, then attributes, as the README lists them)."""

    def get(self, field: str) -> FieldValue | None:
        """The field's value, or None when the span does not have it."""
        ...


class TraceView(Protocol):
    """One assembled trace as samplers see it."""

    @property
    def trace_id(self) -> str:
        """Lower-case hex trace ID (32 characters)."""
        ...

    @property
    def spans(self) -> Sequence[SpanView]:
        """Every span of the trace, in arrival order."""
        ...

    @property
    def span_count(self) -> int:
        """How many spans the trace has: `len(spans)`, without making a view of each."""
        ...

    @property
    def root(self) -> SpanView | None:
        """The root span (no parent), or None when it has not arrived."""
        ...

    def spans_with(self, field: str) -> Sequence[SpanView]:
        """The spans that may have `field`, in order: every span whose `get(field)` is not None
        is among them (others may be too), so a sampler need not ask the rest. Returning every
        span is always correct; a view that can rule spans out cheaply saves the asking."""
        ...
