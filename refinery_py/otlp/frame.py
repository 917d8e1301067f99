"""Build outgoing OTLP requests from buffered span bytes, by wire framing.

A kept span leaves as its original bytes plus a few appended attribute fields (protobuf merges
repeated fields in any order, so appending is a valid edit), with its rate also written into its
W3C trace_state as OpenTelemetry's sampling threshold (`tracestate`). Spans are regrouped under
their original resource and scope. Which spans need more than an append is known from one walk of
their top-level fields (`span_fields.span_mark`): only a span that already has a trace_state gets
a message built, its head (`lite.SpanHead`: trace_state rewritten, the rest of the span carried
as unknown bytes), and a span that already carries an attribute we must replace is edited by its
byte offsets.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any, Final

from google.protobuf.message import DecodeError

from refinery_py.model import Decision, Origin
from refinery_py.otlp import tracestate
from refinery_py.otlp.lite import SpanHead
from refinery_py.otlp.span_fields import MARK_TRACE_STATE, FieldPlan, span_mark
from refinery_py.otlp.span_search import locate_span_attribute
from refinery_py.otlp.tracestate import MAX_ADJUSTED_COUNT
from refinery_py.otlp.wire import LEN, encode_varint, iter_fields

_RESOURCE_SPANS_TAG = b"\x0a"  # ExportTraceServiceRequest field 1
_CHILD_TAG = b"\x12"  # ResourceSpans.scope_spans and ScopeSpans.spans are both field 2
_ATTRIBUTE_TAG = b"\x4a"  # Span field 9
_TRACE_STATE_TAG = b"\x1a"  # Span field 3

INCOMING_RATE_KEYS = ("SampleRate", "sampleRate")
"""Span attributes that carry a rate applied before the span reached us."""
_INT64_MAX = (1 << 63) - 1
"""Rates are written as int64 attributes: a larger product stops here."""

_OUTPUT_KEYS = (
    "meta.refinery.reason",
    "meta.refinery.send_reason",
    "meta.refinery.original_sample_rate",
    "meta.refinery.dryrun.kept",
    "meta.refinery.dryrun.sample_rate",
    "meta.span_count",
)


def _noted_keys() -> tuple[FieldPlan, bytes, int, int]:
    """The keys annotating a span must notice (see `annotate_span`), as a plan for `span_mark`,
    with its screen of keys to check and the mark bits of the incoming rate's and the output's
    keys."""
    plan = FieldPlan(walks=True)
    rate_bits = output_bits = 0
    for key in INCOMING_RATE_KEYS:
        rate_bits |= 1 << (plan.slot(key) + 1)
    for key in _OUTPUT_KEYS:
        output_bits |= 1 << (plan.slot(key) + 1)
    _, screen = plan.marking(-1)
    return plan, screen, rate_bits, output_bits


# Final: compiled code reads them as native module attributes, not from the module's dict.
_NOTED_KEYS: Final = _noted_keys()
_NOTED: Final = _NOTED_KEYS[0]
_NOTED_SCREEN: Final = _NOTED_KEYS[1]
_RATE_BITS: Final = _NOTED_KEYS[2]
_OUTPUT_BITS: Final = _NOTED_KEYS[3]


def string_attribute(key: str, value: str) -> bytes:
    """An encoded span attribute field (Span.attributes) holding a string."""
    encoded_key = key.encode()
    encoded_value = value.encode()
    any_value = b"\x0a" + encode_varint(len(encoded_value)) + encoded_value
    return _attribute(encoded_key, any_value)


def int_attribute(key: str, value: int) -> bytes:
    """An encoded span attribute field (Span.attributes) holding an int64."""
    return _attribute(key.encode(), b"\x18" + encode_varint(value))


def bool_attribute(key: str, value: bool) -> bytes:
    """An encoded span attribute field (Span.attributes) holding a bool."""
    return _attribute(key.encode(), b"\x10\x01" if value else b"\x10\x00")


def _attribute(encoded_key: bytes, any_value: bytes) -> bytes:
    key_value = (
        b"\x0a"
        + encode_varint(len(encoded_key))
        + encoded_key
        + b"\x12"
        + encode_varint(len(any_value))
        + any_value
    )
    return _ATTRIBUTE_TAG + encode_varint(len(key_value)) + key_value


def take_incoming_rate(raw: bytes) -> tuple[bytes, int | None]:
    """Remove `SampleRate`/`sampleRate` attributes from a span; return (span, rate or None).

    A rate of 0 or less, or one that is not a (finite) number, counts as 1 (OTLP senders use 0
    for "unset"); one above 2^56, OpenTelemetry's largest adjusted count, as 2^56. The attribute
    is removed because the span leaves with its own `SampleRate`.
    """
    rate: int | None = None
    for key in INCOMING_RATE_KEYS:
        found = locate_span_attribute(raw, key)
        while found is not None:
            if rate is None:
                rate = _as_rate(found.value())
            raw = raw[: found.field_start] + raw[found.field_end :]
            found = locate_span_attribute(raw, key)
    return raw, rate


def _as_rate(value: object) -> int:
    if isinstance(value, bool):
        return 1
    if isinstance(value, int | float):
        number = value
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return 1
    else:
        return 1
    if not math.isfinite(number):  # a rate of ±infinity or NaN says nothing: like no number
        return 1
    return min(max(int(number), 1), MAX_ADJUSTED_COUNT)


def _strip_output_attributes(raw: bytes) -> bytes:
    """Drop annotations from an earlier sampler so ours are the only ones."""
    for key in _OUTPUT_KEYS:
        found = locate_span_attribute(raw, key)
        while found is not None:
            raw = raw[: found.field_start] + raw[found.field_end :]
            found = locate_span_attribute(raw, key)
    return raw


class TraceAnnotation:
    """The attributes every span of one exported trace leaves with, encoded once per trace.

    In dry-run mode every trace is exported: `SampleRate` stays the span's incoming rate, and
    `meta.refinery.dryrun.kept` / `meta.refinery.dryrun.sample_rate` say what the rules decided.
    """

    __slots__ = (
        "_dry_run",
        "_kept",
        "_shared",
        "_suffixes",
        "_trace_states",
        "rate",
        "root_extra",
    )

    def __init__(
        self,
        decision: Decision,
        send_reason: str,
        span_count: int | None,
        *,
        dry_run: bool = False,
    ) -> None:
        self.rate = decision.rate
        self._dry_run = dry_run
        self._kept = decision.keep
        self._shared = string_attribute("meta.refinery.reason", decision.reason) + string_attribute(
            "meta.refinery.send_reason", send_reason
        )
        self.root_extra = int_attribute("meta.span_count", span_count) if span_count else b""
        self._suffixes: dict[tuple[int | None, bool], bytes] = {}
        self._trace_states: dict[tuple[bytes, int | None], bytes] = {}

    def outgoing_rate(self, incoming_rate: int | None) -> int:
        """The `SampleRate` a span that arrived with `incoming_rate` leaves with."""
        incoming = incoming_rate or 1
        return incoming if self._dry_run else min(self.rate * incoming, _INT64_MAX)

    def trace_state(self, incoming_state: bytes, incoming_rate: int | None) -> bytes:
        """The trace_state a span leaves with: its own, with `ot=th` saying its outgoing rate."""
        key = (incoming_state, incoming_rate)
        state = self._trace_states.get(key)
        if state is None:
            threshold = tracestate.threshold_for_rate(self.outgoing_rate(incoming_rate))
            text = incoming_state.decode("utf-8", "replace")
            state = tracestate.with_threshold(text, threshold).encode()
            if len(self._trace_states) < 64:
                self._trace_states[key] = state
        return state

    def suffix(self, incoming_rate: int | None, *, trace_state: bool) -> bytes:
        """Encoded attributes for a span that arrived with `incoming_rate` (None: no rate),
        and with `trace_state` a trace_state field for a span that had none."""
        key = (incoming_rate, trace_state)
        suffix = self._suffixes.get(key)
        if suffix is None:
            incoming = incoming_rate or 1
            parts = [int_attribute("SampleRate", self.outgoing_rate(incoming_rate))]
            if incoming_rate is not None:
                parts.append(int_attribute("meta.refinery.original_sample_rate", incoming_rate))
            if self._dry_run:
                parts.append(bool_attribute("meta.refinery.dryrun.kept", self._kept))
                parts.append(
                    int_attribute(
                        "meta.refinery.dryrun.sample_rate", min(self.rate * incoming, _INT64_MAX)
                    )
                )
            parts.append(self._shared)
            if trace_state:
                state = self.trace_state(b"", incoming_rate)
                parts.append(_TRACE_STATE_TAG + encode_varint(len(state)) + state)
            suffix = self._suffixes[key] = b"".join(parts)
        return suffix


def annotate_span(raw: bytes, annotation: TraceAnnotation, is_root: bool) -> bytes:
    """A kept span's bytes with the output attributes appended and its trace_state updated.

    An incoming `SampleRate` attribute is the span's incoming rate; without one, an `ot=th` in
    its trace_state is.
    """
    incoming_rate = None
    # One walk of the span's attribute keys first (cheaper than one substring search of its
    # bytes): almost no span carries a rate or an earlier annotation.
    noted = span_mark(raw, _NOTED, _NOTED_SCREEN)
    if noted & _RATE_BITS:
        raw, incoming_rate = take_incoming_rate(raw)
    if noted & _OUTPUT_BITS:
        raw = _strip_output_attributes(raw)
    if not noted & MARK_TRACE_STATE:
        # The common case: no trace_state yet, so the new one is simply appended.
        suffix = annotation.suffix(incoming_rate, trace_state=True)
    else:
        # Replacing every occurrence, wherever it is, takes a parse; upb's of a span's head is
        # the cheapest there is (the other fields stay undecoded bytes).
        try:
            head = SpanHead.FromString(raw)
        except DecodeError:
            head = None  # not a span upb reads; it leaves with its trace_state as it came
        if head is not None:
            raw, incoming_rate = _replace_trace_state(head, annotation, incoming_rate)
        suffix = annotation.suffix(incoming_rate, trace_state=False)
    if is_root:
        return raw + suffix + annotation.root_extra
    return raw + suffix


def _replace_trace_state(
    head: Any, annotation: TraceAnnotation, incoming_rate: int | None
) -> tuple[bytes, int | None]:
    """The span of `head` with its trace_state (every occurrence) replaced, and the incoming
    rate, read from an incoming `th` when there was none already."""
    incoming_state: bytes = head.trace_state
    if incoming_rate is None and b"th:" in incoming_state:
        incoming_rate = tracestate.incoming_rate(incoming_state.decode("utf-8", "replace"))
    head.trace_state = annotation.trace_state(incoming_state, incoming_rate)
    edited: bytes = head.SerializeToString()
    return edited, incoming_rate


def frame_spans(spans: Sequence[bytes], origins: Sequence[Origin]) -> bytes:
    """Serialize spans (already annotated) as an ExportTraceServiceRequest, grouped by origin."""
    by_resource: dict[bytes, dict[bytes, list[bytes]]] = {}
    for span, origin in zip(spans, origins, strict=True):
        scopes = by_resource.get(origin.resource_fields)
        if scopes is None:
            scopes = by_resource[origin.resource_fields] = {}
        bucket = scopes.get(origin.scope_fields)
        if bucket is None:
            bucket = scopes[origin.scope_fields] = []
        bucket.append(_CHILD_TAG + encode_varint(len(span)))
        bucket.append(span)
    parts: list[bytes] = []
    for resource_fields, scopes in by_resource.items():
        resource_body = [resource_fields]
        for scope_fields, framed_spans in scopes.items():
            scope_body = scope_fields + b"".join(framed_spans)
            resource_body.append(_CHILD_TAG + encode_varint(len(scope_body)))
            resource_body.append(scope_body)
        body = b"".join(resource_body)
        parts.append(_RESOURCE_SPANS_TAG + encode_varint(len(body)))
        parts.append(body)
    return b"".join(parts)


def encode_kept_trace(
    spans: Sequence[bytes],
    origins: Sequence[Origin],
    root_index: int,
    decision: Decision,
    send_reason: str,
    *,
    dry_run: bool = False,
) -> bytes:
    """A kept trace's spans, annotated, as a serialized ExportTraceServiceRequest.

    The root span (if `root_index` ≥ 0) also gets `meta.span_count`. With `dry_run`, the trace
    is exported whatever the decision, marked with it (see TraceAnnotation).
    """
    annotation = TraceAnnotation(
        decision, send_reason, len(spans) if root_index >= 0 else None, dry_run=dry_run
    )
    annotated = [
        annotate_span(span, annotation, index == root_index) for index, span in enumerate(spans)
    ]
    return frame_spans(annotated, origins)


def split_payload(payload: bytes, max_bytes: int) -> Iterator[bytes]:
    """Re-frame an ExportTraceServiceRequest into requests of at most about `max_bytes` each.

    Used when one trace (or batch) is larger than the backend accepts; a single span larger than
    `max_bytes` still travels alone.
    """
    if len(payload) <= max_bytes:
        yield payload
        return
    chunk_spans: list[bytes] = []
    chunk_origins: list[Origin] = []
    size = 0
    for resource_fields, scope_fields, span in _walk_spans(payload):
        if chunk_spans and size + len(span) + 64 > max_bytes:
            yield frame_spans(chunk_spans, chunk_origins)
            chunk_spans, chunk_origins, size = [], [], 0
        chunk_spans.append(span)
        chunk_origins.append(Origin(resource_fields, scope_fields))
        size += len(span) + len(resource_fields) + len(scope_fields) + 16
    if chunk_spans:
        yield frame_spans(chunk_spans, chunk_origins)


def _walk_spans(payload: bytes) -> Iterator[tuple[bytes, bytes, bytes]]:
    for field, wire_type, _, rs_start, rs_end in iter_fields(payload, 0, len(payload)):
        if field != 1 or wire_type != LEN:
            continue
        resource_header: list[bytes] = []
        scopes: list[tuple[int, int]] = []
        for f, wt, field_start, start, end in iter_fields(payload, rs_start, rs_end):
            if f == 2 and wt == LEN:
                scopes.append((start, end))
            else:
                resource_header.append(payload[field_start:end])
        resource_fields = b"".join(resource_header)
        for scope_start, scope_end in scopes:
            scope_header: list[bytes] = []
            spans: list[bytes] = []
            for f, wt, field_start, start, end in iter_fields(payload, scope_start, scope_end):
                if f == 2 and wt == LEN:
                    spans.append(payload[start:end])
                else:
                    scope_header.append(payload[field_start:end])
            scope_fields = b"".join(scope_header)
            for span in spans:
                yield resource_fields, scope_fields, span
