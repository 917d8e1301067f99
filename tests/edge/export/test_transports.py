"""What each transport puts on the wire: encoding, compression, URLs, TLS choice."""

from __future__ import annotations

import pytest

from refinery_py.export import OtlpExporter, parse_endpoint
from refinery_py.export.grpc_transport import GrpcTransport
from refinery_py.export.http_transport import INLINE_GZIP_LIMIT, HttpTransport
from refinery_py.telemetry import Metrics

from .backends import GrpcBackend, HttpBackend
from .builders import expected_spans, kept_trace
from .harness import exporter_for, span_outcomes


@pytest.mark.parametrize("padding", [24, 2 * INLINE_GZIP_LIMIT])
async def test_http_sends_gzipped_protobuf(
    http_backend: HttpBackend, metrics: Metrics, padding: int
) -> None:
    # The second size is compressed in a worker thread rather than on the event loop.
    trace = kept_trace(0, 3, padding=padding)
    exporter = exporter_for(http_backend, metrics)
    await exporter.start()
    exporter.offer(trace)
    await exporter.close(timeout=10)
    (received,) = http_backend.accepted
    assert received.headers["Content-Encoding"] == "gzip"
    assert received.headers["Content-Type"] == "application/x-protobuf"
    arrived = {(a.span.trace_id, a.span.span_id) for a in http_backend.arrived()}
    assert arrived == expected_spans([trace]).keys()


async def test_http_without_compression_sends_plain_protobuf(
    http_backend: HttpBackend, metrics: Metrics
) -> None:
    exporter = exporter_for(http_backend, metrics, compression="none")
    await exporter.start()
    exporter.offer(kept_trace(0, 2))
    await exporter.close(timeout=10)
    (received,) = http_backend.accepted
    assert "Content-Encoding" not in received.headers
    assert span_outcomes(metrics)["sent"] == 2


@pytest.mark.parametrize(("compression", "outcome"), [("gzip", "rejected"), ("none", "sent")])
async def test_grpc_compresses_with_gzip(metrics: Metrics, compression: str, outcome: str) -> None:
    # A server with gzip disabled refuses gzip-encoded messages: it sees what the client sent.
    backend = GrpcBackend(accept_gzip=False)
    await backend.start()
    try:
        exporter = exporter_for(backend, metrics, compression=compression)
        await exporter.start()
        exporter.offer(kept_trace(0, 2))
        await exporter.close(timeout=10)
    finally:
        await backend.stop()
    assert span_outcomes(metrics)[outcome] == 2


async def test_http_url_endpoint_with_its_own_path(metrics: Metrics) -> None:
    backend = HttpBackend(path="/otlp/custom")
    await backend.start()
    try:
        exporter = OtlpExporter(
            f"http://{backend.endpoint}/otlp/custom", protocol="http", metrics=metrics
        )
        await exporter.start()
        exporter.offer(kept_trace(0, 2))
        await exporter.close(timeout=10)
    finally:
        await backend.stop()
    assert len(backend.arrived()) == 2


async def test_grpc_accepts_an_http_url_as_a_plaintext_endpoint(
    grpc_backend: GrpcBackend, metrics: Metrics
) -> None:
    exporter = OtlpExporter(f"http://{grpc_backend.endpoint}", protocol="grpc", metrics=metrics)
    await exporter.start()
    exporter.offer(kept_trace(0, 2))
    await exporter.close(timeout=10)
    assert span_outcomes(metrics)["sent"] == 2


@pytest.mark.parametrize(
    ("endpoint", "url"),
    [
        ("collector:4318", "http://collector:4318/v1/traces"),
        ("http://collector:4318", "http://collector:4318/v1/traces"),
        ("https://api.example.com", "https://api.example.com:443/v1/traces"),
        ("https://api.example.com/", "https://api.example.com:443/v1/traces"),
        ("http://[::1]:4318/custom/traces", "http://[::1]:4318/custom/traces"),
    ],
)
def test_http_url_for_each_endpoint_form(endpoint: str, url: str) -> None:
    transport = HttpTransport(parse_endpoint(endpoint), headers={}, gzip=True, timeout=1.0)
    assert transport.url == url


@pytest.mark.parametrize(
    ("endpoint", "insecure", "tls"),
    [
        ("collector:4317", False, True),
        ("collector:4317", True, False),
        ("https://collector:4317", True, True),
        ("http://collector:4317", False, False),
    ],
)
def test_grpc_uses_tls_per_scheme_then_insecure_flag(
    endpoint: str, insecure: bool, tls: bool
) -> None:
    transport = GrpcTransport(
        parse_endpoint(endpoint), headers={}, gzip=True, timeout=1.0, insecure=insecure
    )
    assert transport.tls is tls


async def test_http_sends_a_body_over_a_mebibyte_plain(
    http_backend: HttpBackend, metrics: Metrics
) -> None:
    # aiohttp gives every bytes body over 1 MiB a ResourceWarning, which the suite makes an
    # error: the send must not raise it (batch_max_bytes is 3 MiB by default).
    trace = kept_trace(0, 4, padding=400_000)
    exporter = exporter_for(http_backend, metrics, compression="none")
    await exporter.start()
    exporter.offer(trace)
    await exporter.close(timeout=10)
    (received,) = http_backend.accepted
    assert received.request.ByteSize() > 1 << 20
    assert span_outcomes(metrics)["sent"] == 4
