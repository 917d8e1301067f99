"""OTLP/gRPC receiver on a loopback port: the real SDK exporter, then raw calls with bad input."""

from __future__ import annotations

import asyncio
import gzip

import grpc
import grpc.aio
import pytest
from google.rpc.error_details_pb2 import RetryInfo
from google.rpc.status_pb2 import Status
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult

from refinery_py.otlp.ingest import OriginInterner
from refinery_py.receive import GrpcReceiver, Intake
from refinery_py.telemetry import Metrics
from tests.otlp_builders import request, span, trace_id

from .conftest import ReceiverFactory
from .support import (
    EXPORT_METHOD,
    FakeSink,
    good_request,
    mixed_request,
    roots_of,
    sample,
    sdk_spans,
    trace_ids_of,
)


async def sdk_export(
    port: int, spans: list[ReadableSpan], compression: grpc.Compression | None = None
) -> SpanExportResult:
    exporter = OTLPSpanExporter(
        endpoint=f"127.0.0.1:{port}", insecure=True, timeout=5, compression=compression
    )
    try:
        return await asyncio.to_thread(exporter.export, spans)
    finally:
        await asyncio.to_thread(exporter.shutdown)


async def export(
    port: int, body: bytes, compression: grpc.Compression | None = None
) -> ExportTraceServiceResponse:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.unary_unary(
            EXPORT_METHOD, request_serializer=None, response_deserializer=None
        )
        raw = await call(body, timeout=5, compression=compression)
    return ExportTraceServiceResponse.FromString(raw)


async def export_fails(port: int, body: bytes, **kwargs: grpc.Compression) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await export(port, body, **kwargs)
    return info.value


async def still_serves(port: int, sink: FakeSink) -> None:
    before = sink.span_count
    response = await export(port, good_request())
    assert not response.HasField("partial_success")
    assert sink.span_count == before + 2


@pytest.mark.parametrize("compression", [None, grpc.Compression.Gzip])
async def test_sdk_exporter_spans_reach_the_pipeline(
    start_grpc: ReceiverFactory,
    sink: FakeSink,
    metrics: Metrics,
    compression: grpc.Compression | None,
) -> None:
    port = await start_grpc()
    spans = sdk_spans(traces=3, children=2)

    assert await sdk_export(port, spans, compression) is SpanExportResult.SUCCESS

    [(batch, protocol)] = sink.batches
    assert protocol == "grpc"
    assert batch.trace_ids == trace_ids_of(spans)
    assert batch.span_count == 9
    assert batch.root_positions == roots_of(spans) == {2, 5, 8}
    assert batch.rejected == 0
    assert sample(metrics, "refinery_spans_received_total", protocol="grpc") == 9
    assert sample(metrics, "refinery_received_bytes_total", protocol="grpc") > 0


async def test_sdk_exporter_retries_after_refused_admission(
    start_grpc: ReceiverFactory, sink: FakeSink, metrics: Metrics
) -> None:
    port = await start_grpc()
    sink.refuse_next = 1
    spans = sdk_spans(traces=1, children=1)

    assert await sdk_export(port, spans) is SpanExportResult.SUCCESS

    assert sink.offered == 2
    assert sink.trace_ids == trace_ids_of(spans)
    reason = {"protocol": "grpc", "reason": "overloaded"}
    assert sample(metrics, "refinery_requests_rejected_total", **reason) == 1


async def test_refused_admission_is_resource_exhausted_with_retry_info(
    start_grpc: ReceiverFactory, sink: FakeSink
) -> None:
    port = await start_grpc()
    sink.refuse_next = 1
    sink.retry_after = 2.5

    error = await export_fails(port, good_request())

    assert error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error.details() == "span buffer is full"
    trailers = dict(error.trailing_metadata() or ())
    status = Status.FromString(trailers["grpc-status-details-bin"])
    assert status.code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
    assert status.message == "span buffer is full"
    retry = RetryInfo()
    assert status.details[0].Unpack(retry)
    assert retry.retry_delay.ToTimedelta().total_seconds() == 2.5
    assert RetryInfo.FromString(trailers["google.rpc.retryinfo-bin"]) == retry
    assert sink.batches == []
    await still_serves(port, sink)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(good_request()[:-5], id="truncated"),
        pytest.param(b"\xff\xff\xff\xff not protobuf", id="garbage"),
        pytest.param(b"\x0a\x05\x12\x03\x12\x01", id="bad-nesting"),
    ],
)
async def test_malformed_protobuf_is_invalid_argument(
    start_grpc: ReceiverFactory, sink: FakeSink, metrics: Metrics, body: bytes
) -> None:
    port = await start_grpc()

    error = await export_fails(port, body)

    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "not a valid OTLP ExportTraceServiceRequest" in (error.details() or "")
    reason = {"protocol": "grpc", "reason": "malformed"}
    assert sample(metrics, "refinery_requests_rejected_total", **reason) == 1
    assert sink.offered == 0
    await still_serves(port, sink)


async def test_invalid_ids_are_a_partial_success_and_the_rest_is_taken(
    start_grpc: ReceiverFactory, sink: FakeSink, metrics: Metrics
) -> None:
    port = await start_grpc()

    response = await export(port, mixed_request().SerializeToString())

    assert response.partial_success.rejected_spans == 2
    assert "2 span(s) rejected" in response.partial_success.error_message
    assert sink.trace_ids == [trace_id(1), trace_id(1), trace_id(2)]
    assert sink.batches[0][0].root_positions == {0, 2}
    assert sample(metrics, "refinery_spans_rejected_total", reason="invalid_id") == 2
    assert sample(metrics, "refinery_spans_received_total", protocol="grpc") == 3


async def test_gzip_request_is_accepted(start_grpc: ReceiverFactory, sink: FakeSink) -> None:
    port = await start_grpc()

    response = await export(port, good_request(), compression=grpc.Compression.Gzip)

    assert not response.HasField("partial_success")
    assert sink.trace_ids == [trace_id(7), trace_id(7)]


async def test_oversized_request_is_resource_exhausted(
    start_grpc: ReceiverFactory, sink: FakeSink
) -> None:
    port = await start_grpc(max_request_bytes=4096)
    big = request(span(3, 1, attrs={"blob": "x" * 8192})).SerializeToString()

    error = await export_fails(port, big)

    assert error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert sink.offered == 0
    await still_serves(port, sink)


async def test_gzip_bomb_is_bounded_after_decompression(
    start_grpc: ReceiverFactory, sink: FakeSink
) -> None:
    port = await start_grpc(max_request_bytes=64 * 1024)
    bomb = request(span(3, 1, attrs={"blob": "x" * (8 << 20)})).SerializeToString()
    assert len(gzip.compress(bomb)) < 64 * 1024

    error = await export_fails(port, bomb, compression=grpc.Compression.Gzip)

    assert error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert sink.offered == 0
    await still_serves(port, sink)


async def test_empty_request_is_a_success_without_bothering_the_pipeline(
    start_grpc: ReceiverFactory, sink: FakeSink
) -> None:
    port = await start_grpc()

    response = await export(port, b"")

    assert response == ExportTraceServiceResponse()
    assert sink.offered == 0


async def test_port_in_use_is_an_os_error(start_grpc: ReceiverFactory, intake: Intake) -> None:
    port = await start_grpc()
    second = GrpcReceiver(intake, "127.0.0.1", port)

    with pytest.raises(OSError, match="cannot listen"):
        await second.start()


async def test_stopped_receiver_refuses_calls(sink: FakeSink, metrics: Metrics) -> None:
    receiver = GrpcReceiver(Intake(sink, OriginInterner(), metrics), "127.0.0.1", 0)
    await receiver.start()
    port = receiver.port
    await still_serves(port, sink)

    await receiver.stop(1.0)

    error = await export_fails(port, good_request())
    assert error.code() is grpc.StatusCode.UNAVAILABLE


async def test_an_overloaded_pipeline_refuses_before_the_request_is_decoded(
    start_grpc: ReceiverFactory, sink: FakeSink, metrics: Metrics
) -> None:
    port = await start_grpc()
    sink.overloaded = True

    error = await export_fails(port, b"\xff\xff not OTLP")

    assert error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error.details() == "decisions are running behind"
    assert (
        sample(metrics, "refinery_requests_rejected_total", protocol="grpc", reason="malformed")
        == 0
    )
    assert sink.offered == 0
    sink.overloaded = False
    await still_serves(port, sink)
