"""Durations, sizes and network addresses as written in config files."""

import pytest

from refinery_py.config.addresses import (
    endpoint_uses_tls,
    parse_host_port,
)
from refinery_py.config.addresses import (
    parse_endpoint_text as parse_endpoint,
)
from refinery_py.config.units import format_duration, format_size, parse_duration, parse_size
from refinery_py.model.addresses import split_host_port


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("500ms", 0.5),
        ("2s", 2.0),
        ("1m", 60.0),
        ("1m30s", 90.0),
        ("1h30m", 5400.0),
        ("1.5h", 5400.0),
        ("250us", 0.00025),
        ("250µs", 0.00025),
        ("250μs", 0.00025),
        ("10ns", 1e-8),
        ("0", 0.0),
        ("2.5", 2.5),
        (" 15s ", 15.0),
    ],
)
def test_parse_duration_accepts_go_durations_and_plain_seconds(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "s", "5 minutes", "1x", "-1s", "-3", "inf", "nan", "1m30"])
def test_parse_duration_rejects_everything_else(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("16MiB", 16 * 1024**2),
        ("16Mi", 16 * 1024**2),
        ("16MB", 16_000_000),
        ("16M", 16_000_000),
        ("512k", 512_000),
        ("1GiB", 1024**3),
        ("1Gb", 1_000_000_000),
        ("2TiB", 2 * 1024**4),
        ("1.5KiB", 1536),
        ("4096", 4096),
        ("64 KiB", 65536),
    ],
)
def test_parse_size(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "MiB", "lots", "16 XB", "-5MiB"])
def test_parse_size_rejects_nonsense(text: str) -> None:
    with pytest.raises(ValueError, match="not a size"):
        parse_size(text)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (0.2, "200ms"),
        (2, "2s"),
        (90, "1m30s"),
        (300, "5m"),
        (86400, "24h"),
        (1.5, "1.5s"),
    ],
)
def test_format_duration_round_trips(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("size", "text"), [(16 * 1024**2, "16MiB"), (1024**3, "1GiB"), (1536, "1536"), (0, "0")]
)
def test_format_size(size: int, text: str) -> None:
    assert format_size(size) == text


@pytest.mark.parametrize(
    ("text", "host", "port"),
    [
        ("127.0.0.1:4317", "127.0.0.1", 4317),
        ("localhost:0", "localhost", 0),
        ("[::1]:8088", "::1", 8088),
        (
            "refinery-0.refinery.svc.cluster.local:4317",
            "refinery-0.refinery.svc.cluster.local",
            4317,
        ),
    ],
)
def test_split_host_port(text: str, host: str, port: int) -> None:
    assert split_host_port(text) == (host, port)
    assert parse_host_port(text) == text


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("4317", "port is missing"),
        (":4317", "no host"),
        ("::1:4317", "brackets"),
        ("[nothost]:1", "not an IPv6"),
        ("host:99999", "0 to 65535"),
        ("host:http", "0 to 65535"),
        ("bad host:1", "not a host name"),
    ],
)
def test_parse_host_port_rejects(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_host_port(text)


@pytest.mark.parametrize(
    ("text", "tls"),
    [
        ("collector:4317", None),
        ("http://collector:4318", False),
        ("https://api.honeycomb.io", True),
        ("https://api.example.com:443/otlp", True),
    ],
)
def test_parse_endpoint(text: str, tls: bool | None) -> None:
    assert parse_endpoint(text) == text
    assert endpoint_uses_tls(text) is tls


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("ftp://host:21", "http:// or https://"),
        ("https://", "no host"),
        ("http://host:port", "port"),
        ("collector:0", "real port"),
        ("collector", "port is missing"),
    ],
)
def test_parse_endpoint_rejects(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_endpoint(text)
