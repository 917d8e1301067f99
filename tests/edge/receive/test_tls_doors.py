"""TLS on the OTLP doors, with real certificates: the OpenTelemetry SDK's exporters get through
with the right CA (and client certificate, for mutual TLS); clients without them do not; and a
certificate or client CA changed on disk is what the next handshake gets, while files that fail
to load leave the working certificate in place."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import grpc
import grpc.aio
import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
    OTLPSpanExporter as GrpcSpanExporter,
)
from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
    OTLPSpanExporter as HttpSpanExporter,
)
from opentelemetry.sdk.trace.export import SpanExportResult

from refinery_py.receive import GrpcReceiver, HttpReceiver, Intake
from refinery_py.security.tls import ServerCertificate
from tests.tls_support import Authority, Pair, served_certificate_name

from .support import EXPORT_METHOD, FakeSink, good_request, sdk_spans


@dataclass
class Doors:
    """A gRPC and an HTTP door sharing one reloadable certificate."""

    certificate: ServerCertificate
    grpc_port: int
    http_port: int


@pytest.fixture(autouse=True)
def _no_bundle_override(monkeypatch: pytest.MonkeyPatch) -> None:
    # requests lets these variables override the SDK HTTP exporter's certificate_file.
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)


@pytest.fixture
def authority(tmp_path: Path) -> Authority:
    return Authority(tmp_path)


@pytest.fixture
def served(authority: Authority) -> Pair:
    return authority.issue("served")


async def open_doors(
    intake: Intake, certificate: ServerCertificate, *, client_cert: bool
) -> AsyncIterator[Doors]:
    grpc_door = GrpcReceiver(
        intake, "127.0.0.1", 0, credentials=certificate.grpc_credentials(client_cert=client_cert)
    )
    http_door = HttpReceiver(
        intake, "127.0.0.1", 0, ssl_context=certificate.server_context(client_cert=client_cert)
    )
    await grpc_door.start()
    await http_door.start()
    try:
        yield Doors(certificate, grpc_door.port, http_door.port)
    finally:
        await grpc_door.stop(1.0)
        await http_door.stop(1.0)


@pytest.fixture
async def doors(intake: Intake, served: Pair) -> AsyncIterator[Doors]:
    async for opened in open_doors(
        intake, ServerCertificate(served.cert, served.key), client_cert=False
    ):
        yield opened


@pytest.fixture
def client_ca(tmp_path: Path) -> Authority:
    return Authority(tmp_path, "clients")


@pytest.fixture
async def mutual_doors(intake: Intake, served: Pair, client_ca: Authority) -> AsyncIterator[Doors]:
    certificate = ServerCertificate(served.cert, served.key, client_ca.cert)
    async for opened in open_doors(intake, certificate, client_cert=True):
        yield opened


async def name_served(context: ssl.SSLContext, port: int) -> str:
    """The common name of the certificate the door presents to a new connection now."""
    return await asyncio.to_thread(served_certificate_name, context, port)


async def grpc_sdk_export(port: int, credentials: grpc.ChannelCredentials) -> SpanExportResult:
    exporter = GrpcSpanExporter(
        endpoint=f"127.0.0.1:{port}", insecure=False, credentials=credentials, timeout=5
    )
    try:
        return await asyncio.to_thread(exporter.export, sdk_spans(traces=1, children=1))
    finally:
        await asyncio.to_thread(exporter.shutdown)


async def http_sdk_export(port: int, ca: Path, client: Pair | None = None) -> SpanExportResult:
    exporter = HttpSpanExporter(
        endpoint=f"https://127.0.0.1:{port}/v1/traces",
        certificate_file=str(ca),
        client_certificate_file=str(client.cert) if client else None,
        client_key_file=str(client.key) if client else None,
        timeout=5,
    )
    try:
        return await asyncio.to_thread(exporter.export, sdk_spans(traces=1, children=1))
    finally:
        await asyncio.to_thread(exporter.shutdown)


async def grpc_call(port: int, credentials: grpc.ChannelCredentials | None) -> None:
    """One raw export call; raises AioRpcError when it fails."""
    target = f"127.0.0.1:{port}"
    channel = (
        grpc.aio.secure_channel(target, credentials)
        if credentials is not None
        else grpc.aio.insecure_channel(target)
    )
    async with channel:
        call = channel.unary_unary(EXPORT_METHOD)
        await call(good_request(), timeout=5, wait_for_ready=False)


async def http_status(port: int, context: ssl.SSLContext | bool) -> int:
    """One raw POST; raises aiohttp.ClientError when the connection fails."""
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session,
        session.post(
            f"https://127.0.0.1:{port}/v1/traces",
            data=good_request(),
            headers={"Content-Type": "application/x-protobuf"},
            ssl=context,
        ) as response,
    ):
        await response.read()
        return response.status


# ---- server TLS ---------------------------------------------------------------------------


async def test_sdk_exporters_send_over_tls(
    doors: Doors, authority: Authority, sink: FakeSink
) -> None:
    credentials = authority.channel_credentials()
    assert await grpc_sdk_export(doors.grpc_port, credentials) is SpanExportResult.SUCCESS
    assert await http_sdk_export(doors.http_port, authority.cert) is SpanExportResult.SUCCESS
    assert [protocol for _, protocol in sink.batches] == ["grpc", "http_protobuf"]


async def test_plain_text_and_unknown_cas_get_nowhere(
    doors: Doors, tmp_path: Path, sink: FakeSink
) -> None:
    stranger = Authority(tmp_path, "stranger")
    with pytest.raises(grpc.aio.AioRpcError) as plain:
        await grpc_call(doors.grpc_port, None)
    assert plain.value.code() is grpc.StatusCode.UNAVAILABLE
    with pytest.raises(grpc.aio.AioRpcError) as unknown:
        await grpc_call(doors.grpc_port, stranger.channel_credentials())
    assert unknown.value.code() is grpc.StatusCode.UNAVAILABLE
    with pytest.raises(aiohttp.ClientConnectorCertificateError):
        await http_status(doors.http_port, stranger.client_context())
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientError):
            async with session.post(f"http://127.0.0.1:{doors.http_port}/v1/traces") as r:
                await r.read()
    assert sink.batches == []


async def test_an_older_tls_client_is_served_too(doors: Doors, authority: Authority) -> None:
    context = authority.client_context()
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    assert await http_status(doors.http_port, context) == 200
    assert await name_served(context, doors.http_port) == "served"


# ---- mutual TLS ---------------------------------------------------------------------------


async def test_mutual_tls_lets_in_clients_with_a_certificate_from_the_client_ca(
    mutual_doors: Doors, authority: Authority, client_ca: Authority, sink: FakeSink
) -> None:
    client = client_ca.issue("app")
    credentials = authority.channel_credentials(client)
    assert await grpc_sdk_export(mutual_doors.grpc_port, credentials) is SpanExportResult.SUCCESS
    outcome = await http_sdk_export(mutual_doors.http_port, authority.cert, client)
    assert outcome is SpanExportResult.SUCCESS
    assert len(sink.batches) == 2


async def test_mutual_tls_refuses_clients_without_or_with_another_certificate(
    mutual_doors: Doors, authority: Authority, tmp_path: Path, sink: FakeSink
) -> None:
    impostor = Authority(tmp_path, "impostor").issue("impostor")
    for pair in (None, impostor):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await grpc_call(mutual_doors.grpc_port, authority.channel_credentials(pair))
        assert refused.value.code() is grpc.StatusCode.UNAVAILABLE
        with pytest.raises(aiohttp.ClientError):
            await http_status(mutual_doors.http_port, authority.client_context(pair))
    assert sink.batches == []


# ---- reloading ----------------------------------------------------------------------------


async def test_a_rotated_certificate_is_served_from_the_next_handshake(
    doors: Doors, authority: Authority, served: Pair, tmp_path: Path, sink: FakeSink
) -> None:
    successor = Authority(tmp_path, "successor")
    successor.issue("renewed").rotate_into(served)
    assert doors.certificate.refresh() is True
    assert doors.certificate.refresh() is None  # nothing changed since

    context = successor.client_context()
    assert await name_served(context, doors.http_port) == "renewed"
    assert await http_status(doors.http_port, context) == 200
    await grpc_call(doors.grpc_port, successor.channel_credentials())
    with pytest.raises(aiohttp.ClientConnectorCertificateError):
        await http_status(doors.http_port, authority.client_context())
    with pytest.raises(grpc.aio.AioRpcError):
        await grpc_call(doors.grpc_port, authority.channel_credentials())
    assert len(sink.batches) == 2


async def test_an_expired_certificate_replaced_on_disk_is_picked_up(
    intake: Intake, authority: Authority, tmp_path: Path, sink: FakeSink
) -> None:
    expired = authority.issue("served", expired=True)
    certificate = ServerCertificate(expired.cert, expired.key)
    async for opened in open_doors(intake, certificate, client_cert=False):
        with pytest.raises(aiohttp.ClientConnectorCertificateError, match="expired"):
            await http_status(opened.http_port, authority.client_context())
        with pytest.raises(grpc.aio.AioRpcError):
            await grpc_call(opened.grpc_port, authority.channel_credentials())

        authority.issue("fresh").rotate_into(expired)
        assert certificate.refresh() is True

        assert await http_status(opened.http_port, authority.client_context()) == 200
        await grpc_call(opened.grpc_port, authority.channel_credentials())
    assert len(sink.batches) == 2


async def test_files_that_fail_to_load_leave_the_working_certificate(
    doors: Doors, authority: Authority, served: Pair, tmp_path: Path
) -> None:
    other = authority.issue("other")
    served.key.write_bytes(other.key.read_bytes())  # a key that is not the certificate's
    assert doors.certificate.refresh() is False
    assert await http_status(doors.http_port, authority.client_context()) == 200
    assert await name_served(authority.client_context(), doors.http_port) == "served"
    await grpc_call(doors.grpc_port, authority.channel_credentials())

    served.cert.write_bytes(other.cert.read_bytes())  # the pair is whole again: taken
    assert doors.certificate.refresh() is True
    assert await name_served(authority.client_context(), doors.http_port) == "other"


async def test_a_client_ca_removed_on_disk_stops_being_trusted(
    mutual_doors: Doors, authority: Authority, client_ca: Authority, tmp_path: Path
) -> None:
    old_client = client_ca.issue("old-app")
    await grpc_call(mutual_doors.grpc_port, authority.channel_credentials(old_client))
    assert await http_status(mutual_doors.http_port, authority.client_context(old_client)) == 200

    replacement = Authority(tmp_path, "replacement")
    client_ca.cert.write_bytes(replacement.cert.read_bytes())
    assert mutual_doors.certificate.refresh() is True

    new_client = replacement.issue("new-app")
    await grpc_call(mutual_doors.grpc_port, authority.channel_credentials(new_client))
    assert await http_status(mutual_doors.http_port, authority.client_context(new_client)) == 200
    with pytest.raises(grpc.aio.AioRpcError):
        await grpc_call(mutual_doors.grpc_port, authority.channel_credentials(old_client))
    with pytest.raises(aiohttp.ClientError):
        await http_status(mutual_doors.http_port, authority.client_context(old_client))
