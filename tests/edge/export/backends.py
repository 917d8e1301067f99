"""Loopback OTLP backends (grpc.aio and aiohttp) that record what arrives and fail on request."""

from __future__ import annotations

import asyncio
import gzip
import socket
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import grpc
import grpc.aio
from aiohttp import web
from google.protobuf.duration_pb2 import Duration
from google.rpc import error_details_pb2, status_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTracePartialSuccess,
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from .builders import ArrivedSpan, spans_of

SERVICE = "opentelemetry.proto.collector.trace.v1.TraceService"
WAIT_LIMIT = 10.0
"""How long a test waits for arrivals before failing; a bound on a hang, not a timing claim."""


@dataclass(frozen=True)
class Received:
    """One accepted request: the decoded message and the request's headers/metadata."""

    request: ExportTraceServiceRequest
    headers: dict[str, str]


@dataclass(frozen=True)
class GrpcReply:
    """How the gRPC backend answers one request: OK (code None) or an error status."""

    code: grpc.StatusCode | None = None
    retry_info: float | None = None
    rejected_spans: int = 0
    message: str = ""


@dataclass(frozen=True)
class HttpReply:
    """How the HTTP backend answers one request."""

    status: int = 200
    retry_after: str | None = None
    rejected_spans: int = 0
    message: str = ""


Check = Callable[[ExportTraceServiceRequest], str | None]
"""Reads a request the way a backend's parser would: a message when it refuses it, else None."""


@dataclass
class RecordingBackend:
    """What both backends share: the record, a gate to hold requests, and waiting for spans.

    With `check`, a request it refuses is answered as invalid (INVALID_ARGUMENT / HTTP 400,
    with its message) and not recorded; scripted `replies` still come first.
    """

    endpoint: str = ""
    check: Check | None = None
    attempts: int = 0
    refused: int = 0
    accepted: list[Received] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    gate: asyncio.Event = field(default_factory=asyncio.Event)
    hold_after: int | None = None
    """Attempts after this many wait until the backend stops (the gate is for all of them)."""
    _stopping: asyncio.Event = field(default_factory=asyncio.Event)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.gate.set()

    def arrived(self) -> list[ArrivedSpan]:
        """Every accepted span, tagged with the index of its request."""
        return spans_of(received.request for received in self.accepted)

    async def wait_for(self, predicate: str, minimum: int) -> None:
        """Wait until `attempts`, `in_flight` or the count of arrived spans reaches `minimum`."""
        async with asyncio.timeout(WAIT_LIMIT):
            while self._measure(predicate) < minimum:
                self._changed.clear()
                await self._changed.wait()

    def _measure(self, predicate: str) -> int:
        if predicate == "spans":
            return len(self.arrived())
        return int(getattr(self, predicate))

    async def _admit(self) -> None:
        """Count an attempt and hold it at the gate."""
        self.attempts += 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        self._changed.set()
        try:
            if self.hold_after is not None and self.attempts > self.hold_after:
                await self._stopping.wait()
            await self.gate.wait()
        finally:
            self.in_flight -= 1

    def _refusal(self, body: bytes) -> str | None:
        if self.check is None:
            return None
        refusal = self.check(ExportTraceServiceRequest.FromString(body))
        if refusal is not None:
            self.refused += 1
            self._changed.set()
        return refusal

    def _record(self, body: bytes, headers: dict[str, str]) -> None:
        self.accepted.append(Received(ExportTraceServiceRequest.FromString(body), headers))
        self._changed.set()


def _response(rejected_spans: int, message: str) -> bytes:
    if not rejected_spans and not message:
        return ExportTraceServiceResponse().SerializeToString()
    partial = ExportTracePartialSuccess(rejected_spans=rejected_spans, error_message=message)
    return ExportTraceServiceResponse(partial_success=partial).SerializeToString()


@dataclass
class GrpcBackend(RecordingBackend):
    """An OTLP/gRPC TraceService on 127.0.0.1 with a generic handler that sees raw bytes."""

    replies: deque[GrpcReply] = field(default_factory=deque)
    accept_gzip: bool = True
    _server: grpc.aio.Server | None = None

    async def start(self) -> None:
        # Leaving gzip out of the enabled algorithms makes the server refuse gzip requests,
        # which is how a test sees which encoding the client really used.
        options = [] if self.accept_gzip else [("grpc.compression_enabled_algorithms_bitset", 1)]
        self._server = grpc.aio.server(options=options)
        handler = grpc.method_handlers_generic_handler(
            SERVICE, {"Export": grpc.unary_unary_rpc_method_handler(self._export)}
        )
        self._server.add_generic_rpc_handlers((handler,))
        port = self._server.add_insecure_port("127.0.0.1:0")
        await self._server.start()
        self.endpoint = f"127.0.0.1:{port}"

    async def stop(self) -> None:
        self._stopping.set()
        self.gate.set()
        if self._server is not None:
            await self._server.stop(None)

    async def _export(self, body: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        await self._admit()
        reply = self.replies.popleft() if self.replies else GrpcReply()
        if reply.code is not None:
            trailers: tuple[tuple[str, bytes], ...] = ()
            if reply.retry_info is not None:
                trailers = (("grpc-status-details-bin", _status_with_retry_info(reply)),)
            await context.abort(reply.code, reply.message, trailing_metadata=trailers)
        refusal = self._refusal(body)
        if refusal is not None:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, refusal)
        metadata = {key: str(value) for key, value in context.invocation_metadata() or ()}
        self._record(body, metadata)
        return _response(reply.rejected_spans, reply.message)


def _status_with_retry_info(reply: GrpcReply) -> bytes:
    assert reply.code is not None and reply.retry_info is not None
    delay = Duration()
    delay.FromNanoseconds(int(reply.retry_info * 1e9))
    status = status_pb2.Status(code=reply.code.value[0], message=reply.message)
    status.details.add().Pack(error_details_pb2.RetryInfo(retry_delay=delay))
    encoded: bytes = status.SerializeToString()
    return encoded


@dataclass
class HttpBackend(RecordingBackend):
    """An OTLP/HTTP receiver on 127.0.0.1 that reads request bodies exactly as sent."""

    replies: deque[HttpReply] = field(default_factory=deque)
    path: str = "/v1/traces"
    _runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application(client_max_size=64 << 20)
        app.router.add_post(self.path, self._export)
        # Raw bodies: the test itself un-gzips, proving the body really was gzip.
        self._runner = web.AppRunner(app, auto_decompress=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.endpoint = f"127.0.0.1:{port}"

    async def stop(self) -> None:
        self._stopping.set()
        self.gate.set()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _export(self, request: web.Request) -> web.Response:
        raw = await request.read()
        await self._admit()
        reply = self.replies.popleft() if self.replies else HttpReply()
        if reply.status != 200:
            headers = {"Retry-After": reply.retry_after} if reply.retry_after is not None else {}
            status = status_pb2.Status(code=3, message=reply.message)
            return web.Response(
                status=reply.status,
                body=status.SerializeToString(),
                content_type="application/x-protobuf",
                headers=headers,
            )
        headers = dict(request.headers)
        body = gzip.decompress(raw) if headers.get("Content-Encoding") == "gzip" else raw
        refusal = self._refusal(body)
        if refusal is not None:
            status = status_pb2.Status(code=3, message=refusal)
            return web.Response(
                status=400, body=status.SerializeToString(), content_type="application/x-protobuf"
            )
        self._record(body, headers)
        return web.Response(
            body=_response(reply.rejected_spans, reply.message),
            content_type="application/x-protobuf",
        )


def unused_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port
