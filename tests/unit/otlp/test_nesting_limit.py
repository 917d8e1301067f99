"""Both doors refuse the same nesting: the JSON converter stops where upb's parser does.

upb refuses a message nested more than 100 levels below the request. The protobuf
bodies here are encoded by hand (upb's own encoder stops at the same depth) and the JSON bodies
are the same requests; the converter must accept and refuse exactly what upb accepts and refuses,
with a message instead of a RecursionError.
"""

from __future__ import annotations

import pytest
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from refinery_py.otlp.errors import MalformedPayload
from refinery_py.otlp.json_codec import MAX_DEPTH, encode_request
from tests.otlp_nesting import (
    Place,
    in_event_attribute,
    in_resource_attribute,
    in_span_attribute,
    nested,
)


def _upb_accepts(body: bytes) -> bool:
    try:
        ExportTraceServiceRequest.FromString(body)
    except DecodeError:
        return False
    return True


def _json_accepts(document: object) -> bool:
    try:
        encoded = encode_request(document)
    except MalformedPayload as error:
        assert f"deeper than {MAX_DEPTH} levels" in str(error)
        return False
    assert _upb_accepts(encoded)
    return True


@pytest.mark.parametrize("kind", ["array", "map"])
@pytest.mark.parametrize("place", [in_span_attribute, in_event_attribute, in_resource_attribute])
def test_json_refuses_exactly_what_protobuf_refuses(place: Place, kind: str) -> None:
    verdicts = []
    for levels in range(20, 60):
        document, body = place(*nested(levels, kind))
        assert _json_accepts(document) == _upb_accepts(body), levels
        verdicts.append(_upb_accepts(body))
    assert True in verdicts and False in verdicts  # the limit lies inside the range tried


def test_the_limit_is_upbs_hundred_levels_below_the_request() -> None:
    # A resource attribute's AnyValue is 4 levels below the request (resource spans, resource,
    # key-value, any-value), and each map level adds three: 32 levels reach 100, 33 go past.
    assert _upb_accepts(in_resource_attribute(*nested(32, "map"))[1])
    assert not _upb_accepts(in_resource_attribute(*nested(33, "map"))[1])
    # A span attribute's is 5 levels down, and each array level adds two: 47 levels reach 99.
    assert _upb_accepts(in_span_attribute(*nested(47, "array"))[1])
    assert not _upb_accepts(in_span_attribute(*nested(48, "array"))[1])
    assert MAX_DEPTH == 100


@pytest.mark.parametrize("levels", [300, 5000])
def test_very_deep_json_is_an_error_not_a_crash(levels: int) -> None:
    document, _ = in_span_attribute(*nested(levels, "array"))
    with pytest.raises(MalformedPayload, match="deeper than 100"):
        encode_request(document)
