"""The one decode funnel: a request body in either OTLP encoding becomes a `SpanBatch`.

Both transports call `decode_request`, so a span is parsed the same way whichever door it came
through. JSON is converted to protobuf once and then validated and split exactly like a protobuf
body.
"""

from __future__ import annotations

import enum

from refinery_py.model import SpanBatch
from refinery_py.otlp.ingest import OriginInterner, split_request
from refinery_py.otlp.json import json_to_protobuf
from refinery_py.otlp.resource_tag import tag_resources


class Encoding(enum.Enum):
    """How an OTLP request body is encoded; the value is its media type."""

    PROTOBUF = "application/x-protobuf"
    JSON = "application/json"


def decode_request(
    body: bytes,
    encoding: Encoding,
    origins: OriginInterner,
    resource_tag: tuple[str, str] | None = None,
) -> SpanBatch:
    """Split an `ExportTraceServiceRequest` body into a SpanBatch.

    With `resource_tag` (key, value), resources that lack the attribute `key` get it (the
    customer an ingest token names). Raises `otlp.errors.MalformedPayload`, with a message for
    the client, when the body is not a valid OTLP request in `encoding`.
    """
    if encoding is Encoding.JSON:
        # The converted bytes go through the protobuf door's checks too, so the two doors
        # refuse the same requests whatever the converter lets through.
        body = json_to_protobuf(body)
    batch = split_request(body, origins)
    if resource_tag is not None and batch.spans:
        tag_resources(batch, resource_tag[0], resource_tag[1], origins)
    return batch
