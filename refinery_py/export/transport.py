"""The seam between the exporter and the wire: what one send attempt reports back."""

from __future__ import annotations

import enum
import ssl
from dataclasses import dataclass
from typing import Protocol

import grpc


class Verdict(enum.Enum):
    """How one attempt to deliver a request ended, as far as retrying is concerned."""

    DELIVERED = "delivered"
    """The backend took the request (perhaps refusing some spans: see `rejected_spans`)."""

    RETRY = "retry"
    """A transient failure (unreachable, overloaded, timed out): the same bytes may go again."""

    REJECTED = "rejected"
    """The backend refused the request for good; sending it again would fail the same way."""


@dataclass(frozen=True, slots=True)
class SendResult:
    """The outcome of one attempt.

    `rejected_spans` is the OTLP partial-success count (DELIVERED only); `message` is the
    backend's explanation (partial-success message, status details, or the local error);
    `retry_after` is the server's hint in seconds (RETRY only), None when it gave none.
    `invalid` (REJECTED only) says the backend refused the request's content as invalid (HTTP
    400, gRPC INVALID_ARGUMENT): one bad trace among many is enough for that, so a request of
    several traces is worth sending again in parts.
    """

    verdict: Verdict
    rejected_spans: int = 0
    message: str = ""
    retry_after: float | None = None
    invalid: bool = False


DELIVERED = SendResult(Verdict.DELIVERED)


class Transport(Protocol):
    """Sends serialized ExportTraceServiceRequest bytes to one backend.

    Implementations never raise for a failed export: every failure is a SendResult, so the
    exporter's retry loop has one shape for both protocols.
    """

    async def open(self) -> None:
        """Create the connection state (channel, session); called once, on the event loop."""
        ...

    async def send(self, payload: bytes) -> SendResult:
        """Make one attempt to deliver `payload`, bounded by the transport's request timeout."""
        ...

    async def close(self) -> None:
        """Release the connection state; no sends follow."""
        ...


class ClientTls(Protocol):
    """The TLS client material of a transport: a CA to check the backend against and, for
    mutual TLS, a client certificate. Asked on every connection, since it changes when the
    certificate files do (the same object comes back while they do not)."""

    def context(self) -> ssl.SSLContext:
        """For aiohttp connections."""
        ...

    def channel_credentials(self) -> grpc.ChannelCredentials:
        """For gRPC channels."""
        ...
