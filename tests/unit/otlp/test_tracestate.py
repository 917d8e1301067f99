"""OpenTelemetry's sampling threshold in W3C tracestate: encoding, reading, editing."""

from __future__ import annotations

import pytest

from refinery_py.otlp.tracestate import (
    MAX_ADJUSTED_COUNT,
    encode_threshold,
    incoming_rate,
    parse_threshold,
    rate_for_threshold,
    threshold_for_rate,
    with_threshold,
)


@pytest.mark.parametrize(
    ("rate", "th"),
    [
        (0, "0"),
        (1, "0"),
        (2, "8"),
        (3, "aaaaaaaaaaaaab"),
        (4, "c"),
        (8, "e"),
        (16, "f"),
        (10, "e6666666666666"),
        (1000, "ffbe76c8b43958"),
        (1 << 56, "ffffffffffffff"),
        (1 << 60, "ffffffffffffff"),
    ],
)
def test_rates_encode_as_56_bit_thresholds_without_trailing_zeros(rate: int, th: str) -> None:
    assert encode_threshold(threshold_for_rate(rate)) == th


@pytest.mark.parametrize("rate", [1, 2, 3, 7, 10, 99, 1000, 12345, 10**6, 10**8, 2**40])
def test_a_written_rate_reads_back_as_itself(rate: int) -> None:
    threshold = threshold_for_rate(rate)
    assert parse_threshold(encode_threshold(threshold)) == threshold
    assert rate_for_threshold(threshold) == rate
    # ...and the adjusted count a backend computes from it is the rate, to within rounding.
    assert MAX_ADJUSTED_COUNT / (MAX_ADJUSTED_COUNT - threshold) == pytest.approx(rate, rel=1e-9)


def test_huge_rates_are_as_close_as_56_bits_allow() -> None:
    # 2^56 / 10^9 is not a whole number of randomness values: the nearest one is 1 in
    # 1,000,000,000.56, which reads back as the nearest integer.
    threshold = threshold_for_rate(10**9)
    assert rate_for_threshold(threshold) == 10**9 + 1
    assert MAX_ADJUSTED_COUNT / (MAX_ADJUSTED_COUNT - threshold) == pytest.approx(10**9, rel=1e-9)


def test_the_specifications_examples() -> None:
    # tracestate-probability-sampling.md: 1% at five digits is fd70a4; its adjusted count.
    assert rate_for_threshold(parse_threshold("fd70a4") or 0) == 100
    assert parse_threshold("fd70a4") == 0xFD70A400000000
    assert parse_threshold("0") == 0
    assert parse_threshold("C") == parse_threshold("c") == 0xC0000000000000


@pytest.mark.parametrize("value", ["", "g", "123456789abcdef", "-1", "8 ", "0x8"])
def test_invalid_thresholds_are_none(value: str) -> None:
    assert parse_threshold(value) is None


@pytest.mark.parametrize(
    ("state", "rate"),
    [
        ("ot=th:8", 2),
        ("ot=th:0", 1),
        ("ot=rv:0123456789abcd;th:c", 4),
        ("vendor=x, ot=th:e , other=y", 8),
        ("ot=th:zz", None),
        ("ot=rv:0123456789abcd", None),
        ("vendor=th:8", None),
        ("x@ot=th:8", None),
        ("", None),
        ("ot=th:8,ot=th:c", 2),
    ],
)
def test_an_incoming_rate_is_read_from_ot_th(state: str, rate: int | None) -> None:
    assert incoming_rate(state) == rate


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        ("", "ot=th:8"),
        ("vendor=a", "ot=th:8,vendor=a"),
        ("vendor=a,ot=th:c", "ot=th:8,vendor=a"),
        ("a=1,ot=p:8;th:c;rv:0123456789abcd, b=2", "ot=th:8;p:8;rv:0123456789abcd,a=1,b=2"),
        (" , a=1,,", "ot=th:8,a=1"),
        ("ot=th:c,vendor=a,ot=th:e", "ot=th:8,vendor=a"),
    ],
)
def test_setting_the_threshold_moves_ot_first_and_keeps_the_rest(state: str, expected: str) -> None:
    assert with_threshold(state, threshold_for_rate(2)) == expected


def test_w3c_limits_hold() -> None:
    many = ",".join(f"v{i}=x" for i in range(32))
    members = with_threshold(many, 0).split(",")
    assert len(members) == 32
    assert members[0] == "ot=th:0" and members[-1] == "v30=x"
    long_ot = "ot=" + ";".join(f"k{i}:{'x' * 20}" for i in range(20))
    assert with_threshold(long_ot, 0) == "ot=th:0"
