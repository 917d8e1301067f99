"""The OTLP wire codec: pure functions over protobuf bytes, no transports.

`ingest` splits request bytes into per-span bytes keyed by trace ID, `span_view` reads named fields
from span bytes on demand, `frame` builds outgoing requests by wire framing, and `json` converts the
OTLP JSON mapping to protobuf and back.
"""
