"""OTLP/HTTP: protobuf bodies POSTed through one aiohttp session."""

from __future__ import annotations

import asyncio
import gzip as gzip_format
import warnings
from collections.abc import Mapping

import aiohttp
from google.protobuf.message import DecodeError
from google.rpc import status_pb2

from refinery_py.export.response import delivered
from refinery_py.export.retry_hint import http_retry_delay
from refinery_py.export.transport import ClientTls, SendResult, Verdict
from refinery_py.model.addresses import Endpoint

PROTOBUF = "application/x-protobuf"

RETRYABLE_STATUSES = frozenset({429, 502, 503, 504})
"""Statuses the OTLP specification calls retryable; every other 4xx/5xx is final."""

INVALID_STATUS = 400
"""Bad Request: the backend refused the request's content (`SendResult.invalid`)."""

INLINE_GZIP_LIMIT = 64 * 1024
"""Bodies up to this size are compressed on the event loop; handing them to a thread costs more
than compressing them. Larger ones go to a thread (zlib releases the GIL while it works)."""

GZIP_LEVEL = 6
"""zlib's default level: nearly all of level 9's ratio at a fraction of its cost."""

_MESSAGE_LIMIT = 300


class HttpTransport:
    """POSTs to the endpoint's traces URL (`/v1/traces` unless the URL names a path).

    A bare `host:port` endpoint means plain `http://`; use an `https://` URL for TLS. `tls`
    supplies the CA and client certificate (else the system's CAs, no client certificate), asked
    for each new connection, so changed certificate files apply without a restart.
    """

    def __init__(
        self,
        endpoint: Endpoint,
        *,
        headers: Mapping[str, str],
        gzip: bool,
        timeout: float,
        tls: ClientTls | None = None,
    ) -> None:
        self.url = endpoint.traces_url()
        self._tls = tls if endpoint.tls else None
        self._gzip = gzip
        self._headers = {**headers, "Content-Type": PROTOBUF}
        if gzip:
            self._headers["Content-Encoding"] = "gzip"
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    async def open(self) -> None:
        """Create the session (it must be made on the running event loop)."""
        self._session = aiohttp.ClientSession(timeout=self._timeout)

    async def send(self, payload: bytes) -> SendResult:
        """One POST; network errors and timeouts are RETRY, statuses map per the OTLP spec."""
        if self._session is None:
            raise RuntimeError("HttpTransport.send called before open()")
        body = await self._encode(payload)
        try:
            async with self._session.post(
                self.url,
                data=_request_body(body),
                headers=self._headers,
                ssl=self._tls.context() if self._tls is not None else True,
            ) as response:
                content = await response.read()
                status = response.status
                retry_after = response.headers.get("Retry-After")
                content_type = response.headers.get("Content-Type", "")
        except (aiohttp.ClientError, TimeoutError) as error:
            return SendResult(Verdict.RETRY, message=f"{type(error).__name__}: {error}".strip())
        if 200 <= status < 300:
            return delivered(content)
        message = f"HTTP {status}: {_error_message(content, content_type)}"
        if status in RETRYABLE_STATUSES:
            return SendResult(
                Verdict.RETRY, message=message, retry_after=http_retry_delay(retry_after)
            )
        return SendResult(Verdict.REJECTED, message=message, invalid=status == INVALID_STATUS)

    async def close(self) -> None:
        """Close the session and its pooled connections."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _encode(self, payload: bytes) -> bytes:
        if not self._gzip:
            return payload
        if len(payload) <= INLINE_GZIP_LIMIT:
            return gzip_format.compress(payload, GZIP_LEVEL)
        return await asyncio.to_thread(gzip_format.compress, payload, GZIP_LEVEL)


def _error_message(content: bytes, content_type: str) -> str:
    """The backend's explanation: a `google.rpc.Status` message for protobuf, else the text."""
    if content_type.startswith(PROTOBUF):
        try:
            status_message = str(status_pb2.Status.FromString(content).message)
        except DecodeError:
            status_message = ""
        if status_message:
            return status_message[:_MESSAGE_LIMIT]
    return content[:_MESSAGE_LIMIT].decode("utf-8", "replace").strip()


def _request_body(data: bytes) -> aiohttp.BytesPayload:
    """`data` as a request body, without the ResourceWarning aiohttp gives every bytes body
    over 1 MiB (batches reach batch_max_bytes, 3 MiB by default): the event loop's transport
    takes it whole without blocking, and where warnings are errors the warning failed every
    attempt until the batch was dropped."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        return aiohttp.BytesPayload(data)
