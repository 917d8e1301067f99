from __future__ import annotations

import orjson
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from refinery_py.otlp.errors import MalformedPayload
from refinery_py.otlp.ingest import OriginInterner, split_request
from refinery_py.otlp.json import json_to_protobuf, request_to_json
from tests.otlp_builders import request, span


def test_round_trip_is_exact() -> None:
    message = request(span(1, 1, attrs={"s": "x", "n": 5, "f": 0.5, "b": True}), span(1, 2, 1))
    link = message.resource_spans[0].scope_spans[0].spans[1].links.add()
    link.trace_id = (7).to_bytes(16, "big")
    link.span_id = (8).to_bytes(8, "big")
    body = message.SerializeToString()
    text = request_to_json(body)
    document = orjson.loads(text)
    first = document["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    assert first["traceId"] == (1).to_bytes(16, "big").hex()
    assert first["kind"] == 1
    assert json_to_protobuf(text) == body


def test_collector_style_json_is_accepted() -> None:
    document = {
        "resourceSpans": [
            {
                "resource": {
                    "attributes": [{"key": "service.name", "value": {"stringValue": "x"}}]
                },
                "scopeSpans": [
                    {
                        "scope": {"name": "s"},
                        "spans": [
                            {
                                "traceId": "5B8EFFF798038103D269B633813FC60C",
                                "spanId": "EEE19B7EC3C1B174",
                                "parentSpanId": "",
                                "name": "root",
                                "kind": 2,
                                "startTimeUnixNano": "1544712660000000000",
                                "endTimeUnixNano": 1544712661000000000,
                                "attributes": [{"key": "n", "value": {"intValue": "3"}}],
                                "status": {"code": 2},
                            }
                        ],
                    }
                ],
            }
        ]
    }
    body = json_to_protobuf(orjson.dumps(document))
    decoded = ExportTraceServiceRequest.FromString(body)
    only = decoded.resource_spans[0].scope_spans[0].spans[0]
    assert only.trace_id.hex() == "5b8efff798038103d269b633813fc60c"
    assert only.attributes[0].value.int_value == 3
    assert only.status.code == 2


def test_bad_hex_ids_become_rejected_spans_not_a_failed_request() -> None:
    document = {
        "resourceSpans": [
            {
                "scopeSpans": [
                    {
                        "spans": [
                            {"traceId": "zz", "spanId": "EEE19B7EC3C1B174", "name": "bad"},
                            {
                                "traceId": "5B8EFFF798038103D269B633813FC60C",
                                "spanId": "EEE19B7EC3C1B174",
                                "name": "good",
                            },
                        ]
                    }
                ]
            }
        ]
    }
    batch = split_request(json_to_protobuf(orjson.dumps(document)), OriginInterner())
    assert batch.span_count == 1
    assert batch.rejected == 1


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "must be an object"),
        (b'{"resourceSpans": 5}', "not a valid OTLP JSON"),
        (b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"name": 3}]}]}]}', "not a valid"),
        (b'{"bogus": 1}', "not a valid OTLP JSON"),
    ],
)
def test_malformed_json_says_what_is_wrong(body: bytes, message: str) -> None:
    with pytest.raises(MalformedPayload, match=message):
        json_to_protobuf(body)
