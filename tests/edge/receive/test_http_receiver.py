"""OTLP/HTTP receiver on a loopback port: the real SDK exporter, then raw requests, bad ones too."""

from __future__ import annotations

import asyncio
import gzip
import io
import sys
import zlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest
from google.protobuf import json_format
from google.rpc.error_details_pb2 import RetryInfo
from google.rpc.status_pb2 import Status
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult

from refinery_py.otlp.json import request_to_json
from refinery_py.receive import HttpReceiver, Intake
from refinery_py.receive.intake import DEFAULT_MAX_REQUEST_BYTES
from refinery_py.telemetry import Metrics
from tests.otlp_builders import request, span, trace_id
from tests.otlp_nesting import in_span_attribute, nested

from .conftest import ReceiverFactory
from .support import (
    FakeSink,
    good_request,
    mixed_request,
    roots_of,
    sample,
    sdk_spans,
    trace_ids_of,
)

if sys.version_info >= (3, 14):
    from compression import zstd
else:
    from backports import zstd

PROTOBUF = "application/x-protobuf"
JSON = "application/json"


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as client:
        yield client


class Client:
    """Posts raw bodies to one receiver."""

    def __init__(self, session: aiohttp.ClientSession, port: int) -> None:
        self.session = session
        self.url = f"http://127.0.0.1:{port}/v1/traces"

    async def post(
        self,
        body: bytes | io.BytesIO | AsyncIterator[bytes],
        content_type: str = PROTOBUF,
        **headers: str,
    ) -> tuple[int, dict[str, str], bytes]:
        headers = {"Content-Type": content_type, **headers}
        async with self.session.post(self.url, data=body, headers=headers) as response:
            return response.status, dict(response.headers), await response.read()


@pytest.fixture
async def client(start_http: ReceiverFactory, session: aiohttp.ClientSession) -> Client:
    return Client(session, await start_http())


def status_of(body: bytes, content_type: str) -> Status:
    if content_type.startswith(JSON):
        return json_format.Parse(body, Status())
    return Status.FromString(body)


def _json_int(text: str) -> bytes:
    """A request whose one span has an `intValue` attribute holding `text`."""
    attribute = {"key": "n", "value": {"intValue": text}}
    span_document = {"traceId": "01" * 16, "spanId": "01" * 8, "attributes": [attribute]}
    return orjson.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [span_document]}]}]})


def _deep_json(levels: int) -> bytes:
    """`levels` arrays deep in a span attribute, written out (orjson.dumps stops at 255)."""
    value = '{"arrayValue": {"values": [' * levels + '{"stringValue": "x"}' + "]}}" * levels
    ids = f'"traceId": "{"01" * 16}", "spanId": "{"01" * 8}"'
    span_document = ids + ', "attributes": [{"key": "deep", "value": ' + value + "}]"
    return ('{"resourceSpans": [{"scopeSpans": [{"spans": [{' + span_document + "}]}]}]}").encode()


def _deep_protobuf(levels: int) -> bytes:
    return in_span_attribute(*nested(levels, "array"))[1]


async def still_serves(client: Client, sink: FakeSink) -> None:
    before = sink.span_count
    status, _, body = await client.post(good_request())
    assert (status, body) == (200, b"")
    assert sink.span_count == before + 2


async def sdk_export(
    port: int, spans: list[ReadableSpan], compression: Compression | None = None
) -> SpanExportResult:
    exporter = OTLPSpanExporter(
        endpoint=f"http://127.0.0.1:{port}/v1/traces", timeout=5, compression=compression
    )
    try:
        return await asyncio.to_thread(exporter.export, spans)
    finally:
        await asyncio.to_thread(exporter.shutdown)


@pytest.mark.parametrize("compression", [None, Compression.Gzip, Compression.Deflate])
async def test_sdk_exporter_spans_reach_the_pipeline(
    start_http: ReceiverFactory,
    sink: FakeSink,
    metrics: Metrics,
    compression: Compression | None,
) -> None:
    port = await start_http()
    spans = sdk_spans(traces=3, children=2)

    assert await sdk_export(port, spans, compression) is SpanExportResult.SUCCESS

    [(batch, protocol)] = sink.batches
    assert protocol == "http_protobuf"
    assert batch.trace_ids == trace_ids_of(spans)
    assert batch.span_count == 9
    assert batch.root_positions == roots_of(spans) == {2, 5, 8}
    assert sample(metrics, "refinery_spans_received_total", protocol="http_protobuf") == 9
    assert sample(metrics, "refinery_received_bytes_total", protocol="http_protobuf") > 0


async def test_sdk_exporter_retries_after_429(
    start_http: ReceiverFactory, sink: FakeSink, metrics: Metrics
) -> None:
    port = await start_http()
    sink.refuse_next = 1
    spans = sdk_spans(traces=1, children=1)

    assert await sdk_export(port, spans) is SpanExportResult.SUCCESS

    assert sink.offered == 2
    assert sink.trace_ids == trace_ids_of(spans)
    reason = {"protocol": "http_protobuf", "reason": "overloaded"}
    assert sample(metrics, "refinery_requests_rejected_total", **reason) == 1


@pytest.mark.parametrize("content_type", [PROTOBUF, JSON])
@pytest.mark.parametrize("retry_after", [0.0, 0.2, 2.5])
async def test_overload_is_429_with_retry_after(
    client: Client, sink: FakeSink, content_type: str, retry_after: float
) -> None:
    sink.refuse_next = 1
    sink.retry_after = retry_after
    body = good_request()
    if content_type == JSON:
        body = request_to_json(body)

    status, headers, reply = await client.post(body, content_type)

    assert status == 429
    assert headers["Retry-After"] == {0.0: "1", 0.2: "1", 2.5: "3"}[retry_after]
    assert headers["Content-Type"] == content_type
    error = status_of(reply, content_type)
    assert error.message == "span buffer is full"
    retry = RetryInfo()
    assert error.details[0].Unpack(retry)
    assert retry.retry_delay.ToTimedelta().total_seconds() == retry_after
    assert sink.batches == []
    await still_serves(client, sink)


def test_every_refusal_is_counted_from_zero(intake: Intake, metrics: Metrics) -> None:
    # Present before the first refusal, so a rate() (and the backpressure alert) sees that one.
    for protocol in ("grpc", "http_protobuf", "http_json", "http"):
        for reason in ("malformed", "too_large", "unsupported_media_type", "overloaded"):
            labels = {"protocol": protocol, "reason": reason}
            value = metrics.registry.get_sample_value("refinery_requests_rejected_total", labels)
            assert value == 0, labels  # None: no series yet


async def test_json_with_hex_ids_decodes_like_protobuf(client: Client, sink: FakeSink) -> None:
    message = request(span(0xABC, 0x1), span(0xABC, 0x2, 0x1), span(0xDEF, 0x3, 0x9))
    protobuf = message.SerializeToString()
    document = orjson.loads(request_to_json(protobuf))
    first_span = document["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    assert first_span["traceId"] == trace_id(0xABC).hex()

    assert (await client.post(protobuf))[0] == 200
    status, headers, reply = await client.post(orjson.dumps(document), f"{JSON}; charset=utf-8")

    assert (status, headers["Content-Type"], orjson.loads(reply)) == (200, JSON, {})
    (from_protobuf, p1), (from_json, p2) = sink.batches
    assert (p1, p2) == ("http_protobuf", "http_json")
    assert (
        from_json.trace_ids == from_protobuf.trace_ids == [trace_id(0xABC)] * 2 + [trace_id(0xDEF)]
    )
    assert from_json.root_positions == from_protobuf.root_positions == {0}
    assert [Span.FromString(s) for s in from_json.spans] == list(
        message.resource_spans[0].scope_spans[0].spans
    )


async def test_json_fields_of_a_newer_otlp_are_ignored(client: Client, sink: FakeSink) -> None:
    """A sender on a newer OTLP writes fields this receiver does not know; the spec says to
    ignore them, so the request is taken whole, as it would be over protobuf."""
    message = request(span(0xABC, 0x1), span(0xABC, 0x2, 0x1))
    document = orjson.loads(request_to_json(message.SerializeToString()))
    resource_spans = document["resourceSpans"][0]
    resource_spans["resource"]["futureRefs"] = [{"type": "service", "idKeys": ["service.name"]}]
    resource_spans["scopeSpans"][0]["spans"][1]["futureField"] = {"nested": [1, 2]}

    status, _, reply = await client.post(orjson.dumps(document), JSON)

    assert (status, orjson.loads(reply)) == (200, {})
    ((batch, _),) = sink.batches
    assert [Span.FromString(s) for s in batch.spans] == list(
        message.resource_spans[0].scope_spans[0].spans
    )


@pytest.mark.parametrize("content_type", [PROTOBUF, JSON])
async def test_invalid_ids_are_a_partial_success_and_the_rest_is_taken(
    client: Client, sink: FakeSink, metrics: Metrics, content_type: str
) -> None:
    body = mixed_request().SerializeToString()
    if content_type == JSON:
        body = request_to_json(body)

    status, _, reply = await client.post(body, content_type)

    assert status == 200
    if content_type == JSON:
        response = json_format.Parse(reply, ExportTraceServiceResponse())
    else:
        response = ExportTraceServiceResponse.FromString(reply)
    assert response.partial_success.rejected_spans == 2
    assert "2 span(s) rejected" in response.partial_success.error_message
    assert sink.trace_ids == [trace_id(1), trace_id(1), trace_id(2)]
    assert sample(metrics, "refinery_spans_rejected_total", reason="invalid_id") == 2


@pytest.mark.parametrize(
    ("body", "content_type", "says"),
    [
        pytest.param(good_request()[:-5], PROTOBUF, "not a valid OTLP", id="truncated-protobuf"),
        pytest.param(b"\xff\xfe garbage", PROTOBUF, "not a valid OTLP", id="garbage-protobuf"),
        pytest.param(b'{"resourceSpans": [', JSON, "not valid JSON", id="invalid-json"),
        pytest.param(b"[1, 2]", JSON, "must be an object", id="json-array"),
        pytest.param(b'{"resourceSpans": 5}', JSON, "not a valid OTLP JSON", id="json-wrong-shape"),
        pytest.param(
            b'{"resourceLogs": []}', JSON, "no resourceSpans, only resourceLogs", id="json-logs"
        ),
        pytest.param(_json_int("²"), JSON, "expected an integer, found '²'", id="json-superscript"),
        pytest.param(_deep_json(300), JSON, "deeper than 100 levels", id="json-300-deep"),
        pytest.param(_deep_json(60), JSON, "deeper than 100 levels", id="json-60-deep"),
        pytest.param(_deep_protobuf(60), PROTOBUF, "not a valid OTLP", id="protobuf-60-deep"),
    ],
)
async def test_malformed_body_is_400_with_a_status_saying_why(
    client: Client, sink: FakeSink, metrics: Metrics, *, body: bytes, content_type: str, says: str
) -> None:
    status, headers, reply = await client.post(body, content_type)

    assert status == 400
    assert headers["Content-Type"] == content_type
    error = status_of(reply, content_type)
    assert error.code == 3  # INVALID_ARGUMENT
    assert says in error.message
    protocol = "http_json" if content_type == JSON else "http_protobuf"
    reason = {"protocol": protocol, "reason": "malformed"}
    assert sample(metrics, "refinery_requests_rejected_total", **reason) == 1
    assert sink.offered == 0
    await still_serves(client, sink)


async def test_a_number_the_size_of_the_largest_request_is_400_and_said_in_short(
    client: Client, sink: FakeSink
) -> None:
    """An `intValue` string of digits filling the default 16 MiB limit, one character short of
    a number: the number syntax reads it in one pass (it used to try every split of the
    digits, hours at this size), the answer is 400, and the message does not echo the value."""
    body = _json_int("1" * (DEFAULT_MAX_REQUEST_BYTES - 200) + "x")
    assert DEFAULT_MAX_REQUEST_BYTES - 100 < len(body) <= DEFAULT_MAX_REQUEST_BYTES
    status, _, reply = await client.post(io.BytesIO(body), JSON)
    assert status == 400
    message = status_of(reply, JSON).message
    assert "expected an integer" in message and "characters)" in message
    assert len(message) < 300
    await still_serves(client, sink)


@pytest.mark.parametrize("content_type", ["text/plain", "application/octet-stream", ""])
async def test_other_content_types_are_415(
    client: Client, sink: FakeSink, metrics: Metrics, content_type: str
) -> None:
    status, headers, reply = await client.post(good_request(), content_type)

    assert status == 415
    assert headers["Content-Type"] == JSON
    assert "application/x-protobuf" in status_of(reply, JSON).message
    reason = {"protocol": "http", "reason": "unsupported_media_type"}
    assert sample(metrics, "refinery_requests_rejected_total", **reason) == 1
    await still_serves(client, sink)


async def test_unsupported_content_encoding_is_415(client: Client, sink: FakeSink) -> None:
    status, _, reply = await client.post(good_request(), **{"Content-Encoding": "snappy"})

    assert status == 415
    assert "snappy" in Status.FromString(reply).message
    await still_serves(client, sink)


@pytest.mark.parametrize(
    ("coding", "compress"),
    [("gzip", gzip.compress), ("deflate", zlib.compress), ("zstd", zstd.compress)],
)
async def test_compressed_bodies_are_accepted(
    client: Client, sink: FakeSink, metrics: Metrics, coding: str, compress: Any
) -> None:
    body = good_request()

    status, _, _ = await client.post(compress(body), **{"Content-Encoding": coding})

    assert status == 200
    assert sink.trace_ids == [trace_id(7), trace_id(7)]
    assert sample(metrics, "refinery_received_bytes_total", protocol="http_protobuf") == len(body)


@pytest.mark.parametrize(
    ("coding", "body", "says"),
    [
        ("gzip", b"\x1f\x8b not gzip at all", "not valid gzip data"),
        ("gzip", gzip.compress(good_request())[:-12], "truncated gzip data"),
        ("deflate", b"\x78\x9c garbage", "not valid deflate data"),
        ("deflate", zlib.compress(good_request()) + b"extra", "after the end of its deflate"),
        ("zstd", b"\x28\xb5\x2f\xfd not zstd at all", "not valid zstd data"),
        ("zstd", zstd.compress(good_request())[:-3], "truncated zstd data"),
    ],
)
async def test_corrupt_compressed_body_is_400(
    client: Client, sink: FakeSink, metrics: Metrics, *, coding: str, body: bytes, says: str
) -> None:
    status, _, reply = await client.post(body, **{"Content-Encoding": coding})

    assert status == 400
    assert says in Status.FromString(reply).message
    reason = {"protocol": "http_protobuf", "reason": "malformed"}
    assert sample(metrics, "refinery_requests_rejected_total", **reason) == 1
    await still_serves(client, sink)


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_oversized_body_is_413(
    start_http: ReceiverFactory,
    session: aiohttp.ClientSession,
    sink: FakeSink,
    metrics: Metrics,
    chunked: bool,
) -> None:
    # Without a Content-Length the size is known only while reading: the limit still holds.
    client = Client(session, await start_http(max_request_bytes=4096))
    big = request(span(3, 1, attrs={"blob": "x" * 8192})).SerializeToString()

    status, _, reply = await client.post(_in_pieces(big, 1000) if chunked else big)

    assert status == 413
    assert "4096 bytes" in Status.FromString(reply).message
    reason = {"protocol": "http_protobuf", "reason": "too_large"}
    assert sample(metrics, "refinery_requests_rejected_total", **reason) == 1
    assert sink.offered == 0
    await still_serves(client, sink)


async def _in_pieces(body: bytes, size: int) -> AsyncIterator[bytes]:
    """`body` as a chunked request, `size` bytes per HTTP chunk, each sent on its own."""
    for start in range(0, len(body), size):
        yield body[start : start + size]
        await asyncio.sleep(0)


@pytest.mark.parametrize(("spans", "piece"), [(3, 1), (400, 997), (400, 1 << 20), (400, 0)])
async def test_a_body_is_taken_whole_however_it_is_cut(
    client: Client, sink: FakeSink, metrics: Metrics, spans: int, piece: int
) -> None:
    # 400 spans are about 1.2 MB: many socket reads, and cut small, over a thousand HTTP chunks.
    body = request(
        *(span(40 + n % 50, n + 1, attrs={"blob": f"{n:06d}" * 500}) for n in range(spans))
    ).SerializeToString()

    # Whole: a file object, sent with its Content-Length (aiohttp warns about a large bytes).
    status, _, reply = await client.post(_in_pieces(body, piece) if piece else io.BytesIO(body))

    assert (status, reply) == (200, b"")
    assert sink.span_count == spans
    sent = [s for batch, _ in sink.batches for s in batch.spans]
    assert sorted(sent) == sorted(
        s.SerializeToString()
        for s in ExportTraceServiceRequest.FromString(body).resource_spans[0].scope_spans[0].spans
    )
    assert sample(metrics, "refinery_received_bytes_total", protocol="http_protobuf") == len(body)


async def test_a_chunk_whose_end_comes_later_is_not_the_end_of_the_body(
    start_http: ReceiverFactory, sink: FakeSink
) -> None:
    # Each chunk's data first, its closing CRLF only after the server has read the data: the
    # server then sees the end of an HTTP chunk with nothing new to read, which must not be
    # taken for the end of the body.
    port = await start_http()
    body = request(*(span(9, n + 1) for n in range(20))).SerializeToString()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    for start in range(0, len(body), 100):
        piece = body[start : start + 100]
        writer.write(b"%x\r\n" % len(piece) + piece)
        await writer.drain()
        await asyncio.sleep(0.05)  # time for the server to read the data before the chunk ends
        writer.write(b"\r\n")
    writer.write(b"0\r\n\r\n")
    await writer.drain()

    status_line = await reader.readline()
    writer.close()
    await writer.wait_closed()
    assert status_line.startswith(b"HTTP/1.1 200"), status_line
    assert sink.span_count == 20


async def test_empty_bodies_one_after_another_are_empty_requests(
    client: Client, sink: FakeSink
) -> None:
    # aiohttp reads every empty body with one shared reader, which ends only the first.
    for _ in range(3):
        status, _, reply = await client.post(b"")
        assert (status, reply) == (200, b"")
    await still_serves(client, sink)


@pytest.mark.parametrize("coding", ["gzip", "zstd"])
@pytest.mark.parametrize("content_type", [PROTOBUF, JSON])
async def test_a_bomb_is_bounded_after_decompression(
    start_http: ReceiverFactory,
    session: aiohttp.ClientSession,
    sink: FakeSink,
    content_type: str,
    coding: str,
) -> None:
    client = Client(session, await start_http(max_request_bytes=64 * 1024))
    compress = gzip.compress if coding == "gzip" else zstd.compress
    bomb = compress(b" " * (64 << 20))  # 64 MiB of whitespace
    assert len(bomb) < 64 * 1024

    status, _, reply = await client.post(bomb, content_type, **{"Content-Encoding": coding})

    assert status == 413
    assert "after decompression" in status_of(reply, content_type).message
    assert sink.offered == 0
    await still_serves(client, sink)


async def test_other_paths_and_methods(client: Client, session: aiohttp.ClientSession) -> None:
    async with session.get(client.url) as response:
        assert response.status == 405
    async with session.post(client.url.replace("/v1/traces", "/v1/logs"), data=b"") as response:
        assert response.status == 404


async def test_mangled_bodies_never_break_the_server(client: Client, sink: FakeSink) -> None:
    import random

    rng = random.Random(20261128)
    base = mixed_request().SerializeToString()
    statuses = set()
    for _ in range(200):
        body = bytearray(base)
        for _ in range(rng.randint(1, 4)):
            at = rng.randrange(len(body))
            body[at : at + rng.randint(0, 3)] = rng.randbytes(rng.randint(0, 3))
        status, _, _ = await client.post(bytes(body))
        statuses.add(status)
    assert statuses <= {200, 400}
    await still_serves(client, sink)


async def test_port_in_use_is_an_os_error(start_http: ReceiverFactory, intake: Intake) -> None:
    port = await start_http()
    second = HttpReceiver(intake, "127.0.0.1", port)

    with pytest.raises(OSError):
        await second.start()


async def test_stopped_receiver_refuses_connections(
    start_http: ReceiverFactory, intake: Intake, session: aiohttp.ClientSession, sink: FakeSink
) -> None:
    receiver = HttpReceiver(intake, "127.0.0.1", 0)
    await receiver.start()
    client = Client(session, receiver.port)
    await still_serves(client, sink)

    await receiver.stop(1.0)

    with pytest.raises(aiohttp.ClientConnectionError):
        await client.post(good_request())


async def test_stop_lets_a_request_in_flight_finish(
    intake: Intake, session: aiohttp.ClientSession, sink: FakeSink
) -> None:
    receiver = HttpReceiver(intake, "127.0.0.1", 0)
    await receiver.start()
    client = Client(session, receiver.port)
    body = good_request()
    release = asyncio.Event()

    async def slow_body() -> AsyncIterator[bytes]:
        yield body[:10]
        await release.wait()
        yield body[10:]

    posting = asyncio.create_task(client.post(slow_body()))
    while not receiver.in_flight:
        await asyncio.sleep(0.01)
    stopping = asyncio.create_task(receiver.stop(30.0))
    await asyncio.sleep(0)  # stop() closes the listener before it waits
    async with aiohttp.ClientSession() as fresh:
        with pytest.raises(aiohttp.ClientConnectionError):
            await Client(fresh, receiver.port).post(body)
    release.set()

    status, _, _ = await posting
    await stopping
    assert status == 200
    assert sink.trace_ids == [trace_id(7), trace_id(7)]


@pytest.mark.parametrize("content_type", [PROTOBUF, JSON])
async def test_an_overloaded_pipeline_refuses_before_the_body_is_decoded(
    client: Client, sink: FakeSink, metrics: Metrics, content_type: str
) -> None:
    sink.overloaded = True
    # Not even valid: an overloaded node does not spend a parse on a request it will refuse.
    status, headers, reply = await client.post(b"\xff\xff not OTLP", content_type)

    assert status == 429
    assert headers["Retry-After"] == "1"
    assert status_of(reply, content_type).message == "decisions are running behind"
    protocol = "http_json" if content_type == JSON else "http_protobuf"
    assert (
        sample(metrics, "refinery_requests_rejected_total", protocol=protocol, reason="overloaded")
        == 1
    )
    assert (
        sample(metrics, "refinery_requests_rejected_total", protocol=protocol, reason="malformed")
        == 0
    )
    assert sink.offered == 0
    sink.overloaded = False
    await still_serves(client, sink)
