"""OTLP/gRPC: the `TraceService/Export` method on a `grpc.aio` server.

The request arrives as raw bytes (no request deserializer) and is parsed exactly once, by the
decode funnel; the response is bytes too. gRPC core enforces the size limit (RESOURCE_EXHAUSTED,
also after decompressing a gzip request) before the handler ever runs.
"""

from __future__ import annotations

import grpc
import grpc.aio

from refinery_py.receive.decode import Encoding
from refinery_py.receive.ingest_auth import ANONYMOUS
from refinery_py.receive.intake import DEFAULT_MAX_REQUEST_BYTES, GRPC, Intake, Receipt, Refusal
from refinery_py.receive.replies import STATUS_CODES, error_status, export_response, retry_info

SERVICE = "opentelemetry.proto.collector.trace.v1.TraceService"
METHOD = "Export"

_STATUS_DETAILS_KEY = "grpc-status-details-bin"
"""Where gRPC clients (the Collector's exporters among them) look for `google.rpc.Status`."""
_RETRY_INFO_KEY = "google.rpc.retryinfo-bin"
"""Where the OpenTelemetry Python exporter looks for a bare `RetryInfo`."""

_BY_NUMBER = {code.value[0]: code for code in grpc.StatusCode}
_GRPC_CODES = {refusal: _BY_NUMBER[number] for refusal, number in STATUS_CODES.items()}

MAX_CONCURRENT_STREAMS = 100
"""HTTP/2 streams a client may have open on one connection (the HTTP/2 spec's recommended floor).

Calls beyond it wait in the client rather than fail, which bounds memory per connection without
the non-retryable RESOURCE_EXHAUSTED that grpc's `maximum_concurrent_rpcs` would answer with."""


def server_options(max_request_bytes: int, reuse_port: bool = False) -> list[tuple[str, int]]:
    """The channel arguments of the receiving server."""
    return [
        # Oversized requests get RESOURCE_EXHAUSTED from grpc core, which also bounds a
        # decompressed gzip body by the same number.
        ("grpc.max_receive_message_length", max_request_bytes),
        # Responses are a few bytes; nothing large should ever go out.
        ("grpc.max_send_message_length", 1024 * 1024),
        # A second process on the same port would silently take half the traffic, so that is
        # only allowed for the worker processes of one node, which share the port on purpose.
        ("grpc.so_reuseport", 1 if reuse_port else 0),
        ("grpc.max_concurrent_streams", MAX_CONCURRENT_STREAMS),
        # Exporters (the Collector's among them) keep long-lived connections with keepalive
        # pings; accept pings every 10 s, also between calls, instead of answering GOAWAY
        # "too_many_pings" and forcing a reconnect.
        ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
        ("grpc.keepalive_permit_without_calls", 1),
    ]


class GrpcReceiver:
    """Receives OTLP/gRPC trace exports on `host:port` and hands them to an `Intake`.

    Construct, then `await start()` (binds; `port` is then the bound port, useful with port 0),
    and `await stop(grace)` to stop accepting calls and let those in flight finish. With
    `credentials` the port speaks TLS; with the intake's `auth`, every call needs a token in the
    metadata (UNAUTHENTICATED otherwise).
    """

    def __init__(
        self,
        intake: Intake,
        host: str,
        port: int,
        max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
        *,
        reuse_port: bool = False,
        credentials: grpc.ServerCredentials | None = None,
    ) -> None:
        self._intake = intake
        self._credentials = credentials
        self._reuse_port = reuse_port
        self._host = f"[{host}]" if ":" in host else host
        self._requested_port = port
        self._max_request_bytes = max_request_bytes
        self._server: grpc.aio.Server | None = None
        self._port = 0

    @property
    def port(self) -> int:
        """The bound port (0 before `start`)."""
        return self._port

    async def start(self) -> None:
        """Bind and start serving. Raises OSError if the address cannot be bound."""
        server = grpc.aio.server(options=server_options(self._max_request_bytes, self._reuse_port))
        export = grpc.unary_unary_rpc_method_handler(self._export)
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(SERVICE, {METHOD: export}),)
        )
        address = f"{self._host}:{self._requested_port}"
        try:
            if self._credentials is not None:
                port = server.add_secure_port(address, self._credentials)
            else:
                port = server.add_insecure_port(address)
        except RuntimeError as exc:  # grpc reports a failed bind this way
            await server.stop(None)
            raise OSError(f"OTLP/gRPC cannot listen on {address}: {exc}") from None
        await server.start()
        self._server, self._port = server, port

    async def stop(self, grace: float) -> None:
        """Refuse new calls, give calls in flight up to `grace` seconds, then close."""
        server, self._server = self._server, None
        if server is not None:
            await server.stop(grace)

    async def _export(
        self, request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]
    ) -> bytes:
        intake = self._intake
        sender = ANONYMOUS
        if intake.auth is not None:
            admitted = intake.admit(_metadata(context, intake.auth.header), GRPC, context.peer())
            if isinstance(admitted, Receipt):
                await _refuse(context, admitted)
            else:
                sender = admitted
        receipt = intake.take(request, Encoding.PROTOBUF, GRPC, sender)
        if receipt.refusal is not None:
            await _refuse(context, receipt)
        return export_response(receipt, Encoding.PROTOBUF)


async def _refuse(context: grpc.aio.ServicerContext[bytes, bytes], receipt: Receipt) -> None:
    """End the call with the refusal's status code, message and details (raises)."""
    assert receipt.refusal is not None
    await context.abort(_GRPC_CODES[receipt.refusal], receipt.message, trailing_metadata(receipt))


def _metadata(context: grpc.aio.ServicerContext[bytes, bytes], key: str) -> str | None:
    """The first value of the call's metadata `key`, None when it has none."""
    for name, value in context.invocation_metadata() or ():
        if name == key:
            return value if isinstance(value, str) else value.decode("latin-1")
    return None


def trailing_metadata(receipt: Receipt) -> tuple[tuple[str, bytes], ...]:
    """The error details of a refused call, where OTLP clients look for them."""
    details = [(_STATUS_DETAILS_KEY, error_status(receipt).SerializeToString())]
    if receipt.refusal is Refusal.OVERLOADED:
        details.append((_RETRY_INFO_KEY, retry_info(receipt).SerializeToString()))
    return tuple(details)
