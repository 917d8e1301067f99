"""A stored trace's spans as OTLP JSON, each carrying its resource and scope."""

from __future__ import annotations

import zlib
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from refinery_py.otlp.json import message_to_json_dict


def payload_of(body: bytes) -> bytes:
    """The serialized ExportTraceServiceRequest a stored (compressed) body holds."""
    return zlib.decompress(body)


def spans_json(body: bytes) -> list[dict[str, Any]]:
    """Every span of a stored body as an OTLP JSON span object (hex IDs, integer enums), with
    two keys added: `resource` (the OTLP JSON resource, its attributes) and `scope`.

    Spans come in start-time order. CPU-bound (decompress, parse, convert): run it off the
    event loop.
    """
    request = ExportTraceServiceRequest.FromString(payload_of(body))
    document = message_to_json_dict(request)
    spans: list[dict[str, Any]] = []
    for resource_spans in document.get("resourceSpans", []):
        resource = resource_spans.get("resource", {})
        for scope_spans in resource_spans.get("scopeSpans", []):
            scope = scope_spans.get("scope", {})
            spans.extend(
                {**span, "resource": resource, "scope": scope}
                for span in scope_spans.get("spans", [])
            )
    spans.sort(key=lambda span: int(span.get("startTimeUnixNano", 0)))
    return spans
