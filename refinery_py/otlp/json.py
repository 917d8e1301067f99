"""The OTLP JSON mapping: JSON request bodies to protobuf bytes, and messages back to JSON.

OTLP JSON is proto3 JSON with two differences that matter here: trace and span IDs are hex (not
base64) and enums are integers. Incoming JSON is converted to protobuf once, so every request goes
through the same decode path. The conversion itself is `json_codec`'s.
"""

from __future__ import annotations

from typing import Any

import orjson
from google.protobuf.message import Message
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from refinery_py.otlp.errors import MalformedPayload
from refinery_py.otlp.json_codec import encode_request, message_to_json


def json_to_protobuf(body: bytes) -> bytes:
    """Convert an OTLP JSON ExportTraceServiceRequest to its protobuf encoding.

    A malformed document raises MalformedPayload saying where. An ID that is not valid hex is
    not an error here: it becomes empty bytes, so the span is refused individually (partial
    success) like any other span with an invalid ID.
    """
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise MalformedPayload(f"request body is not valid JSON: {exc}") from None
    try:
        return encode_request(document)
    except MalformedPayload as exc:
        raise MalformedPayload(f"request body is not a valid OTLP JSON request: {exc}") from None


def message_to_json_dict(message: Message) -> dict[str, Any]:
    """A protobuf OTLP message as an OTLP JSON object (hex IDs, integer enums, camelCase)."""
    return message_to_json(message)


def request_to_json(body: bytes) -> bytes:
    """A serialized ExportTraceServiceRequest as one line of OTLP JSON (no trailing newline)."""
    return orjson.dumps(message_to_json(ExportTraceServiceRequest.FromString(body)))
