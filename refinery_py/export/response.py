"""Reading an OTLP export response: the partial-success part both protocols share."""

from __future__ import annotations

from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from refinery_py.export.transport import DELIVERED, SendResult, Verdict


def delivered(body: bytes) -> SendResult:
    """The result of a successful export whose response body is `body`.

    An empty body is a plain success. A body that does not parse is treated as success as well:
    the backend said it took the request, and the status is what the protocols make binding.
    """
    if not body:
        return DELIVERED
    try:
        response = ExportTraceServiceResponse.FromString(body)
    except DecodeError:
        return DELIVERED
    partial = response.partial_success
    rejected = int(partial.rejected_spans)
    message = str(partial.error_message)
    if rejected <= 0 and not message:
        return DELIVERED
    return SendResult(Verdict.DELIVERED, rejected_spans=max(rejected, 0), message=message)
