"""Ingest tokens on the OTLP doors: the SDK exporters' `headers` get spans in; a missing or
unknown token gets UNAUTHENTICATED / 401 with a message and a Status body, counted by reason,
and nothing reaches the pipeline; a token's customer lands on the resources that lack one."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import aiohttp
import grpc
import grpc.aio
import pytest
from google.protobuf import json_format
from google.rpc.status_pb2 import Status
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
    OTLPSpanExporter as GrpcSpanExporter,
)
from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
    OTLPSpanExporter as HttpSpanExporter,
)
from opentelemetry.sdk.trace.export import SpanExportResult

from refinery_py.model import SpanBatch
from refinery_py.otlp.ingest import OriginInterner
from refinery_py.otlp.span_view import origin_fields
from refinery_py.receive import GrpcReceiver, HttpReceiver, Intake
from refinery_py.receive.ingest_auth import ANONYMOUS, IngestAuth, Sender, TokenProblem
from refinery_py.telemetry import Metrics
from refinery_py.telemetry.throttled_log import ThrottledLog
from tests.otlp_builders import request, span

from .support import EXPORT_METHOD, FakeSink, FrozenClock, good_request, sample, sdk_spans

TOKENS = {"acme-token": "acme", "ops-token": ""}


# ---- the token table ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Bearer acme-token", Sender("acme")),
        ("bearer   acme-token ", Sender("acme")),
        ("Bearer ops-token", ANONYMOUS),
        (None, TokenProblem.MISSING),
        ("", TokenProblem.MISSING),
        ("acme-token", TokenProblem.INVALID),
        ("Basic YWNtZTp0b2tlbg==", TokenProblem.INVALID),
        ("Bearer", TokenProblem.INVALID),
        ("Bearer acme-token2", TokenProblem.INVALID),
    ],
)
def test_bearer_tokens(value: str | None, expected: Sender | TokenProblem) -> None:
    found = IngestAuth("Authorization", TOKENS).identify(value)
    assert (found if isinstance(found, Sender) else found[0]) == expected


def test_another_header_holds_the_token_alone() -> None:
    auth = IngestAuth("X-API-Key", TOKENS)
    assert auth.header == "x-api-key"
    assert auth.identify("acme-token") == Sender("acme")
    problem = auth.identify("Bearer acme-token")
    assert not isinstance(problem, Sender)
    assert problem[0] is TokenProblem.INVALID
    missing = auth.identify(None)
    assert not isinstance(missing, Sender)
    assert missing[1] == "this door requires a token: send it in the x-api-key header"


def test_replacing_the_tokens_retires_the_old_ones() -> None:
    auth = IngestAuth("authorization", TOKENS)
    auth.replace({"next-token": "acme"})
    assert auth.identify("Bearer next-token") == Sender("acme")
    refused = auth.identify("Bearer acme-token")
    assert not isinstance(refused, Sender)
    assert refused[0] is TokenProblem.INVALID


# ---- the doors ----------------------------------------------------------------------------


@pytest.fixture
def auth() -> IngestAuth:
    return IngestAuth("authorization", TOKENS)


@pytest.fixture
def guarded(sink: FakeSink, metrics: Metrics, clock: FrozenClock, auth: IngestAuth) -> Intake:
    log = ThrottledLog(logging.getLogger("refinery_py.receive"), interval=5.0, clock=clock)
    return Intake(sink, OriginInterner(), metrics, log, auth=auth, customer_field="customer.id")


@pytest.fixture
async def grpc_port(guarded: Intake) -> AsyncIterator[int]:
    door = GrpcReceiver(guarded, "127.0.0.1", 0)
    await door.start()
    yield door.port
    await door.stop(1.0)


@pytest.fixture
async def http_port(guarded: Intake) -> AsyncIterator[int]:
    door = HttpReceiver(guarded, "127.0.0.1", 0)
    await door.start()
    yield door.port
    await door.stop(1.0)


def resource_customers(batch: SpanBatch) -> list[object]:
    return [origin_fields(origin).get("customer.id") for origin in batch.origins]


async def grpc_sdk_export(port: int, headers: dict[str, str] | None) -> SpanExportResult:
    exporter = GrpcSpanExporter(
        endpoint=f"127.0.0.1:{port}", insecure=True, headers=headers, timeout=5
    )
    try:
        return await asyncio.to_thread(exporter.export, sdk_spans(traces=1, children=1))
    finally:
        await asyncio.to_thread(exporter.shutdown)


async def http_sdk_export(port: int, headers: dict[str, str] | None) -> SpanExportResult:
    exporter = HttpSpanExporter(
        endpoint=f"http://127.0.0.1:{port}/v1/traces", headers=headers, timeout=5
    )
    try:
        return await asyncio.to_thread(exporter.export, sdk_spans(traces=1, children=1))
    finally:
        await asyncio.to_thread(exporter.shutdown)


async def grpc_call(port: int, body: bytes, metadata: tuple[tuple[str, str], ...]) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        await channel.unary_unary(EXPORT_METHOD)(body, timeout=5, metadata=metadata)


async def http_post(
    port: int, body: bytes, content_type: str, headers: dict[str, str]
) -> tuple[int, dict[str, str], bytes]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"http://127.0.0.1:{port}/v1/traces",
            data=body,
            headers={"Content-Type": content_type, **headers},
        ) as response,
    ):
        return response.status, dict(response.headers), await response.read()


async def test_sdk_exporters_with_a_token_header_get_in_and_are_tagged(
    grpc_port: int, http_port: int, sink: FakeSink, metrics: Metrics
) -> None:
    acme = {"authorization": "Bearer acme-token"}
    assert await grpc_sdk_export(grpc_port, acme) is SpanExportResult.SUCCESS
    assert await http_sdk_export(http_port, acme) is SpanExportResult.SUCCESS
    ops = {"authorization": "Bearer ops-token"}
    assert await grpc_sdk_export(grpc_port, ops) is SpanExportResult.SUCCESS
    assert [resource_customers(batch) for batch, _ in sink.batches] == [
        ["acme", "acme"],
        ["acme", "acme"],
        [None, None],  # a token naming no customer tags nothing
    ]
    assert sample(metrics, "refinery_spans_received_total", protocol="grpc") == 4


async def test_sdk_exporters_without_a_good_token_are_refused_and_counted(
    grpc_port: int, http_port: int, sink: FakeSink, metrics: Metrics
) -> None:
    wrong = {"authorization": "Bearer guessed"}
    assert await grpc_sdk_export(grpc_port, None) is SpanExportResult.FAILURE
    assert await grpc_sdk_export(grpc_port, wrong) is SpanExportResult.FAILURE
    assert await http_sdk_export(http_port, None) is SpanExportResult.FAILURE
    assert await http_sdk_export(http_port, wrong) is SpanExportResult.FAILURE
    assert sink.batches == []
    assert sink.offered == 0
    for protocol in ("grpc", "http_protobuf"):
        for reason in ("missing_token", "invalid_token"):
            labels = {"protocol": protocol, "reason": reason}
            assert sample(metrics, "refinery_requests_rejected_total", **labels) == 1


async def test_grpc_refusal_is_unauthenticated_with_a_message_and_status(
    grpc_port: int, sink: FakeSink
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await grpc_call(grpc_port, good_request(), ())
    assert missing.value.code() is grpc.StatusCode.UNAUTHENTICATED
    message = "this door requires a token: send it as 'Authorization: Bearer TOKEN'"
    assert missing.value.details() == message
    trailers = dict(missing.value.trailing_metadata() or ())
    status = Status.FromString(trailers["grpc-status-details-bin"])
    assert (status.code, status.message) == (16, message)

    with pytest.raises(grpc.aio.AioRpcError) as wrong:
        await grpc_call(grpc_port, good_request(), (("authorization", "Bearer nope"),))
    assert wrong.value.code() is grpc.StatusCode.UNAUTHENTICATED
    assert wrong.value.details() == "the token is not accepted here"
    assert sink.offered == 0


@pytest.mark.parametrize("content_type", ["application/x-protobuf", "application/json"])
async def test_http_refusal_is_401_with_a_challenge_and_a_status_body(
    http_port: int, sink: FakeSink, content_type: str
) -> None:
    status, headers, body = await http_post(http_port, b"{}", content_type, {})
    assert status == 401
    assert headers["WWW-Authenticate"] == 'Bearer realm="refinery_py"'
    assert headers["Content-Type"] == content_type
    if content_type == "application/json":
        decoded = json_format.Parse(body, Status())
    else:
        decoded = Status.FromString(body)
    assert decoded.code == 16
    assert "requires a token" in decoded.message

    wrong = {"Authorization": "Basic YWNtZTp0b2tlbg=="}
    status, _, body = await http_post(http_port, b"{}", content_type, wrong)
    assert status == 401
    assert sink.offered == 0


async def test_refusals_are_logged_with_the_sender(
    http_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, "refinery_py.receive"):
        await http_post(http_port, b"", "application/x-protobuf", {})
    [record] = [r for r in caplog.records if "missing_token" in r.getMessage()]
    assert "from 127.0.0.1" in record.getMessage()


async def test_a_resource_with_its_own_customer_keeps_it(grpc_port: int, sink: FakeSink) -> None:
    body = request(span(1, 1), resource_attrs={"customer.id": "initech"}).SerializeToString()
    await grpc_call(grpc_port, body, (("authorization", "Bearer acme-token"),))
    [(batch, _)] = sink.batches
    assert resource_customers(batch) == ["initech"]


async def test_an_api_key_header_instead_of_authorization(sink: FakeSink, metrics: Metrics) -> None:
    intake = Intake(
        sink,
        OriginInterner(),
        metrics,
        auth=IngestAuth("x-api-key", TOKENS),
        customer_field="customer.id",
    )
    grpc_door = GrpcReceiver(intake, "127.0.0.1", 0)
    http_door = HttpReceiver(intake, "127.0.0.1", 0)
    await grpc_door.start()
    await http_door.start()
    try:
        key = {"x-api-key": "acme-token"}
        assert await grpc_sdk_export(grpc_door.port, key) is SpanExportResult.SUCCESS
        assert await http_sdk_export(http_door.port, key) is SpanExportResult.SUCCESS
        bearer = {"authorization": "Bearer acme-token"}
        assert await http_sdk_export(http_door.port, bearer) is SpanExportResult.FAILURE
        status, headers, _ = await http_post(http_door.port, b"", "application/x-protobuf", {})
        assert status == 401
        assert headers["WWW-Authenticate"] == 'ApiKey realm="refinery_py", header="x-api-key"'
    finally:
        await grpc_door.stop(1.0)
        await http_door.stop(1.0)
    assert [resource_customers(batch) for batch, _ in sink.batches] == [["acme"] * 2] * 2
