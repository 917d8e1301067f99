"""The OTLP JSON mapping: JSON request bodies to protobuf bytes, and spans back to JSON.

OTLP JSON is proto3 JSON with two differences that matter here: trace and span IDs are hex (not
base64) and enums are integers. Incoming JSON is converted to protobuf once, so every request goes
through the same decode path.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
from collections.abc import Iterable
from typing import Any

import orjson
from google.protobuf import json_format
from google.protobuf.message import Message
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from refinery_py.otlp.errors import MalformedPayload

_ID_KEYS = ("traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id")
_CHILD_LISTS = ("resourceSpans", "resource_spans", "scopeSpans", "scope_spans", "spans", "links")


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
    if not isinstance(document, dict):
        raise MalformedPayload("OTLP JSON body must be an object with a resourceSpans list")
    _hex_ids_to_base64(document)
    try:
        message = json_format.ParseDict(document, ExportTraceServiceRequest())
    except json_format.ParseError as exc:
        raise MalformedPayload(f"request body is not a valid OTLP JSON request: {exc}") from None
    return message.SerializeToString()


def _hex_ids_to_base64(node: dict[str, Any]) -> None:
    """Rewrite hex IDs in place as the base64 protobuf's JSON parser expects, recursively."""
    for key in _ID_KEYS:
        value = node.get(key)
        if isinstance(value, str):
            node[key] = _hex_to_base64(value)
    for key in _CHILD_LISTS:
        children = node.get(key)
        if isinstance(children, list):
            for child in children:
                if isinstance(child, dict):
                    _hex_ids_to_base64(child)


def _hex_to_base64(value: str) -> str:
    try:
        return base64.b64encode(bytes.fromhex(value)).decode()
    except ValueError:
        return ""


def message_to_json_dict(message: Message) -> dict[str, Any]:
    """A protobuf OTLP message as an OTLP JSON object (hex IDs, integer enums, camelCase)."""
    document = json_format.MessageToDict(message, use_integers_for_enums=True)
    _base64_ids_to_hex(document)
    return document


def _base64_ids_to_hex(node: dict[str, Any]) -> None:
    for key in _ID_KEYS:
        value = node.get(key)
        if isinstance(value, str):
            with contextlib.suppress(binascii.Error):
                node[key] = base64.b64decode(value, validate=True).hex()
    for key in _CHILD_LISTS:
        children = node.get(key)
        if isinstance(children, list):
            for child in children:
                if isinstance(child, dict):
                    _base64_ids_to_hex(child)


def request_to_json(body: bytes) -> bytes:
    """A serialized ExportTraceServiceRequest as one line of OTLP JSON (no trailing newline)."""
    request = ExportTraceServiceRequest.FromString(body)
    return orjson.dumps(message_to_json_dict(request))


def requests_from_json_lines(lines: Iterable[bytes]) -> Iterable[bytes]:
    """Protobuf requests from OTLP JSON lines (the Collector file exporter's format)."""
    for line in lines:
        if line.strip():
            yield json_to_protobuf(line)
