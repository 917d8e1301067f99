"""The OTLP receivers: gRPC and HTTP (protobuf and JSON) in front of one decode funnel.

`app.py` builds one `Intake` (the pipeline as `SpanSink`, a shared `OriginInterner`, the metrics)
and gives it to a `GrpcReceiver` and an `HttpReceiver`; each has `start()`, `stop(grace)` and
`port`. A body is decoded once, by `decode_request`, whichever door it came through.
"""

from refinery_py.receive.decode import Encoding, decode_request
from refinery_py.receive.grpc_receiver import GrpcReceiver
from refinery_py.receive.http_receiver import HttpReceiver
from refinery_py.receive.intake import DEFAULT_MAX_REQUEST_BYTES, Intake, Receipt, Refusal

__all__ = [
    "DEFAULT_MAX_REQUEST_BYTES",
    "Encoding",
    "GrpcReceiver",
    "HttpReceiver",
    "Intake",
    "Receipt",
    "Refusal",
    "decode_request",
]
