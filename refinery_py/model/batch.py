"""Spans on their way in: raw wire bytes grouped by trace, never one object per field."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True, eq=False)
class Origin:
    """Where a span came from: its resource and instrumentation scope, as encoded fields.

    `resource_fields` is every field of the span's `ResourceSpans` except `scope_spans` (the
    resource and its schema URL, still encoded with their tags); `scope_fields` likewise every field
    of its `ScopeSpans` except `spans`. Re-framing a span into an outgoing request only needs these
    two byte strings, so they are shared by all spans of one resource and scope. `parsed` is a
    cache slot that the codec fills with the decoded resource and scope attributes on first use.
    """

    resource_fields: bytes
    scope_fields: bytes
    parsed: object = field(default=None, compare=False)


@dataclass(slots=True)
class SpanBatch:
    """The accepted spans of one request, as parallel lists (index i describes span i).

    `rejected` counts spans refused inside an otherwise valid request (invalid trace ID, say), and
    `reject_message` says why; both go back to the client as OTLP partial success.
    """

    trace_ids: list[bytes] = field(default_factory=list)
    spans: list[bytes] = field(default_factory=list)
    origins: list[Origin] = field(default_factory=list)
    root_positions: set[int] = field(default_factory=set)
    rejected: int = 0
    reject_message: str = ""

    @property
    def span_count(self) -> int:
        return len(self.spans)

    @property
    def byte_size(self) -> int:
        return sum(map(len, self.spans))
