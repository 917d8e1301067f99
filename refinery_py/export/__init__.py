"""Kept traces out to OTLP backends: bounded queue, batching, retries, two transports.

`OtlpExporter` is the `TraceExporter` the composition root builds; `Transport` is the seam
between its queue/retry logic and the wire (`GrpcTransport`, `HttpTransport`).
"""

from refinery_py.export.exporter import Compression, ExportProtocol, OtlpExporter
from refinery_py.export.grpc_transport import GrpcTransport
from refinery_py.export.http_transport import HttpTransport
from refinery_py.export.outcomes import RequestOutcome, SpanOutcome
from refinery_py.export.transport import SendResult, Transport, Verdict
from refinery_py.model.addresses import Endpoint, parse_endpoint

__all__ = [
    "Compression",
    "Endpoint",
    "ExportProtocol",
    "GrpcTransport",
    "HttpTransport",
    "OtlpExporter",
    "RequestOutcome",
    "SendResult",
    "SpanOutcome",
    "Transport",
    "Verdict",
    "parse_endpoint",
]
