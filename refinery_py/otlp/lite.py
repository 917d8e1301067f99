"""Partial message types for upb: OTLP messages with only the fields one reader needs declared.

upb parses a message in C whatever order its fields were written in, applying protobuf's rules (a
repeated singular field: the last one wins). Parsing a whole span for two of its fields would also
build its attributes, events and links; declared this way, every other field is an unknown field
that upb steps over without decoding. The field numbers and wire types are OTLP's (trace.proto), so
the real messages' bytes parse as these.

    IdsRequest  → resource_spans[] → scope_spans[] → spans[] {trace_id, span_id, parent_span_id}
    SpanHead {trace_id, span_id, trace_state, parent_span_id}

Serializing one writes its declared fields first, in field-number order, then the unknown ones
as they came: a span's head fields can be rewritten without touching (or decoding) the rest. The
file is proto2 so that a field written empty is still present (`HasField`).
"""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

_F = descriptor_pb2.FieldDescriptorProto


def _build() -> dict[str, Any]:
    file = descriptor_pb2.FileDescriptorProto(
        name="refinery_py/otlp/lite.proto", package="refinery_py.lite", syntax="proto2"
    )

    def message(name: str, *fields: tuple[str, int, str]) -> None:
        """A message of singular bytes fields, or of repeated fields of the message type named."""
        entry = file.message_type.add(name=name)
        for field_name, number, element in fields:
            if element:
                entry.field.add(
                    name=field_name,
                    number=number,
                    type=_F.TYPE_MESSAGE,
                    label=_F.LABEL_REPEATED,
                    type_name=f".refinery_py.lite.{element}",
                )
            else:
                entry.field.add(
                    name=field_name, number=number, type=_F.TYPE_BYTES, label=_F.LABEL_OPTIONAL
                )

    message("SpanIds", ("trace_id", 1, ""), ("span_id", 2, ""), ("parent_span_id", 4, ""))
    message("ScopeSpanIds", ("spans", 2, "SpanIds"))
    message("ResourceSpanIds", ("scope_spans", 2, "ScopeSpanIds"))
    message("IdsRequest", ("resource_spans", 1, "ResourceSpanIds"))
    message(
        "SpanHead",
        ("trace_id", 1, ""),
        ("span_id", 2, ""),
        ("trace_state", 3, ""),
        ("parent_span_id", 4, ""),
    )
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return {
        name: message_factory.GetMessageClass(
            pool.FindMessageTypeByName(f"refinery_py.lite.{name}")
        )
        for name in ("IdsRequest", "SpanHead")
    }


_TYPES = _build()

IdsRequest: Any = _TYPES["IdsRequest"]
"""An ExportTraceServiceRequest of which only each span's trace_id, span_id and parent_span_id are
declared."""

SpanHead: Any = _TYPES["SpanHead"]
"""A Span of which only the fields written first (1-4, trace_state as bytes) are declared. An
SDK's span serializes back in its own order; trace_state is written once, whatever the input
held; `HasField("trace_state")` says whether the span had one at all."""
