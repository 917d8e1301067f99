"""The fast OTLP JSON codec agrees with protobuf's reference JSON parser, and explains errors."""

from __future__ import annotations

import base64
import math
import random

import orjson
import pytest
from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue, KeyValueList

from refinery_py.otlp.errors import MalformedPayload
from refinery_py.otlp.json_codec import encode_request, message_to_json
from tests.otlp_builders import kv, request, span


def reference_json(message: ExportTraceServiceRequest) -> dict[str, object]:
    """protobuf's own JSON (base64 IDs) with the IDs rewritten to OTLP's hex."""
    document = json_format.MessageToDict(message, use_integers_for_enums=True)
    for rs in document.get("resourceSpans", []):
        for ss in rs.get("scopeSpans", []):
            for s in ss.get("spans", []):
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in s:
                        s[key] = base64.b64decode(s[key]).hex()
                for link in s.get("links", []):
                    for key in ("traceId", "spanId"):
                        if key in link:
                            link[key] = base64.b64decode(link[key]).hex()
    return document


def rich_request(seed: int) -> ExportTraceServiceRequest:
    rng = random.Random(seed)
    spans = []
    for i in range(5):
        s = span(rng.randrange(1, 1 << 60), i + 1, None if i == 0 else 1, error=rng.random() < 0.5)
        s.flags = rng.randrange(0, 512)
        s.trace_state = "k=v"
        s.dropped_attributes_count = rng.randrange(3)
        s.attributes.extend(
            [
                kv("s", "ünïcode ✓"),
                kv("neg", -rng.randrange(1, 1 << 62)),
                kv("big", (1 << 63) - 1),
                kv("f", rng.random()),
                kv("b", False),
                KeyValue(key="bytes", value=AnyValue(bytes_value=rng.randbytes(5))),
                KeyValue(
                    key="arr",
                    value=AnyValue(
                        array_value=ArrayValue(
                            values=[AnyValue(int_value=1), AnyValue(string_value="")]
                        )
                    ),
                ),
                KeyValue(key="map", value=AnyValue(kvlist_value=KeyValueList(values=[kv("a", 1)]))),
                KeyValue(key="empty", value=AnyValue()),
                KeyValue(key="zero", value=AnyValue(int_value=0)),
                KeyValue(key="nan", value=AnyValue(double_value=math.nan)),
                KeyValue(key="inf", value=AnyValue(double_value=-math.inf)),
            ]
        )
        event = s.events.add(time_unix_nano=123, name="exception")
        event.attributes.append(kv("exception.type", "ValueError"))
        link = s.links.add(trace_id=rng.randbytes(16), span_id=rng.randbytes(8), flags=1)
        link.attributes.append(kv("l", 1))
        spans.append(s)
    message = request(*spans, resource_attrs={"pid": 42})
    message.resource_spans[0].schema_url = "https://opentelemetry.io/schemas/1.26.0"
    return message


@pytest.mark.parametrize("seed", range(5))
def test_encoding_matches_protobuf_for_rich_messages(seed: int) -> None:
    message = rich_request(seed)
    document = reference_json(message)
    decoded = ExportTraceServiceRequest.FromString(encode_request(document))
    # Compared as JSON because NaN attributes make message equality false by definition.
    assert json_format.MessageToDict(decoded) == json_format.MessageToDict(message)


@pytest.mark.parametrize("seed", range(5))
def test_decoding_matches_protobuf_for_rich_messages(seed: int) -> None:
    message = rich_request(seed)
    ours = orjson.loads(orjson.dumps(message_to_json(message)))
    assert ours == orjson.loads(orjson.dumps(reference_json(message)))


def test_snake_case_names_enum_names_and_string_numbers_are_accepted() -> None:
    document = {
        "resource_spans": [
            {
                "scope_spans": [
                    {
                        "spans": [
                            {
                                "trace_id": "0102030405060708090a0b0c0d0e0f10",
                                "span_id": "0102030405060708",
                                "kind": "SPAN_KIND_SERVER",
                                "start_time_unix_nano": "1700000000000000000",
                                "end_time_unix_nano": 1.7e18,
                                "status": {"code": "STATUS_CODE_ERROR"},
                                "attributes": [{"key": "n", "value": {"int_value": "-5"}}],
                            }
                        ]
                    }
                ]
            }
        ]
    }
    decoded = ExportTraceServiceRequest.FromString(encode_request(document))
    only = decoded.resource_spans[0].scope_spans[0].spans[0]
    assert only.kind == 2
    assert only.status.code == 2
    assert only.start_time_unix_nano == 1_700_000_000_000_000_000
    assert only.end_time_unix_nano == 1_700_000_000_000_000_000
    assert only.attributes[0].value.int_value == -5


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"resourceSpans": {}}, "resourceSpans: expected a list, found an object"),
        ({"resourceMetrics": [], "a": 1}, "no resourceSpans, only a, resourceMetrics"),
        ({"resourceSpans": [{"schemaUrl": 5}]}, "schemaUrl: expected a string, found a number"),
        (
            {"resourceSpans": [{"scopeSpans": [{"spans": [{"kind": "SIDEWAYS"}]}]}]},
            "spans[0].kind: expected an integer, found 'SIDEWAYS'",
        ),
        (
            {"resourceSpans": [{"scopeSpans": [{"spans": [{"droppedEventsCount": -1}]}]}]},
            "droppedEventsCount: -1 is out of range",
        ),
        (
            {"resourceSpans": [{"scopeSpans": [{"spans": [{"flags": True}]}]}]},
            "flags: expected an integer, found a boolean",
        ),
        (
            {
                "resourceSpans": [
                    {
                        "resource": {
                            "attributes": [
                                {"key": "x", "value": {"stringValue": "a", "intValue": "1"}}
                            ]
                        }
                    }
                ]
            },
            "intValue: stringValue is already set",
        ),
        (
            {
                "resourceSpans": [
                    {"resource": {"attributes": [{"key": "x", "value": {"bytesValue": "@@"}}]}}
                ]
            },
            "bytesValue: not valid base64",
        ),
    ],
)
def test_errors_say_where_and_what(document: dict[str, object], message: str) -> None:
    with pytest.raises(MalformedPayload, match=message.replace("[", r"\[").replace("]", r"\]")):
        encode_request(document)


def _with_unknown_fields(document: object, rng: random.Random) -> object:
    """`document` with fields no OTLP version defines added to every object, as a sender on a
    newer OTLP would send them: scalars, lists, and objects that themselves look like OTLP."""
    if isinstance(document, list):
        return [_with_unknown_fields(item, rng) for item in document]
    if not isinstance(document, dict):
        return document
    items = [(key, _with_unknown_fields(value, rng)) for key, value in document.items()]
    extras: list[object] = [
        7,
        "text",
        None,
        True,
        [1, {"stringValue": "x"}],
        {"attributes": [{"key": "k", "value": {"futureValue": {"a": [1, 2]}}}]},
    ]
    for number in range(rng.randint(1, 2)):
        items.insert(rng.randint(0, len(items)), (f"futureField{number}", rng.choice(extras)))
    return dict(items)


@pytest.mark.parametrize("seed", range(5))
def test_fields_no_otlp_version_defines_are_ignored(seed: int) -> None:
    """The OTLP spec: receivers ignore unknown fields in OTLP/JSON, so that fields OTLP adds
    later do not fail senders that know them; the rest decodes as if they were not there."""
    message = rich_request(seed)
    document = _with_unknown_fields(reference_json(message), random.Random(seed))
    assert "futureField0" in orjson.dumps(document).decode()
    assert encode_request(document) == message.SerializeToString()


def test_nulls_mean_defaults() -> None:
    document = {"resourceSpans": [{"resource": None, "schemaUrl": None}]}
    assert ExportTraceServiceRequest.FromString(encode_request(document)) == (
        ExportTraceServiceRequest(resource_spans=[{}])
    )


def _shuffled(document: object, rng: random.Random) -> object:
    """`document` with every object's keys in a random order."""
    if isinstance(document, dict):
        items = [(key, _shuffled(value, rng)) for key, value in document.items()]
        rng.shuffle(items)
        return dict(items)
    if isinstance(document, list):
        return [_shuffled(item, rng) for item in document]
    return document


@pytest.mark.parametrize("seed", range(5))
def test_any_key_order_gives_protobufs_own_bytes(seed: int) -> None:
    """Fields come out in field-number order, as upb writes them, whatever the key order."""
    message = rich_request(seed)
    document = _shuffled(reference_json(message), random.Random(seed))
    assert encode_request(document) == message.SerializeToString()


def test_a_parent_listed_after_the_attributes_is_written_in_its_place() -> None:
    span_document = {
        "attributes": [{"key": "k", "value": {"stringValue": "v"}}],
        "name": "child",
        "parentSpanId": "0000000000000001",
        "spanId": "0000000000000002",
        "traceId": "00000000000000000000000000000001",
    }
    document = {"resourceSpans": [{"scopeSpans": [{"spans": [span_document]}]}]}
    encoded = encode_request(document)
    assert encoded == ExportTraceServiceRequest.FromString(encoded).SerializeToString()


@pytest.mark.parametrize("text", ["²", "٣", "1_000", " 5", "5 ", "+-1", "0x10", ""])
@pytest.mark.parametrize("where", ["attribute", "field"])
def test_integers_in_strings_are_ascii_decimals(text: str, where: str) -> None:
    if where == "attribute":
        span_document: dict[str, object] = {
            "attributes": [{"key": "n", "value": {"intValue": text}}]
        }
    else:
        span_document = {"startTimeUnixNano": text}
    document = {"resourceSpans": [{"scopeSpans": [{"spans": [span_document]}]}]}
    with pytest.raises(MalformedPayload, match="expected an integer"):
        encode_request(document)


@pytest.mark.parametrize("text", ["١.٥", "1_0.5", " 1.5", "1.5e", "."])
def test_numbers_in_strings_are_json_numbers(text: str) -> None:
    value = {"doubleValue": text}
    document = {"resourceSpans": [{"resource": {"attributes": [{"key": "d", "value": value}]}}]}
    with pytest.raises(MalformedPayload, match="expected a number"):
        encode_request(document)


@pytest.mark.parametrize("kind", ["intValue", "doubleValue"])
def test_a_megabyte_of_digits_that_is_no_number_is_refused_in_short(kind: str) -> None:
    """`[0-9]+\\.?[0-9]*` tried every split of the digits: 1.4 s at 8,000 of them, so a
    megabyte stalled the worker for hours. The number syntax is now read in one pass."""
    text = "1" * 1_000_000 + "x"
    value = {kind: text}
    document = {"resourceSpans": [{"resource": {"attributes": [{"key": "d", "value": value}]}}]}
    with pytest.raises(MalformedPayload) as caught:
        encode_request(document)
    assert str(caught.value).endswith(f"found '{'1' * 40}'... (1,000,001 characters)")
    assert len(str(caught.value)) < 200


def test_a_field_named_twice_is_refused() -> None:
    document = {"resourceSpans": [], "resource_spans": []}
    with pytest.raises(MalformedPayload, match="resource_spans: the same field as resourceSpans"):
        encode_request(document)
