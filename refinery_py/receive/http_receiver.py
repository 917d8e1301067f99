"""OTLP/HTTP: `POST /v1/traces` on an aiohttp server, protobuf or JSON, plain or compressed.

The body is read once, as sent (at most the size limit), inflated here if it is gzip or deflate
(bounded by the same limit after decompression), and goes through the same decode funnel as gRPC.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl

from aiohttp import hdrs, web

from refinery_py.otlp.errors import MalformedPayload
from refinery_py.receive.decode import Encoding
from refinery_py.receive.inflate import CODINGS, BodyTooLarge, inflate
from refinery_py.receive.ingest_auth import ANONYMOUS
from refinery_py.receive.intake import (
    DEFAULT_MAX_REQUEST_BYTES,
    HTTP,
    HTTP_JSON,
    HTTP_PROTOBUF,
    Intake,
    Receipt,
    Refusal,
)
from refinery_py.receive.replies import error_body, export_response, retry_after_seconds

PATH = "/v1/traces"

_ENCODINGS = {encoding.value: encoding for encoding in Encoding}
_PROTOCOLS = {Encoding.PROTOBUF: HTTP_PROTOBUF, Encoding.JSON: HTTP_JSON}
_IDENTITY = frozenset({"", "identity"})
_SUPPORTED_CODINGS = ", ".join(sorted(CODINGS)) + " or none"
_LAST_CALL = 0.1
"""Seconds requests still running after the grace period get before they are cancelled."""
_HTTP_STATUS = {
    Refusal.MALFORMED: 400,
    Refusal.TOO_LARGE: 413,
    Refusal.UNSUPPORTED_MEDIA_TYPE: 415,
    Refusal.OVERLOADED: 429,
    Refusal.MISSING_TOKEN: 401,
    Refusal.INVALID_TOKEN: 401,
}


class HttpReceiver:
    """Receives OTLP/HTTP trace exports on `host:port` and hands them to an `Intake`.

    Construct, then `await start()` (binds; `port` is then the bound port, useful with port 0),
    and `await stop(grace)` to stop accepting connections and let requests in flight finish.

    aiohttp's own graceful shutdown stops reading from open connections at once, which would cut
    off bodies still arriving; `stop` therefore waits for requests in flight itself first.

    With `ssl_context` the port speaks TLS; with the intake's `auth`, every request needs a
    token (401 with WWW-Authenticate otherwise), checked before its body is read.
    """

    def __init__(
        self,
        intake: Intake,
        host: str,
        port: int,
        max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
        *,
        reuse_port: bool = False,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._intake = intake
        self._ssl_context = ssl_context
        self._reuse_port = reuse_port
        self._host = host
        self._requested_port = port
        self._max_request_bytes = max_request_bytes
        self._runner: web.AppRunner | None = None
        self._port = 0
        self._in_flight = 0
        self._stopping = False
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def port(self) -> int:
        """The bound port (0 before `start`)."""
        return self._port

    @property
    def in_flight(self) -> int:
        """Requests being received or answered right now."""
        return self._in_flight

    async def start(self) -> None:
        """Bind and start serving. Raises OSError if the address cannot be bound."""
        app = web.Application(client_max_size=self._max_request_bytes)
        app.router.add_post(PATH, self._post_traces)
        # No access log: one line per export request is noise at this rate, and costs. Bodies
        # are inflated by `inflate`, not by aiohttp.
        runner = web.AppRunner(
            app,
            access_log=None,
            auto_decompress=False,
            handle_signals=False,
            shutdown_timeout=_LAST_CALL,
        )
        await runner.setup()
        # Only a node's own worker processes share a port (SO_REUSEPORT) on purpose.
        site = web.TCPSite(
            runner,
            self._host,
            self._requested_port,
            reuse_port=self._reuse_port or None,
            ssl_context=self._ssl_context,
        )
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner, self._port = runner, site.port

    async def stop(self, grace: float) -> None:
        """Stop listening, give requests in flight up to `grace` seconds, then close."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        self._stopping = True
        for site in runner.sites:
            await site.stop()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), grace)
        await runner.cleanup()

    async def _post_traces(self, request: web.Request) -> web.Response:
        self._in_flight += 1
        self._idle.clear()
        try:
            response = await self._answer(request)
            if self._stopping:
                # Tell keep-alive clients not to send another request on this connection: it
                # closes once the requests in flight are answered.
                response.force_close()
            return response
        finally:
            self._in_flight -= 1
            if not self._in_flight:
                self._idle.set()

    async def _answer(self, request: web.Request) -> web.Response:
        encoding = _ENCODINGS.get(request.content_type)
        sender = ANONYMOUS
        auth = self._intake.auth
        if auth is not None:
            protocol = HTTP if encoding is None else _PROTOCOLS[encoding]
            admitted = self._intake.admit(
                request.headers.get(auth.header), protocol, request.remote or ""
            )
            if isinstance(admitted, Receipt):
                response = _refused(admitted, encoding or Encoding.JSON)
                response.headers[hdrs.WWW_AUTHENTICATE] = auth.challenge
                return response
            sender = admitted
        if encoding is None:
            message = (
                f"Content-Type {request.content_type!r} is not supported: "
                f"send {Encoding.PROTOBUF.value} or {Encoding.JSON.value}"
            )
            receipt = self._intake.refuse(HTTP, Refusal.UNSUPPORTED_MEDIA_TYPE, message)
            return _refused(receipt, Encoding.JSON)
        protocol = _PROTOCOLS[encoding]
        coding = request.headers.get(hdrs.CONTENT_ENCODING, "").strip().lower()
        if coding not in CODINGS and coding not in _IDENTITY:
            message = f"Content-Encoding {coding!r} is not supported: use {_SUPPORTED_CODINGS}"
            receipt = self._intake.refuse(protocol, Refusal.UNSUPPORTED_MEDIA_TYPE, message)
            return _refused(receipt, encoding)
        if (request.content_length or 0) > self._max_request_bytes:
            return self._too_large(protocol, encoding)
        early = self._intake.overloaded(protocol)
        if early is not None:
            return _refused(early, encoding)  # the body is not even read
        try:
            body = await read_body(request, self._max_request_bytes)
            if coding in CODINGS:
                body = inflate(body, coding, self._max_request_bytes)
        except BodyTooLarge:
            return self._too_large(protocol, encoding)
        except MalformedPayload as exc:
            return _refused(self._intake.refuse(protocol, Refusal.MALFORMED, str(exc)), encoding)
        receipt = self._intake.take(body, encoding, protocol, sender)
        if receipt.refusal is not None:
            return _refused(receipt, encoding)
        return web.Response(body=export_response(receipt, encoding), content_type=encoding.value)

    def _too_large(self, protocol: str, encoding: Encoding) -> web.Response:
        message = (
            f"request body is larger than the limit of {self._max_request_bytes} bytes "
            "(as sent and after decompression); send smaller batches"
        )
        return _refused(self._intake.refuse(protocol, Refusal.TOO_LARGE, message), encoding)


async def read_body(request: web.BaseRequest, limit: int) -> bytes:
    """The body as sent, raising BodyTooLarge past `limit` bytes.

    aiohttp's `request.read()` copies a large body three times after the parser (joining the
    buffered chunks, growing a bytearray, then bytes() of it): about 3% of a worker's CPU with
    512-span requests. Taking the parser's chunks one at a time and joining them once copies once
    (a body that came in one chunk, not at all).
    """
    content = request.content
    chunks: list[bytes] = []
    size = 0
    # Until the end of the body rather than until an empty read: an empty read also marks the
    # end of one chunk of a chunked body, and aiohttp's one reader of every empty body answers
    # each request after the first with such a read, forever.
    while not content.at_eof():
        chunk, _ = await content.readchunk()
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(f"the body is larger than {limit} bytes")
        if chunk:
            chunks.append(chunk)
    return b"".join(chunks)


def _refused(receipt: Receipt, encoding: Encoding) -> web.Response:
    assert receipt.refusal is not None
    headers = {}
    if receipt.refusal is Refusal.OVERLOADED:
        headers[hdrs.RETRY_AFTER] = str(retry_after_seconds(receipt))
    return web.Response(
        status=_HTTP_STATUS[receipt.refusal],
        body=error_body(receipt, encoding),
        content_type=encoding.value,
        headers=headers,
    )
