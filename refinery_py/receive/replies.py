"""The bodies receivers answer with: OTLP export responses and `google.rpc.Status` errors.

Shared by both transports, in both encodings. Success without rejected spans is by far the common
answer, so its bodies are built once.
"""

from __future__ import annotations

import math

from google.protobuf import json_format
from google.protobuf.duration_pb2 import Duration
from google.rpc.code_pb2 import Code
from google.rpc.error_details_pb2 import RetryInfo
from google.rpc.status_pb2 import Status
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTracePartialSuccess,
    ExportTraceServiceResponse,
)

from refinery_py.receive.decode import Encoding
from refinery_py.receive.intake import Receipt, Refusal

_EMPTY_RESPONSE = {Encoding.PROTOBUF: b"", Encoding.JSON: b"{}"}

STATUS_CODES = {
    Refusal.MALFORMED: Code.INVALID_ARGUMENT,
    Refusal.TOO_LARGE: Code.RESOURCE_EXHAUSTED,
    Refusal.UNSUPPORTED_MEDIA_TYPE: Code.INVALID_ARGUMENT,
    Refusal.OVERLOADED: Code.RESOURCE_EXHAUSTED,
    Refusal.MISSING_TOKEN: Code.UNAUTHENTICATED,
    Refusal.INVALID_TOKEN: Code.UNAUTHENTICATED,
}
"""The `google.rpc.Code` that answers each kind of refusal."""


def export_response(receipt: Receipt, encoding: Encoding) -> bytes:
    """The response to a taken request: empty, or partial success if spans were refused."""
    if not receipt.rejected_spans:
        return _EMPTY_RESPONSE[encoding]
    response = ExportTraceServiceResponse(
        partial_success=ExportTracePartialSuccess(
            rejected_spans=receipt.rejected_spans, error_message=receipt.message
        )
    )
    return _encode(response, encoding)


def retry_info(receipt: Receipt) -> RetryInfo:
    """How long an overloaded client should wait before it retries."""
    delay = Duration()
    delay.FromNanoseconds(max(0, round(receipt.retry_after * 1e9)))
    return RetryInfo(retry_delay=delay)


def retry_after_seconds(receipt: Receipt) -> int:
    """The HTTP Retry-After value: whole seconds, at least 1."""
    return max(1, math.ceil(receipt.retry_after))


def error_status(receipt: Receipt) -> Status:
    """The `google.rpc.Status` for a refused request; an overloaded one carries RetryInfo."""
    assert receipt.refusal is not None
    status = Status(code=STATUS_CODES[receipt.refusal], message=receipt.message)
    if receipt.refusal is Refusal.OVERLOADED:
        status.details.add().Pack(retry_info(receipt))
    return status


def error_body(receipt: Receipt, encoding: Encoding) -> bytes:
    """`error_status(receipt)` encoded as the client's request was."""
    return _encode(error_status(receipt), encoding)


def _encode(message: Status | ExportTraceServiceResponse, encoding: Encoding) -> bytes:
    if encoding is Encoding.JSON:
        return json_format.MessageToJson(message, indent=None).encode()
    return message.SerializeToString()
