"""AnyValue bytes to the values rules compare, with protobuf's rules for repeated fields."""

from __future__ import annotations

import pytest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue

from refinery_py.otlp.values import any_value_to_field, decode_any_value


@pytest.mark.parametrize(
    "value",
    [
        AnyValue(string_value="héllo"),
        AnyValue(int_value=-3),
        AnyValue(int_value=2**62),
        AnyValue(bool_value=False),
        AnyValue(double_value=2.5),
        AnyValue(bytes_value=b"\x00\x01"),
        AnyValue(array_value=ArrayValue(values=[AnyValue(int_value=1)])),
        AnyValue(),
    ],
)
def test_one_field_decodes_as_upb_reads_it(value: AnyValue) -> None:
    raw = value.SerializeToString()
    assert decode_any_value(raw, 0, len(raw)) == any_value_to_field(value)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"\x18\x05" + b"\x0a\x02ok", "ok"),  # int, then string: the string wins
        (b"\x0a\x02ok" + b"\x18\x05", 5),
        (b"\x10\x01" + b"\x21" + bytes(8), 0.0),
        (b"\x0a\x01a" + b"\x0a\x01b", "b"),  # the same member twice: the last one
        (b"\x18\x05" + b"\x30\x01", 5),  # an unknown field does not hide the value
    ],
)
def test_several_fields_follow_protobuf_last_one_wins(raw: bytes, expected: object) -> None:
    assert AnyValue.FromString(raw).WhichOneof("value") is not None
    assert decode_any_value(raw, 0, len(raw)) == expected
