"""OTLP/gRPC: one `grpc.aio` channel, one generic unary call carrying the request bytes as-is."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from typing import cast

import grpc
import grpc.aio

from refinery_py.export.response import delivered
from refinery_py.export.retry_hint import grpc_retry_delay
from refinery_py.export.transport import ClientTls, SendResult, Verdict
from refinery_py.model.addresses import Endpoint

EXPORT_METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"

RETRYABLE_CODES = frozenset(
    {
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.OUT_OF_RANGE,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DATA_LOSS,
    }
)
"""Retryable codes per the OTLP specification (RESOURCE_EXHAUSTED too, but only with RetryInfo)."""


def _identity(payload: bytes) -> bytes:
    return payload


class GrpcTransport:
    """Sends to `TraceService/Export` without building message objects.

    The payload is already a serialized ExportTraceServiceRequest, so the call's serializer is
    the identity and only the small response is parsed. TLS is used for `https://` endpoints and
    for bare `host:port` unless `insecure`; an `http://` endpoint is plaintext. A URL's path means
    nothing to gRPC and is ignored. `tls` supplies the CA and client certificate (else the
    system's CAs, no client certificate); when its credentials change (the files did), new
    calls go on a new channel and the old one closes once its calls are done.
    """

    def __init__(
        self,
        endpoint: Endpoint,
        *,
        headers: Mapping[str, str],
        gzip: bool,
        timeout: float,
        insecure: bool,
        tls: ClientTls | None = None,
    ) -> None:
        self._target = endpoint.authority
        self.tls = endpoint.tls if endpoint.tls is not None else not insecure
        self._client_tls = tls if self.tls else None
        self._credentials: grpc.ChannelCredentials | None = None
        self._retiring: set[asyncio.Task[None]] = set()
        # gRPC metadata keys must be lower case; HTTP-style capitalised names are common in configs.
        self._metadata = tuple((key.lower(), value) for key, value in headers.items())
        self._compression = grpc.Compression.Gzip if gzip else grpc.Compression.NoCompression
        self._timeout = timeout
        self._channel: grpc.aio.Channel | None = None
        self._export: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] | None = None

    async def open(self) -> None:
        """Create the channel; it connects on the first call and reconnects by itself."""
        if not self.tls:
            self._use(grpc.aio.insecure_channel(self._target))
            return
        if self._client_tls is not None:
            self._credentials = self._client_tls.channel_credentials()
        else:
            self._credentials = grpc.ssl_channel_credentials()
        self._use(grpc.aio.secure_channel(self._target, self._credentials))

    def _use(self, channel: grpc.aio.Channel) -> None:
        self._channel = channel
        self._export = channel.unary_unary(
            EXPORT_METHOD, request_serializer=_identity, response_deserializer=_identity
        )

    def _follow_certificates(self) -> None:
        """A new channel when the client TLS material changed since the channel was made."""
        source, old = self._client_tls, self._channel
        if source is None or old is None:
            return
        credentials = source.channel_credentials()
        if credentials is self._credentials:
            return
        self._credentials = credentials
        self._use(grpc.aio.secure_channel(self._target, credentials))
        # Calls still running on the old channel finish (within their timeout) first.
        task = asyncio.create_task(old.close(self._timeout))
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    async def send(self, payload: bytes) -> SendResult:
        """One Export call; a failed call becomes RETRY or REJECTED by its status code."""
        if self._export is None:
            raise RuntimeError("GrpcTransport.send called before open()")
        self._follow_certificates()
        assert self._export is not None
        try:
            response = await self._export(
                payload,
                timeout=self._timeout,
                metadata=self._metadata,
                compression=self._compression,
            )
        except grpc.aio.AioRpcError as error:
            return _failure(error)
        return delivered(response)

    async def close(self) -> None:
        """Close the channel (cancelling any call still running)."""
        if self._channel is not None:
            await self._channel.close(None)
            self._channel = None
            self._export = None
        for task in list(self._retiring):
            task.cancel()
        await asyncio.gather(*self._retiring, return_exceptions=True)


def _failure(error: grpc.aio.AioRpcError) -> SendResult:
    code = error.code()
    # grpc-stubs types these as sync-API `_Metadatum` objects; grpc.aio yields (key, value) pairs.
    trailers = cast("Iterable[tuple[str, str | bytes]]", error.trailing_metadata())
    delay = grpc_retry_delay(trailers)
    message = f"{code.name}: {error.details() or ''}"
    recoverable = code is grpc.StatusCode.RESOURCE_EXHAUSTED and delay is not None
    if code in RETRYABLE_CODES or recoverable:
        return SendResult(Verdict.RETRY, message=message, retry_after=delay)
    invalid = code is grpc.StatusCode.INVALID_ARGUMENT
    return SendResult(Verdict.REJECTED, message=message, invalid=invalid)
