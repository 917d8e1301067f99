"""The two OTLP clients a sender thread uses: raw HTTP/1.1 keep-alive and gRPC with raw bytes.

Both post an already serialized ExportTraceServiceRequest and say only what the benchmark counts:
accepted, rejected (the server asked to retry later: HTTP 429/503, gRPC RESOURCE_EXHAUSTED /
UNAVAILABLE, with the retry delay it gave) or failed (anything else). The HTTP client writes
pre-built request bytes to a socket and reads the response with a minimal parser, so a sender
costs a few microseconds of Python per request; the gRPC client is grpcio with a generic stub.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

import grpc
from google.rpc.error_details_pb2 import RetryInfo

GRPC_METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
_RETRY_INFO_KEY = "google.rpc.retryinfo-bin"
DEFAULT_RETRY_AFTER = 1.0


@dataclass(frozen=True)
class Outcome:
    accepted: bool
    rejected: bool = False
    retry_after: float = 0.0
    error: str = ""


ACCEPTED = Outcome(True)


def http_head(body_length: int) -> bytes:
    """The request line and headers of an OTLP/HTTP protobuf export of `body_length` bytes."""
    return (
        "POST /v1/traces HTTP/1.1\r\nHost: bench\r\n"
        "Content-Type: application/x-protobuf\r\n"
        f"Content-Length: {body_length}\r\n\r\n"
    ).encode()


class HttpClient:
    """One keep-alive connection; `post` takes the whole request (head + body) as bytes."""

    def __init__(self, host: str, port: int) -> None:
        self.address = (host, port)
        self.sock: socket.socket | None = None
        self.buffer = bytearray()

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        self.buffer.clear()

    def post(self, request: bytes) -> Outcome:
        try:
            if self.sock is None:
                self.sock = socket.create_connection(self.address, timeout=60)
                self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.sock.sendall(request)
            status, headers = self._response()
        except (OSError, ValueError) as exc:
            self.close()
            return Outcome(False, error=f"{type(exc).__name__}: {exc}")
        if headers.get("connection", "").lower() == "close":
            self.close()
        if status == 200:
            return ACCEPTED
        if status in (429, 503):
            retry = headers.get("retry-after", "")
            delay = float(retry) if retry.replace(".", "", 1).isdigit() else DEFAULT_RETRY_AFTER
            return Outcome(False, rejected=True, retry_after=delay)
        return Outcome(False, error=f"HTTP {status}")

    def _fill(self, size: int) -> None:
        """Read until the buffer holds at least `size` bytes."""
        assert self.sock is not None
        while len(self.buffer) < size:
            chunk = self.sock.recv(max(65536, size - len(self.buffer)))
            if not chunk:
                raise ConnectionError("server closed the connection")
            self.buffer += chunk

    def _line(self, terminator: bytes) -> bytes:
        """Consume and return the buffer up to `terminator` (excluded)."""
        assert self.sock is not None
        while (end := self.buffer.find(terminator)) < 0:
            self._fill(len(self.buffer) + 1)
        line = bytes(self.buffer[:end])
        del self.buffer[: end + len(terminator)]
        return line

    def _response(self) -> tuple[int, dict[str, str]]:
        lines = self._line(b"\r\n\r\n").decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if "content-length" in headers:
            self._skip(int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            while size := int(self._line(b"\r\n").split(b";")[0], 16):
                self._skip(size + 2)
            self._line(b"\r\n")
        return status, headers

    def _skip(self, size: int) -> None:
        self._fill(size)
        del self.buffer[:size]


class GrpcClient:
    """One channel with its own connection (a local subchannel pool), raw bytes in and out."""

    def __init__(self, host: str, port: int) -> None:
        self.channel = grpc.insecure_channel(
            f"{host}:{port}",
            options=[
                ("grpc.max_send_message_length", 64 << 20),
                ("grpc.max_receive_message_length", 64 << 20),
                ("grpc.use_local_subchannel_pool", 1),
            ],
        )
        self.export = self.channel.unary_unary(
            GRPC_METHOD, request_serializer=None, response_deserializer=None
        )

    def close(self) -> None:
        self.channel.close()

    def post(self, request: bytes) -> Outcome:
        try:
            self.export(request, timeout=60)
        except grpc.RpcError as exc:
            code = exc.code()
            delay = _retry_delay(exc)
            # UNAVAILABLE is also what a refused connection looks like: a rejection only when
            # the server said when to retry.
            if code is grpc.StatusCode.RESOURCE_EXHAUSTED or (
                code is grpc.StatusCode.UNAVAILABLE and delay is not None
            ):
                return Outcome(False, rejected=True, retry_after=delay or DEFAULT_RETRY_AFTER)
            return Outcome(False, error=f"{code.name}: {exc.details()}")
        return ACCEPTED


def _retry_delay(exc: grpc.RpcError) -> float | None:
    metadata = cast("Sequence[tuple[str, bytes]]", exc.trailing_metadata() or ())
    for key, value in metadata:
        if key == _RETRY_INFO_KEY:
            delay = RetryInfo.FromString(value).retry_delay
            return float(delay.seconds + delay.nanos / 1e9)
    return None
