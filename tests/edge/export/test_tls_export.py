"""The export to backends that require TLS with client certificates (mutual TLS), over gRPC
and HTTP: the backend is checked against `ca_file`, the exporter presents `cert_file`, a
missing or untrusted client certificate never delivers, and a client certificate renewed on
disk is what the next attempt presents (a new gRPC channel, a new HTTP connection)."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import grpc.aio
import pytest
from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from refinery_py.export import OtlpExporter
from refinery_py.security.tls import ClientCertificate
from refinery_py.telemetry import Metrics
from tests.tls_support import Authority, Pair

from .builders import kept_trace
from .harness import SHORT, span_outcomes

SERVICE = "opentelemetry.proto.collector.trace.v1.TraceService"


class MutualTlsBackend:
    """An OTLP backend that requires a client certificate from `clients`; it records the
    common name of each client whose request it took, and the spans."""

    def __init__(self, protocol: str, served: Pair, clients: Authority) -> None:
        self.protocol = protocol
        self.served = served
        self.clients = clients
        self.callers: list[str] = []
        self.spans = 0
        self.port = 0
        self._grpc: grpc.aio.Server | None = None
        self._runner: web.AppRunner | None = None

    @property
    def endpoint(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def _took(self, body: bytes, caller: str) -> None:
        request = ExportTraceServiceRequest.FromString(body)
        self.spans += sum(len(s.spans) for r in request.resource_spans for s in r.scope_spans)
        self.callers.append(caller)

    async def start(self) -> None:
        if self.protocol == "grpc":
            await self._start_grpc()
        else:
            await self._start_http()

    async def _start_grpc(self) -> None:
        async def export(body: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
            names = context.auth_context().get("x509_common_name", [b"?"])
            self._took(body, names[0].decode())
            return b""

        server = grpc.aio.server()
        server.add_generic_rpc_handlers(
            (
                grpc.method_handlers_generic_handler(
                    SERVICE, {"Export": grpc.unary_unary_rpc_method_handler(export)}
                ),
            )
        )
        credentials = grpc.ssl_server_credentials(
            [(self.served.key.read_bytes(), self.served.cert.read_bytes())],
            root_certificates=self.clients.cert.read_bytes(),
            require_client_auth=True,
        )
        self.port = server.add_secure_port("127.0.0.1:0", credentials)
        await server.start()
        self._grpc = server

    async def _start_http(self) -> None:
        async def export(request: web.Request) -> web.Response:
            peer = request.transport.get_extra_info("peercert") if request.transport else None
            subject = dict(item for rdn in (peer or {}).get("subject", ()) for item in rdn)
            self._took(await request.read(), str(subject.get("commonName", "?")))
            return web.Response(body=b"", content_type="application/x-protobuf")

        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(self.clients.cert))
        context.load_cert_chain(self.served.cert, self.served.key)
        context.verify_mode = ssl.CERT_REQUIRED
        app = web.Application()
        app.router.add_post("/v1/traces", export)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=context)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        if self._grpc is not None:
            await self._grpc.stop(None)
        if self._runner is not None:
            await self._runner.cleanup()


@pytest.fixture
def backend_ca(tmp_path: Path) -> Authority:
    return Authority(tmp_path, "backend-ca")


@pytest.fixture
def client_ca(tmp_path: Path) -> Authority:
    return Authority(tmp_path, "client-ca")


@pytest.fixture(params=["grpc", "http"])
async def backend(
    request: pytest.FixtureRequest, backend_ca: Authority, client_ca: Authority
) -> AsyncIterator[MutualTlsBackend]:
    served = backend_ca.issue("backend")
    started = MutualTlsBackend(request.param, served, client_ca)
    await started.start()
    try:
        yield started
    finally:
        await started.stop()


def exporter(
    backend: MutualTlsBackend, metrics: Metrics, tls: ClientCertificate | None, **options: float
) -> OtlpExporter:
    return OtlpExporter(
        backend.endpoint,
        metrics=metrics,
        protocol="grpc" if backend.protocol == "grpc" else "http",
        tls=tls,
        **{**SHORT, **options},
    )


async def test_mutual_tls_to_the_backend(
    backend: MutualTlsBackend, backend_ca: Authority, client_ca: Authority, metrics: Metrics
) -> None:
    mine = client_ca.issue("refinery")
    sender = exporter(
        backend, metrics, ClientCertificate(backend_ca.cert, mine.cert, mine.key, name="export")
    )
    await sender.start()
    sender.offer(kept_trace(0, 3))
    await sender.close(timeout=10)
    assert backend.spans == 3
    assert set(backend.callers) == {"refinery"}
    assert span_outcomes(metrics)["sent"] == 3


@pytest.mark.parametrize("presented", ["nothing", "another CA's certificate"])
async def test_no_delivery_without_a_client_certificate_the_backend_trusts(
    backend: MutualTlsBackend,
    backend_ca: Authority,
    tmp_path: Path,
    metrics: Metrics,
    presented: str,
) -> None:
    if presented == "nothing":
        tls = ClientCertificate(backend_ca.cert, name="export")
    else:
        other = Authority(tmp_path, "other").issue("intruder")
        tls = ClientCertificate(backend_ca.cert, other.cert, other.key, name="export")
    sender = exporter(backend, metrics, tls, retry_max_elapsed=0.3)
    await sender.start()
    sender.offer(kept_trace(0, 3))
    await sender.close(timeout=10)
    assert backend.spans == 0
    assert span_outcomes(metrics)["dropped_retries_exhausted"] == 3


async def test_the_backend_is_checked_against_ca_file(
    backend: MutualTlsBackend, client_ca: Authority, tmp_path: Path, metrics: Metrics
) -> None:
    mine = client_ca.issue("refinery")
    elsewhere = Authority(tmp_path, "elsewhere")
    tls = ClientCertificate(elsewhere.cert, mine.cert, mine.key, name="export")
    sender = exporter(backend, metrics, tls, retry_max_elapsed=0.3)
    await sender.start()
    sender.offer(kept_trace(0, 2))
    await sender.close(timeout=10)
    assert backend.spans == 0
    assert span_outcomes(metrics)["dropped_retries_exhausted"] == 2


async def test_a_client_certificate_renewed_on_disk_is_presented_next(
    backend: MutualTlsBackend,
    backend_ca: Authority,
    client_ca: Authority,
    tmp_path: Path,
    metrics: Metrics,
) -> None:
    # The exporter starts with a certificate the backend does not trust (issued before the
    # backend's client CA changed, say); the renewal written to the same files fixes it
    # without a restart, for the trace already being retried.
    old = Authority(tmp_path, "old-client-ca").issue("refinery-old")
    tls = ClientCertificate(backend_ca.cert, old.cert, old.key, name="export")
    sender = exporter(backend, metrics, tls, retry_initial_interval=0.05, retry_max_interval=0.05)
    await sender.start()
    sender.offer(kept_trace(0, 3))
    retries = metrics.export_retries.labels("otlp")
    async with asyncio.timeout(10):
        while retries._value.get() < 2:
            await asyncio.sleep(0.01)
    assert backend.spans == 0

    client_ca.issue("refinery-renewed").rotate_into(old)
    assert tls.refresh() is True
    await sender.close(timeout=10)
    assert backend.spans == 3
    assert backend.callers == ["refinery-renewed"]
    assert span_outcomes(metrics)["sent"] == 3
