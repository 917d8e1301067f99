"""The OTLP wire codec: pure functions over protobuf bytes, no transports.

`ingest` splits request bytes into per-span bytes keyed by trace ID, `span_view` reads named fields
from span bytes on demand, `frame` builds outgoing requests by wire framing (`tracestate` edits the
sampling threshold they carry), and `json` converts the OTLP JSON mapping to protobuf and back.
`lite` declares partial OTLP message types for upb, so a reader parses only the fields it needs.
Every reader takes a message's fields in any order, as protobuf allows and the OpenTelemetry
Collector writes them (descending field numbers).
"""
